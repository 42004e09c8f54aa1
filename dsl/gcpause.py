"""Pausing Python's cyclic garbage collector while a spec is read and checked.

Reading a spec allocates tens of thousands of small objects that all stay alive (the syntax tree, then the
IR), so the collector's periodic passes find nothing to free yet cost about a third of the check time.
Reference counting still frees everything that is not cyclic; the collector resumes afterwards.
Nested and concurrent pauses (the reload watcher checks in another thread) are counted: the collector's
previous state comes back only when the last pause ends.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# Guards the pause count and the saved state.
_LOCK = threading.Lock()
# Pauses currently in effect, across threads.
_depth = 0
# Whether the collector was enabled when the first of the current pauses began.
_was_enabled = False


@contextmanager
def paused_gc() -> Iterator[None]:
    """Disable the cyclic collector for the duration of the block (re-entrant and thread-safe)."""
    global _depth, _was_enabled
    with _LOCK:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _LOCK:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
