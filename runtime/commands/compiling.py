"""The first run's compilation of the numba kernels, shown on stderr instead of half a minute of silence.

numba compiles each kernel at its first call and keeps the machine code in its on-disk cache (next to the
sources, in `__pycache__`), so only the first run after an install or an upgrade pays it. numba's event
hooks tell each compilation (a kernel loaded from the cache is none): the first one prints the notice,
a line every few seconds says how far it got, and a last line the total. A warm run prints nothing.
(numba is imported here: import this module only where kernels are about to run.)
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from numba.core import event

# The first line, printed when the first kernel starts compiling.
NOTICE = "compiling kernels, first run only (about half a minute; later runs load them) ..."
# Seconds between two progress lines while kernels compile.
PROGRESS_EVERY_S = 5.0


class CompileProgress(event.Listener):
    """Counts the kernels numba compiles and reports them on a stream (a numba event listener).

    numba calls `on_start`/`on_end` on the compiling thread; a timer thread writes a progress line every
    `every_s` seconds while a compilation runs (one kernel, the broker's step, takes most of the time).
    """

    def __init__(self, stream: TextIO, every_s: float = PROGRESS_EVERY_S) -> None:
        """Report on `stream`, one progress line per `every_s` seconds while compiling."""
        self.stream = stream  # where the lines go (stderr)
        self.every_s = every_s  # seconds between progress lines
        self.compiled = 0  # kernels compiled so far (outermost compilations only)
        self.current: str | None = None  # the kernel being compiled now (outermost), None when idle
        self.depth = 0  # compilations in progress (a kernel compiles the functions it calls inside its own)
        self.began = time.perf_counter()  # when the run started, perf_counter seconds
        self.stop = threading.Event()  # set when the block ends: the timer thread stops
        self.announced = False  # whether the notice was printed (at the first compilation)

    def on_start(self, event: event.Event) -> None:
        """A compilation begins (numba calls this): remember the outermost kernel's name."""
        if not self.depth:
            if not self.announced:
                self.announced = True
                self._write(NOTICE)
            self.current = getattr(getattr(event.data["dispatcher"], "py_func", None), "__name__", "a kernel")
        self.depth += 1

    def on_end(self, event: event.Event) -> None:
        """A compilation ended (numba calls this): count it if outermost."""
        self.depth -= 1
        if not self.depth:
            self.compiled += 1
            self.current = None

    def _tick(self) -> None:
        """Timer thread: a progress line every `every_s` seconds while a kernel compiles."""
        while not self.stop.wait(self.every_s):
            current = self.current
            if current is not None:
                done = time.perf_counter() - self.began
                self._write(f"  ... {self._count()} compiled, now {current} ({done:.0f} s)")

    def _count(self) -> str:
        """'1 kernel' / 'N kernels'."""
        return f"{self.compiled} kernel{'s' if self.compiled != 1 else ''}"

    def _write(self, line: str) -> None:
        """Write one line to the stream now."""
        print(line, file=self.stream, flush=True)

    @contextmanager
    def showing(self) -> Iterator[CompileProgress]:
        """Report while the block runs: at the first compilation the notice, then progress and the total."""
        event.register("numba:compile", self)
        ticker = threading.Thread(target=self._tick, name="compile-progress", daemon=True)
        ticker.start()
        try:
            yield self
        finally:
            self.stop.set()
            ticker.join()
            event.unregister("numba:compile", self)
            if self.announced:
                self._write(f"compiled {self._count()} in {time.perf_counter() - self.began:.1f} s")


@contextmanager
def compile_notice() -> Iterator[None]:
    """Show the kernels' compilation on stderr when this run compiles any (a cold cache); silent otherwise."""
    with CompileProgress(sys.stderr).showing():
        yield
