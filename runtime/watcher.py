"""Spec files watched for saves (watchdog): the only module that imports watchdog.

`SpecWatcher` watches a set of files (a spec and every file it `use`s) through their folders, so that
every way an editor saves is seen: an in-place write (the file's close), an atomic save (a temporary file
moved onto it) and a vim-style save (the file renamed away and written anew). A burst of saves ends in
one change, reported `debounce_s` after the last event, so a half-written file is never read in the
middle of a burst. Events arrive on watchdog's thread; `wait()` blocks the caller until a change (and
stays interruptible by Ctrl-C).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

# Seconds of quiet after the last event before a change is reported.
DEBOUNCE_S = 0.1
# Longest a wait blocks without waking, s: the time a Ctrl-C delivered to another thread may take.
WAKE_S = 0.2


class SpecWatcher(FileSystemEventHandler):
    """Reports debounced saves of a set of files."""

    def __init__(self, files: Iterable[str | Path], debounce_s: float = DEBOUNCE_S) -> None:
        """Start watching `files` (their folders are watched; other files there are ignored)."""
        super().__init__()
        self.debounce_s = debounce_s  # quiet time before a change is reported, s
        self._lock = threading.Lock()  # guards the fields below between watchdog's thread and the caller
        self._changed = threading.Event()  # set: a debounced change is waiting to be taken
        self._timer: threading.Timer | None = None  # the pending debounce timer
        self._files: set[str] = set()  # absolute paths of the watched files
        self._observer = Observer()  # watchdog's observer thread
        self._folders: set[str] = set()  # folders scheduled on the observer
        self.watch(files)
        self._observer.start()

    def watch(self, files: Iterable[str | Path]) -> None:
        """Watch exactly `files` from now on (a spec's `use`s may change with an edit)."""
        paths = {str(Path(f).resolve()) for f in files}
        with self._lock:
            self._files = paths
        for folder in sorted({str(Path(p).parent) for p in paths} - self._folders):
            self._observer.schedule(self, folder, recursive=False)
            self._folders.add(folder)

    def on_any_event(self, event: FileSystemEvent) -> None:
        """A file event (watchdog's thread): restart the debounce timer when it touches a watched file."""
        if event.is_directory or event.event_type in ("opened", "closed_no_write"):
            return
        touched = {str(event.src_path), str(getattr(event, "dest_path", "") or "")}
        with self._lock:
            if not touched & self._files:
                return
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self.debounce_s, self._changed.set)
            self._timer.daemon = True
            self._timer.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a debounced change (True) or `timeout` seconds pass (False); takes the change.

        Waits in slices of WAKE_S: Ctrl-C (SIGINT) may be delivered to one of watchdog's threads, and the
        main thread runs the signal's handler (KeyboardInterrupt) only when it wakes.
        """
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        while not self._changed.wait(min(WAKE_S, deadline - time.monotonic())):
            if time.monotonic() >= deadline:
                return False
        self._changed.clear()
        return True

    def close(self) -> None:
        """Stop watching."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
        self._observer.stop()
        self._observer.join(5)
