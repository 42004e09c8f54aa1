"""Oscillators: rsi, macd, stoch, cci, adx.

na handling: recursive parts (Wilder's and exponential smoothers) seed with the mean of their first
`length` valid inputs and skip na inputs (na on that bar, state unchanged); a bar-to-bar change is na when
the current or previous bar's value is na; window parts are na while the window is not full or holds an na.
A ratio whose denominator is 0 is na (stoch with a flat range, cci with zero mean deviation), except where
TradingView defines a value (rsi is 100 when the average loss is 0; adx's DI and DX are 0 on a zero range).
"""

from __future__ import annotations

import numpy as np

from runtime.ops.base import NA1, NAN, FloatArray, Kernels, int_param, lagged, series
from runtime.ops.primitives import (
    Extreme,
    Smoother,
    TrueRange,
    Window,
    ema_alpha,
    extreme,
    mean_deviation,
    smooth,
    true_range,
    wilder_alpha,
    window_mean_deviation,
    window_sum,
)

# Result of a two-output operator that is na.
_NA2 = (NAN, NAN)
# Lambert's constant of the CCI.
_CCI_SCALE = 0.015


def _length(name: str, value: float) -> int:
    """A window or smoothing length: a whole number of bars, at least 1."""
    return int_param(name, value, 1)


def rsi_batch(source: FloatArray, length: float) -> tuple[FloatArray]:
    """Wilder's RSI: 100 - 100 / (1 + RMA(gains) / RMA(losses)); 100 when the average loss is 0."""
    n = _length("length", length)
    x = series(source)
    d = x - lagged(x, 1)
    missing = np.isnan(d)
    gains = np.where(missing, np.nan, np.where(d > 0.0, d, 0.0))
    losses = np.where(missing, np.nan, np.where(d < 0.0, -d, 0.0))
    up = smooth(gains, n, wilder_alpha(n))
    down = smooth(losses, n, wilder_alpha(n))
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi = np.where(down == 0.0, 100.0, 100.0 - 100.0 / (1.0 + up / down))
    return (np.where(np.isnan(down), np.nan, rsi),)


class Rsi:
    """Streaming twin of `rsi_batch`."""

    __slots__ = ("down", "prev", "up")

    def __init__(self, length: float) -> None:
        """Start with no bar seen."""
        n = _length("length", length)
        # Previous bar's value (na before the first bar).
        self.prev = NAN
        # Wilder's average gain.
        self.up = Smoother(n, wilder_alpha(n))
        # Wilder's average loss.
        self.down = Smoother(n, wilder_alpha(n))

    def update(self, source: float) -> tuple[float]:
        """Feed one bar; return the RSI."""
        d = source - self.prev
        self.prev = source
        if d != d:
            return NA1
        up = self.up.step(d if d > 0.0 else 0.0)
        down = self.down.step(-d if d < 0.0 else 0.0)
        if down != down:
            return NA1
        if down == 0.0:
            return (100.0,)
        return (100.0 - 100.0 / (1.0 + up / down),)


def macd_batch(
    source: FloatArray, fast: float, slow: float, signal: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """MACD: line = EMA(fast) - EMA(slow), signal = EMA(line, signal), hist = line - signal."""
    nf, ns, nsig = _length("fast", fast), _length("slow", slow), _length("signal", signal)
    x = series(source)
    line = smooth(x, nf, ema_alpha(nf)) - smooth(x, ns, ema_alpha(ns))
    sig = smooth(line, nsig, ema_alpha(nsig))
    return line, sig, line - sig


class Macd:
    """Streaming twin of `macd_batch`."""

    __slots__ = ("fast", "signal", "slow")

    def __init__(self, fast: float, slow: float, signal: float) -> None:
        """Start with no bar seen."""
        nf, ns, nsig = _length("fast", fast), _length("slow", slow), _length("signal", signal)
        # EMA of the source over `fast` bars.
        self.fast = Smoother(nf, ema_alpha(nf))
        # EMA of the source over `slow` bars.
        self.slow = Smoother(ns, ema_alpha(ns))
        # EMA of the MACD line over `signal` bars.
        self.signal = Smoother(nsig, ema_alpha(nsig))

    def update(self, source: float) -> tuple[float, float, float]:
        """Feed one bar; return (line, signal, hist)."""
        line = self.fast.step(source) - self.slow.step(source)
        sig = self.signal.step(line)
        return line, sig, line - sig


def _stoch_k(close: FloatArray, high: FloatArray, low: FloatArray) -> FloatArray:
    """Raw %K from the close and the window's highest high and lowest low; na on a flat range."""
    span = high - low
    span[span == 0.0] = np.nan
    return 100.0 * (close - low) / span


def stoch_batch(
    high: FloatArray, low: FloatArray, close: FloatArray, k: float, d: float
) -> tuple[FloatArray, FloatArray]:
    """Stochastic: %K = 100 · (close - lowest low) / (highest high - lowest low), %D = SMA(%K, d).

    Both extremes span the last k bars; %K is na where the range is flat.
    """
    nk, nd = _length("k", k), _length("d", d)
    raw = _stoch_k(series(close), extreme(series(high), nk, True), extreme(series(low), nk, False))
    total = window_sum(raw, nd)
    return raw, total / nd


class Stoch:
    """Streaming twin of `stoch_batch`."""

    __slots__ = ("highs", "lows", "smooth")

    def __init__(self, k: float, d: float) -> None:
        """Start with no bar seen."""
        nk = _length("k", k)
        # Highest high over k bars.
        self.highs = Extreme(nk, True)
        # Lowest low over k bars.
        self.lows = Extreme(nk, False)
        # Window of the last d %K values, for %D.
        self.smooth = Window(_length("d", d))

    def update(self, high: float, low: float, close: float) -> tuple[float, float]:
        """Feed one bar; return (%K, %D)."""
        top = self.highs.push(high)
        bottom = self.lows.push(low)
        span = top - bottom
        raw = NAN if span == 0.0 else 100.0 * (close - bottom) / span
        window = self.smooth
        return raw, (window.total / window.n if window.push(raw) else NAN)


def cci_batch(high: FloatArray, low: FloatArray, close: FloatArray, length: float) -> tuple[FloatArray]:
    """CCI: (tp - SMA(tp)) / (0.015 · mean deviation of tp), tp = (high + low + close) / 3.

    na where the mean deviation is 0.
    """
    n = _length("length", length)
    tp = (series(high) + series(low) + series(close)) / 3.0
    total = window_sum(tp, n)
    mean = total / n
    dev = mean_deviation(tp, mean, n)
    dev[dev == 0.0] = np.nan
    return ((tp - mean) / (_CCI_SCALE * dev),)


class Cci(Window):
    """Streaming twin of `cci_batch`: the mean deviation is O(length) per bar (no O(1) form exists)."""

    __slots__ = ()

    def __init__(self, length: float) -> None:
        """Start with no bar seen."""
        super().__init__(_length("length", length))

    def update(self, high: float, low: float, close: float) -> tuple[float]:
        """Feed one bar; return the CCI."""
        tp = (high + low + close) / 3.0
        if not self.push(tp):
            return NA1
        mean = self.total / self.n
        dev = window_mean_deviation(self, mean)
        return NA1 if dev == 0.0 else ((tp - mean) / (_CCI_SCALE * dev),)


def adx_batch(high: FloatArray, low: FloatArray, close: FloatArray, length: float) -> tuple[FloatArray]:
    """Wilder's ADX: RMA of DX = 100 · |+DI - -DI| / (+DI + -DI), DI = 100 · RMA(±DM) / RMA(tr).

    A bar counts when its high and low and the previous bar's are valid; other bars are na and skipped by
    all smoothers. +DM is the rise of the high when it exceeds the fall of the low and is positive, else 0;
    -DM symmetrically.
    """
    n = _length("length", length)
    alpha = wilder_alpha(n)
    h, lo, c = series(high), series(low), series(close)
    tr = true_range(h, lo, c)
    up = h - lagged(h, 1)
    down = lagged(lo, 1) - lo
    missing = np.isnan(up) | np.isnan(down) | np.isnan(tr)
    plus_dm = np.where(missing, np.nan, np.where((up > down) & (up > 0.0), up, 0.0))
    minus_dm = np.where(missing, np.nan, np.where((down > up) & (down > 0.0), down, 0.0))
    tr[missing] = np.nan
    atr = smooth(tr, n, alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        plus = np.where(atr == 0.0, 0.0, 100.0 * smooth(plus_dm, n, alpha) / atr)
        minus = np.where(atr == 0.0, 0.0, 100.0 * smooth(minus_dm, n, alpha) / atr)
        both = plus + minus
        dx = np.where(both == 0.0, 0.0, 100.0 * np.abs(plus - minus) / both)
    return (smooth(dx, n, alpha),)


class Adx:
    """Streaming twin of `adx_batch`."""

    __slots__ = ("adx", "atr", "minus", "plus", "prev_high", "prev_low", "tr")

    def __init__(self, length: float) -> None:
        """Start with no bar seen."""
        n = _length("length", length)
        alpha = wilder_alpha(n)
        # True range (keeps the previous close).
        self.tr = TrueRange()
        # High of the previous bar (na before the first bar).
        self.prev_high = NAN
        # Low of the previous bar (na before the first bar).
        self.prev_low = NAN
        # Wilder's average true range.
        self.atr = Smoother(n, alpha)
        # Wilder's average +DM.
        self.plus = Smoother(n, alpha)
        # Wilder's average -DM.
        self.minus = Smoother(n, alpha)
        # Wilder's average DX: the ADX.
        self.adx = Smoother(n, alpha)

    def update(self, high: float, low: float, close: float) -> tuple[float]:
        """Feed one bar; return the ADX."""
        tr = self.tr.step(high, low, close)
        up = high - self.prev_high
        down = self.prev_low - low
        self.prev_high = high
        self.prev_low = low
        if up != up or down != down or tr != tr:
            return NA1
        atr = self.atr.step(tr)
        plus_avg = self.plus.step(up if (up > down and up > 0.0) else 0.0)
        minus_avg = self.minus.step(down if (down > up and down > 0.0) else 0.0)
        if atr != atr:
            return NA1
        plus = 0.0 if atr == 0.0 else 100.0 * plus_avg / atr
        minus = 0.0 if atr == 0.0 else 100.0 * minus_avg / atr
        both = plus + minus
        dx = 0.0 if both == 0.0 else 100.0 * abs(plus - minus) / both
        return (self.adx.step(dx),)


# Kernels of this module, by built-in name (signatures in `dsl.builtins`), in the language's order.
KERNELS: tuple[Kernels, ...] = (
    Kernels("rsi", rsi_batch, Rsi),
    Kernels("macd", macd_batch, Macd),
    Kernels("adx", adx_batch, Adx),
    Kernels("stoch", stoch_batch, Stoch),
    Kernels("cci", cci_batch, Cci),
)
