"""Volume operators: obv and the rolling vwap.

na handling: obv starts at 0 on the first bar; on a later bar it adds sign(close - previous close) · volume
(TradingView's convention: an unchanged close adds nothing); a bar whose close, previous close or volume is
na gives na and leaves the total unchanged. vwap is na while its window is not full, holds an na, or has
zero total volume.
"""

from __future__ import annotations

import numpy as np

from runtime.ops.base import NA1, NAN, FloatArray, Kernels, int_param, lagged, series
from runtime.ops.primitives import Window, window_sum


def obv_batch(close: FloatArray, volume: FloatArray) -> tuple[FloatArray]:
    """On-balance volume: the running sum of sign(close change) · volume, 0 on the first bar."""
    c, v = series(close), series(volume)
    step = np.sign(c - lagged(c, 1)) * v
    if step.shape[0]:
        # The first bar contributes nothing; it is valid when its close is.
        step[0] = 0.0 if c[0] == c[0] else np.nan
    valid = ~np.isnan(step)
    # Skipped bars add 0.0, which leaves the running sum unchanged bit for bit.
    total = np.cumsum(np.where(valid, step, 0.0))
    return (np.where(valid, total, np.nan),)


class Obv:
    """Streaming twin of `obv_batch`."""

    __slots__ = ("prev", "started", "total")

    def __init__(self) -> None:
        """Start with no bar seen."""
        # Close of the previous bar.
        self.prev = NAN
        # True after the first bar.
        self.started = False
        # Running on-balance volume (volume units).
        self.total = 0.0

    def update(self, close: float, volume: float) -> tuple[float]:
        """Feed one bar; return the on-balance volume."""
        prev = self.prev
        self.prev = close
        if not self.started:
            self.started = True
            return (self.total,) if close == close else NA1
        d = close - prev
        step = (1.0 if d > 0.0 else -1.0 if d < 0.0 else 0.0 if d == 0.0 else NAN) * volume
        if step != step:
            return NA1
        self.total += step
        return (self.total,)


def _length(length: float) -> int:
    """A window length: a whole number of bars, at least 1."""
    return int_param("length", length, 1)


def vwap_batch(
    high: FloatArray, low: FloatArray, close: FloatArray, volume: FloatArray, length: float
) -> tuple[FloatArray]:
    """Rolling VWAP: sum(hlc3 · volume, length) / sum(volume, length); na on zero total volume."""
    n = _length(length)
    v = series(volume)
    tp = (series(high) + series(low) + series(close)) / 3.0
    weighted = window_sum(tp * v, n)
    total = window_sum(v, n)
    total[total == 0.0] = np.nan
    return (weighted / total,)


class Vwap:
    """Streaming twin of `vwap_batch`."""

    __slots__ = ("traded", "volumes")

    def __init__(self, length: float) -> None:
        """Start with no bar seen."""
        n = _length(length)
        # Window of hlc3 · volume.
        self.traded = Window(n)
        # Window of volume.
        self.volumes = Window(n)

    def update(self, high: float, low: float, close: float, volume: float) -> tuple[float]:
        """Feed one bar; return the rolling VWAP."""
        tp = (high + low + close) / 3.0
        traded_ok = self.traded.push(tp * volume)
        volume_ok = self.volumes.push(volume)
        total = self.volumes.total
        if not (traded_ok and volume_ok) or total == 0.0:
            return NA1
        return (self.traded.total / total,)


# Kernels of this module, by built-in name (signatures in `dsl.builtins`), in the language's order.
KERNELS: tuple[Kernels, ...] = (
    Kernels("obv", obv_batch, Obv),
    Kernels("vwap", vwap_batch, Vwap),
)
