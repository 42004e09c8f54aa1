"""Process-global tuning of the one-shot commands: the garbage collector and glibc's allocator.

Only the batch commands (check, run, series, data) use this module, through `batch_process`; library code
(dsl, graph, backtest, store) never flips the collector or the allocator itself, because what is harmless
in a process that exits after one command is hazardous in a long-lived one (a server that would keep the
collector off, or keep a gigabyte of freed memory, for good). An import-linter contract keeps `gc` and
`ctypes` out of every other module of the runtime and the language.

One more process-global trick lives elsewhere: `runtime.backtest.drive.warm_kernels` hides cffi from numba's
set-up while it warms the kernels (a `sys.modules` entry, restored at once), see there.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# glibc's mallopt parameters: freed heap memory kept up to this many bytes (M_TRIM_THRESHOLD), and the
# size from which a block gets its own fresh mapping (M_MMAP_THRESHOLD; 32 MB is the most glibc allows).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_RETAINED_BYTES = 1 << 30
_MMAP_FROM_BYTES = 32 << 20


@contextmanager
def batch_process() -> Iterator[Callable[[], None]]:
    """Tune the process for one batch command; yields `settle`, to call once the engine is loaded.

    - glibc keeps freed memory for reuse (`_keep_freed_memory`).
    - The cyclic garbage collector is paused while the command reads its spec and loads the engine:
      reading a spec allocates tens of thousands of small objects that all stay alive (syntax tree, IR),
      and numba's typing tables, the grammar and the imported modules are some hundred thousand more that
      live as long as the process, so collections would walk them over and over and free nothing (about a
      third of a spec's check time, 0.1 s of a run). Reference counting frees everything else as usual.
    - `settle()` moves everything alive into the collector's permanent generation and lets it run again
      for the command's own work (the simulation and its outputs).
    - On the way out the command's garbage is collected and the survivors are frozen too, so the
      interpreter's teardown has nothing left to walk (about 0.2 s); the caller's collector setting is
      restored.
    """
    _keep_freed_memory()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield _settle
    finally:
        gc.collect()
        gc.freeze()
        # Back to the caller's setting, whatever `settle` did meanwhile.
        (gc.enable if enabled else gc.disable)()


def _settle() -> None:
    """Freeze what is alive now (the loaded engine) and let the collector run again for the work itself."""
    gc.freeze()
    gc.enable()


def _keep_freed_memory() -> None:
    """Let glibc reuse freed memory instead of returning it to the system after every large array.

    A million-bar run creates and drops dozens of 8 MB arrays; by default each is a fresh mapping whose
    pages the kernel must fault in and zero again (about 0.15 s of system time). Nothing changes in what
    the run computes; elsewhere than glibc (or without it) this does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_TRIM_THRESHOLD, _RETAINED_BYTES)
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_FROM_BYTES)
    except (OSError, AttributeError):  # not glibc: keep the allocator's defaults
        return
