"""Event operators: crosses (syntax operators), barssince and valuewhen.

A condition holds on a bar when its value is non-zero and not na (na counts as false). `a crosses above b`
is `a > b and a[1] <= b[1]`, false when any of the four is na (and on the first bar). barssince is na before
the condition first holds; valuewhen is na until the condition has held `occurrence + 1` times, and is the
source's value (possibly na) on that bar.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from runtime.ops.base import NA1, NAN, FloatArray, Kernels, int_param, series

# Boolean results of a streaming kernel.
_TRUE = (1.0,)
# Boolean false result of a streaming kernel.
_FALSE = (0.0,)


@njit(cache=True)
def _cross_loop(a: FloatArray, b: FloatArray, above: bool, out: FloatArray) -> None:  # pragma: no cover
    """Batch twin of `CrossesAbove` / `CrossesBelow` into `out` (zeros on entry): one pass, no copies."""
    m = a.shape[0]
    for i in range(1, m):
        if above:
            if a[i] > b[i] and a[i - 1] <= b[i - 1]:
                out[i] = 1.0
        elif a[i] < b[i] and a[i - 1] >= b[i - 1]:
            out[i] = 1.0


def _crosses(a: FloatArray, b: FloatArray, above: bool) -> FloatArray:
    """`_cross_loop` into an output allocated by numpy (huge pages: fewer page faults on long series)."""
    out = np.zeros(len(a))
    _cross_loop(series(a), series(b), above, out)
    return out


def crosses_above_batch(a: FloatArray, b: FloatArray) -> tuple[FloatArray]:
    """1.0 where `a > b and a[1] <= b[1]`, else 0.0 (comparisons with na are false)."""
    return (_crosses(a, b, True),)


def crosses_below_batch(a: FloatArray, b: FloatArray) -> tuple[FloatArray]:
    """1.0 where `a < b and a[1] >= b[1]`, else 0.0 (comparisons with na are false)."""
    return (_crosses(a, b, False),)


class CrossesAbove:
    """Streaming twin of `crosses_above_batch`."""

    __slots__ = ("prev_a", "prev_b")

    def __init__(self) -> None:
        """Start with no bar seen."""
        # Previous bar's a (na before the first bar).
        self.prev_a = NAN
        # Previous bar's b (na before the first bar).
        self.prev_b = NAN

    def update(self, a: float, b: float) -> tuple[float]:
        """Feed one bar; return 1.0 on a cross above, else 0.0."""
        crossed = a > b and self.prev_a <= self.prev_b
        self.prev_a = a
        self.prev_b = b
        return _TRUE if crossed else _FALSE


class CrossesBelow(CrossesAbove):
    """Streaming twin of `crosses_below_batch`."""

    __slots__ = ()

    def update(self, a: float, b: float) -> tuple[float]:
        """Feed one bar; return 1.0 on a cross below, else 0.0."""
        crossed = a < b and self.prev_a >= self.prev_b
        self.prev_a = a
        self.prev_b = b
        return _TRUE if crossed else _FALSE


@njit(cache=True)
def _barssince_loop(cond: FloatArray) -> FloatArray:  # pragma: no cover
    """Batch twin of `Barssince`."""
    m = cond.shape[0]
    out = np.full(m, np.nan)
    count = np.nan
    for i in range(m):
        c = cond[i]
        if c == c and c != 0.0:
            count = 0.0
        else:
            count += 1.0
        out[i] = count
    return out


def barssince_batch(cond: FloatArray) -> tuple[FloatArray]:
    """Bars since the condition last held (0 on a bar where it holds); na before it first holds."""
    return (_barssince_loop(series(cond)),)


class Barssince:
    """Streaming twin of `barssince_batch`."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        """Start with no bar seen."""
        # Bars since the condition last held (na before it first held).
        self.count = NAN

    def update(self, cond: float) -> tuple[float]:
        """Feed one bar; return the bars since the condition last held."""
        self.count = 0.0 if (cond == cond and cond != 0.0) else self.count + 1.0
        return (self.count,)


@njit(cache=True)
def _valuewhen_loop(cond: FloatArray, source: FloatArray, occurrence: int) -> FloatArray:  # pragma: no cover
    """Batch twin of `Valuewhen` (the same ring of the last occurrence + 1 captured values)."""
    m = cond.shape[0]
    out = np.full(m, np.nan)
    size = occurrence + 1
    ring = np.full(size, np.nan)
    pos = 0
    seen = 0
    for i in range(m):
        c = cond[i]
        if c == c and c != 0.0:
            ring[pos] = source[i]
            pos += 1
            if pos == size:
                pos = 0
            if seen < size:
                seen += 1
        # After the write, the slot at `pos` holds the occurrence-th most recent capture.
        if seen == size:
            out[i] = ring[pos]
    return out


def _occurrence(occurrence: float) -> int:
    """Which past occurrence: 0 is the most recent."""
    return int_param("occurrence", occurrence, 0)


def valuewhen_batch(cond: FloatArray, source: FloatArray, occurrence: float) -> tuple[FloatArray]:
    """The source's value on the bar where the condition held, `occurrence` times back (0: most recent)."""
    return (_valuewhen_loop(series(cond), series(source), _occurrence(occurrence)),)


class Valuewhen:
    """Streaming twin of `valuewhen_batch`."""

    __slots__ = ("pos", "ring", "seen", "size")

    def __init__(self, occurrence: float) -> None:
        """Start with no bar seen."""
        # Number of captures kept: occurrence + 1.
        self.size = _occurrence(occurrence) + 1
        # Ring of the last `size` captured source values.
        self.ring = [NAN] * self.size
        # Next slot to write, which after a write holds the oldest kept capture.
        self.pos = 0
        # Number of captures so far, counted up to `size`.
        self.seen = 0

    def update(self, cond: float, source: float) -> tuple[float]:
        """Feed one bar; return the captured value `occurrence` times back."""
        if cond == cond and cond != 0.0:
            pos = self.pos
            self.ring[pos] = source
            pos += 1
            self.pos = 0 if pos == self.size else pos
            if self.seen < self.size:
                self.seen += 1
        return (self.ring[self.pos],) if self.seen == self.size else NA1


# Kernels of this module, by built-in name (signatures in `dsl.builtins`), in the language's order.
KERNELS: tuple[Kernels, ...] = (
    Kernels("barssince", barssince_batch, Barssince),
    Kernels("valuewhen", valuewhen_batch, Valuewhen),
    Kernels("crosses_above", crosses_above_batch, CrossesAbove),
    Kernels("crosses_below", crosses_below_batch, CrossesBelow),
)
