"""Dispersion and range operators: stdev, variance, bbands, tr, atr, donchian, keltner, supertrend.

na handling: window statistics (stdev, variance, bbands, donchian) are na while the window is not full or
holds an na. `tr` is na when high or low is na, and is high - low when the previous close is na or absent.
ATR is Wilder's RMA of tr, seeded with the mean of the first `length` valid tr values, skipping na bars
(na output, state unchanged). Keltner and supertrend are na on a bar where any of their parts is na.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from runtime.ops.base import NA1, NAN, FloatArray, Kernels, float_param, int_param, series
from runtime.ops.primitives import (
    Extreme,
    Smoother,
    TrueRange,
    Window,
    batch_variance,
    ema_alpha,
    extreme,
    smooth,
    true_range,
    variance_of,
    wilder_alpha,
    window_stats,
)

# Result of a three-output operator that is na.
_NA3 = (NAN, NAN, NAN)
# Result of a two-output operator that is na.
_NA2 = (NAN, NAN)


def _length(name: str, value: float) -> int:
    """A window or smoothing length: a whole number of bars, at least 1."""
    return int_param(name, value, 1)


def variance_batch(source: FloatArray, length: float) -> tuple[FloatArray]:
    """Population variance of the last `length` values."""
    n = _length("length", length)
    _, m2, _ = window_stats(series(source), n)
    return (batch_variance(m2, n),)


class Variance(Window):
    """Streaming twin of `variance_batch`."""

    __slots__ = ()

    def __init__(self, length: float) -> None:
        """Start with no bar seen."""
        super().__init__(_length("length", length))

    def update(self, source: float) -> tuple[float]:
        """Feed one bar; return the population variance."""
        return (variance_of(self.m2, self.n),) if self.push(source) else NA1


def stdev_batch(source: FloatArray, length: float) -> tuple[FloatArray]:
    """Population standard deviation of the last `length` values."""
    (var,) = variance_batch(source, length)
    return (np.sqrt(var),)


class Stdev(Window):
    """Streaming twin of `stdev_batch`."""

    __slots__ = ()

    def __init__(self, length: float) -> None:
        """Start with no bar seen."""
        super().__init__(_length("length", length))

    def update(self, source: float) -> tuple[float]:
        """Feed one bar; return the population standard deviation."""
        return (math.sqrt(variance_of(self.m2, self.n)),) if self.push(source) else NA1


def bbands_batch(source: FloatArray, length: float, mult: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Bollinger bands: mid is the SMA, upper/lower are mid ± mult · population stdev."""
    n = _length("length", length)
    k = float_param("mult", mult)
    total, m2, _ = window_stats(series(source), n)
    mid = total / n
    width = k * np.sqrt(batch_variance(m2, n))
    return mid + width, mid, mid - width


class Bbands(Window):
    """Streaming twin of `bbands_batch`."""

    __slots__ = ("mult",)

    def __init__(self, length: float, mult: float) -> None:
        """Start with no bar seen."""
        super().__init__(_length("length", length))
        # Band width in standard deviations.
        self.mult = float_param("mult", mult)

    def update(self, source: float) -> tuple[float, float, float]:
        """Feed one bar; return (upper, mid, lower)."""
        if not self.push(source):
            return _NA3
        mid = self.total / self.n
        width = self.mult * math.sqrt(variance_of(self.m2, self.n))
        return mid + width, mid, mid - width


def tr_batch(high: FloatArray, low: FloatArray, close: FloatArray) -> tuple[FloatArray]:
    """True range; the first bar (or one after an na close) is high - low."""
    return (true_range(series(high), series(low), series(close)),)


class Tr(TrueRange):
    """Streaming twin of `tr_batch`."""

    __slots__ = ()

    def update(self, high: float, low: float, close: float) -> tuple[float]:
        """Feed one bar; return its true range."""
        return (self.step(high, low, close),)


def atr_series(high: FloatArray, low: FloatArray, close: FloatArray, n: int) -> FloatArray:
    """Wilder's ATR over `n` bars (shared by atr, keltner and supertrend)."""
    return smooth(true_range(series(high), series(low), series(close)), n, wilder_alpha(n))


def atr_batch(high: FloatArray, low: FloatArray, close: FloatArray, length: float) -> tuple[FloatArray]:
    """Average true range: Wilder's RMA (alpha 1/length) of tr, seeded with the mean of the first values."""
    return (atr_series(high, low, close, _length("length", length)),)


class AtrState:
    """Streaming ATR: a true range feeding a Wilder smoother."""

    __slots__ = ("smoother", "tr")

    def __init__(self, n: int) -> None:
        """Start with no bar seen."""
        # True range of the current bar (keeps the previous close).
        self.tr = TrueRange()
        # Wilder's smoother of the true range.
        self.smoother = Smoother(n, wilder_alpha(n))

    def step(self, high: float, low: float, close: float) -> float:
        """Feed one bar; return the ATR (na until seeded or on an na bar)."""
        return self.smoother.step(self.tr.step(high, low, close))


class Atr(AtrState):
    """Streaming twin of `atr_batch`."""

    __slots__ = ()

    def __init__(self, length: float) -> None:
        """Start with no bar seen."""
        super().__init__(_length("length", length))

    def update(self, high: float, low: float, close: float) -> tuple[float]:
        """Feed one bar; return the ATR."""
        return (self.step(high, low, close),)


def donchian_batch(
    high: FloatArray, low: FloatArray, length: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Donchian channel: highest high, (upper + lower) / 2, lowest low of the last `length` bars."""
    n = _length("length", length)
    upper = extreme(series(high), n, True)
    lower = extreme(series(low), n, False)
    return upper, (upper + lower) / 2.0, lower


class Donchian:
    """Streaming twin of `donchian_batch`."""

    __slots__ = ("highs", "lows")

    def __init__(self, length: float) -> None:
        """Start with no bar seen."""
        n = _length("length", length)
        # Highest high of the window.
        self.highs = Extreme(n, True)
        # Lowest low of the window.
        self.lows = Extreme(n, False)

    def update(self, high: float, low: float) -> tuple[float, float, float]:
        """Feed one bar; return (upper, mid, lower)."""
        upper = self.highs.push(high)
        lower = self.lows.push(low)
        return upper, (upper + lower) / 2.0, lower


def keltner_batch(
    high: FloatArray, low: FloatArray, close: FloatArray, length: float, mult: float, atr_length: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Keltner channel: mid is the EMA of close, upper/lower are mid ± mult · ATR(atr_length)."""
    n = _length("length", length)
    k = float_param("mult", mult)
    mid = smooth(series(close), n, ema_alpha(n))
    width = k * atr_series(high, low, close, _length("atr_length", atr_length))
    return mid + width, mid, mid - width


class Keltner:
    """Streaming twin of `keltner_batch`."""

    __slots__ = ("atr", "mid", "mult")

    def __init__(self, length: float, mult: float, atr_length: float) -> None:
        """Start with no bar seen."""
        n = _length("length", length)
        # EMA of the close.
        self.mid = Smoother(n, ema_alpha(n))
        # Band width in ATRs.
        self.mult = float_param("mult", mult)
        # ATR of the bars.
        self.atr = AtrState(_length("atr_length", atr_length))

    def update(self, high: float, low: float, close: float) -> tuple[float, float, float]:
        """Feed one bar; return (upper, mid, lower)."""
        mid = self.mid.step(close)
        width = self.mult * self.atr.step(high, low, close)
        return mid + width, mid, mid - width


@njit(cache=True)
def _supertrend_loop(
    mid: FloatArray, close: FloatArray, atr: FloatArray, factor: float
) -> tuple[FloatArray, FloatArray]:  # pragma: no cover
    """Batch twin of `Supertrend.update`'s recursion (see there), over hl2, close and ATR arrays."""
    m = close.shape[0]
    line = np.full(m, np.nan)
    direction = np.full(m, np.nan)
    started = False
    prev_upper = 0.0
    prev_lower = 0.0
    prev_close = 0.0
    prev_dir = -1.0
    for i in range(m):
        a = atr[i]
        c = close[i]
        hl2 = mid[i]
        if a != a or c != c or hl2 != hl2:
            continue
        upper = hl2 + factor * a
        lower = hl2 - factor * a
        if started:
            if not (lower > prev_lower or prev_close < prev_lower):
                lower = prev_lower
            if not (upper < prev_upper or prev_close > prev_upper):
                upper = prev_upper
            # Down turns up on a close above the upper band; up turns down on a close below the lower one.
            d = (1.0 if c > upper else -1.0) if prev_dir < 0.0 else (-1.0 if c < lower else 1.0)
        else:
            d = -1.0
        line[i] = lower if d > 0.0 else upper
        direction[i] = d
        prev_upper = upper
        prev_lower = lower
        prev_close = c
        prev_dir = d
        started = True
    return line, direction


def supertrend_batch(
    high: FloatArray, low: FloatArray, close: FloatArray, factor: float, atr_length: float
) -> tuple[FloatArray, FloatArray]:
    """Supertrend (TradingView's): line and direction (+1 up: line is the lower band; -1 down: upper band)."""
    h, lo, c = series(high), series(low), series(close)
    atr = atr_series(h, lo, c, _length("atr_length", atr_length))
    return _supertrend_loop((h + lo) / 2.0, c, atr, float_param("factor", factor))


class Supertrend:
    """Streaming twin of `supertrend_batch`.

    Bands are hl2 ± factor · ATR. The lower band only rises (it is kept unless the new one is higher or the
    previous close fell below it) and the upper band only falls, symmetrically. The first valid bar starts
    down (line = upper band); while down, a close above the upper band turns it up; while up, a close below
    the lower band turns it down. A bar where ATR, hl2 or close is na gives na and is skipped (state
    unchanged, as if the bar did not exist).
    """

    __slots__ = ("atr", "factor", "prev_close", "prev_dir", "prev_lower", "prev_upper", "started")

    def __init__(self, factor: float, atr_length: float) -> None:
        """Start with no bar seen."""
        # Band distance in ATRs.
        self.factor = float_param("factor", factor)
        # ATR of the bars.
        self.atr = AtrState(_length("atr_length", atr_length))
        # True once a valid bar has set the bands.
        self.started = False
        # Final upper band of the last valid bar (price).
        self.prev_upper = 0.0
        # Final lower band of the last valid bar (price).
        self.prev_lower = 0.0
        # Close of the last valid bar (price).
        self.prev_close = 0.0
        # Direction of the last valid bar: +1.0 up, -1.0 down.
        self.prev_dir = -1.0

    def update(self, high: float, low: float, close: float) -> tuple[float, float]:
        """Feed one bar; return (line, direction)."""
        a = self.atr.step(high, low, close)
        hl2 = (high + low) / 2.0
        if a != a or close != close or hl2 != hl2:
            return _NA2
        upper = hl2 + self.factor * a
        lower = hl2 - self.factor * a
        if self.started:
            prev_close = self.prev_close
            if not (lower > self.prev_lower or prev_close < self.prev_lower):
                lower = self.prev_lower
            if not (upper < self.prev_upper or prev_close > self.prev_upper):
                upper = self.prev_upper
            # Down turns up on a close above the upper band; up turns down on a close below the lower one.
            d = (1.0 if close > upper else -1.0) if self.prev_dir < 0.0 else (-1.0 if close < lower else 1.0)
        else:
            d = -1.0
        self.prev_upper = upper
        self.prev_lower = lower
        self.prev_close = close
        self.prev_dir = d
        self.started = True
        return (lower if d > 0.0 else upper), d


# Kernels of this module, by built-in name (signatures in `dsl.builtins`), in the language's order.
KERNELS: tuple[Kernels, ...] = (
    Kernels("stdev", stdev_batch, Stdev),
    Kernels("variance", variance_batch, Variance),
    Kernels("bbands", bbands_batch, Bbands),
    Kernels("atr", atr_batch, Atr),
    Kernels("tr", tr_batch, Tr),
    Kernels("donchian", donchian_batch, Donchian),
    Kernels("keltner", keltner_batch, Keltner),
    Kernels("supertrend", supertrend_batch, Supertrend),
)
