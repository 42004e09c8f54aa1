"""Moving averages, rolling sums and extremes, and lag-based differences of one series.

na handling: a window operator (sma, wma, sum, highest, lowest) is na while its window is not full or holds
an na; a recursive filter (ema, rma) seeds with the mean of its first `length` valid values and skips na
inputs (na on that bar, state unchanged); a lag operator (offset, change, momentum, roc) is na when the
current value or the one `length` bars ago is na.
"""

from __future__ import annotations

import numpy as np

from runtime.ops.base import NA1, NAN, FloatArray, Kernels, int_param, lagged, series
from runtime.ops.primitives import (
    Extreme,
    Lag,
    Smoother,
    Window,
    ema_alpha,
    extreme,
    smooth,
    wilder_alpha,
    window_stats,
    window_sum,
)


def _window_length(length: float) -> int:
    """A window length: a whole number of bars, at least 1."""
    return int_param("length", length, 1)


def _lag_length(length: float) -> int:
    """A lag: a whole number of bars, at least 0."""
    return int_param("length", length, 0)


def sma_batch(source: FloatArray, length: float) -> tuple[FloatArray]:
    """Simple moving average: the window's sum divided by `length`."""
    n = _window_length(length)
    total = window_sum(series(source), n)
    # In place: the sums are a fresh array, and one array less is fewer page faults on long series.
    return (np.divide(total, n, out=total),)


class Sma(Window):
    """Streaming twin of `sma_batch`."""

    __slots__ = ()

    def __init__(self, length: float) -> None:
        """Start with no bar seen."""
        super().__init__(_window_length(length))

    def update(self, source: float) -> tuple[float]:
        """Feed one bar; return the moving average."""
        return (self.total / self.n,) if self.push(source) else NA1


def sum_batch(source: FloatArray, length: float) -> tuple[FloatArray]:
    """Rolling sum over `length` bars."""
    total = window_sum(series(source), _window_length(length))
    return (total,)


class Sum(Window):
    """Streaming twin of `sum_batch`."""

    __slots__ = ()

    def __init__(self, length: float) -> None:
        """Start with no bar seen."""
        super().__init__(_window_length(length))

    def update(self, source: float) -> tuple[float]:
        """Feed one bar; return the rolling sum."""
        return (self.total,) if self.push(source) else NA1


def _wma_denominator(n: int) -> float:
    """Sum of the WMA weights 1 + 2 + ... + n."""
    return n * (n + 1) / 2.0


def wma_batch(source: FloatArray, length: float) -> tuple[FloatArray]:
    """Linearly weighted moving average (weight `length` on the current bar, 1 on the oldest)."""
    n = _window_length(length)
    _, _, weighted = window_stats(series(source), n)
    return (weighted / _wma_denominator(n),)


class Wma(Window):
    """Streaming twin of `wma_batch`."""

    __slots__ = ("denominator",)

    def __init__(self, length: float) -> None:
        """Start with no bar seen."""
        super().__init__(_window_length(length))
        # Sum of the weights.
        self.denominator = _wma_denominator(self.n)

    def update(self, source: float) -> tuple[float]:
        """Feed one bar; return the weighted moving average."""
        return (self.weighted / self.denominator,) if self.push(source) else NA1


def ema_batch(source: FloatArray, length: float) -> tuple[FloatArray]:
    """Exponential moving average, alpha 2/(length+1), seeded with the SMA of the first `length` values."""
    n = _window_length(length)
    return (smooth(series(source), n, ema_alpha(n)),)


class Ema(Smoother):
    """Streaming twin of `ema_batch`."""

    __slots__ = ()

    def __init__(self, length: float) -> None:
        """Start with no bar seen."""
        n = _window_length(length)
        super().__init__(n, ema_alpha(n))

    def update(self, source: float) -> tuple[float]:
        """Feed one bar; return the EMA."""
        return (self.step(source),)


def rma_batch(source: FloatArray, length: float) -> tuple[FloatArray]:
    """Wilder's moving average, alpha 1/length, seeded with the SMA of the first `length` values."""
    n = _window_length(length)
    return (smooth(series(source), n, wilder_alpha(n)),)


class Rma(Smoother):
    """Streaming twin of `rma_batch`."""

    __slots__ = ()

    def __init__(self, length: float) -> None:
        """Start with no bar seen."""
        n = _window_length(length)
        super().__init__(n, wilder_alpha(n))

    def update(self, source: float) -> tuple[float]:
        """Feed one bar; return the RMA."""
        return (self.step(source),)


def highest_batch(source: FloatArray, length: float) -> tuple[FloatArray]:
    """Highest value of the last `length` bars, current bar included."""
    return (extreme(series(source), _window_length(length), True),)


def lowest_batch(source: FloatArray, length: float) -> tuple[FloatArray]:
    """Lowest value of the last `length` bars, current bar included."""
    return (extreme(series(source), _window_length(length), False),)


class Highest(Extreme):
    """Streaming twin of `highest_batch`."""

    __slots__ = ()

    def __init__(self, length: float) -> None:
        """Start with no bar seen."""
        super().__init__(_window_length(length), True)

    def update(self, source: float) -> tuple[float]:
        """Feed one bar; return the highest value of the window."""
        return (self.push(source),)


class Lowest(Extreme):
    """Streaming twin of `lowest_batch`."""

    __slots__ = ()

    def __init__(self, length: float) -> None:
        """Start with no bar seen."""
        super().__init__(_window_length(length), False)

    def update(self, source: float) -> tuple[float]:
        """Feed one bar; return the lowest value of the window."""
        return (self.push(source),)


def offset_batch(x: FloatArray, n: float) -> tuple[FloatArray]:
    """`x[n]`: the value n bars ago on the series' clock (a syntax operator)."""
    return (lagged(series(x), int_param("n", n, 0)),)


class Offset(Lag):
    """Streaming twin of `offset_batch`."""

    __slots__ = ()

    def __init__(self, n: float) -> None:
        """Start with no bar seen."""
        super().__init__(int_param("n", n, 0))

    def update(self, x: float) -> tuple[float]:
        """Feed one bar; return the value n bars ago."""
        return (self.push(x),)


def change_batch(source: FloatArray, length: float) -> tuple[FloatArray]:
    """Difference `x - x[length]` (also `momentum`)."""
    x = series(source)
    return (x - lagged(x, _lag_length(length)),)


class Change(Lag):
    """Streaming twin of `change_batch`."""

    __slots__ = ()

    def __init__(self, length: float) -> None:
        """Start with no bar seen."""
        super().__init__(_lag_length(length))

    def update(self, source: float) -> tuple[float]:
        """Feed one bar; return the difference to the value `length` bars ago."""
        return (source - self.push(source),)


def roc_batch(source: FloatArray, length: float) -> tuple[FloatArray]:
    """Rate of change in percent, `100 * (x / x[length] - 1)`; na where `x[length]` is 0."""
    x = series(source)
    prev = lagged(x, _lag_length(length))
    zero = prev == 0.0
    prev[zero] = NAN
    return (100.0 * (x / prev - 1.0),)


class Roc(Lag):
    """Streaming twin of `roc_batch`."""

    __slots__ = ()

    def __init__(self, length: float) -> None:
        """Start with no bar seen."""
        super().__init__(_lag_length(length))

    def update(self, source: float) -> tuple[float]:
        """Feed one bar; return the rate of change in percent."""
        prev = self.push(source)
        return NA1 if prev == 0.0 else (100.0 * (source / prev - 1.0),)


# Kernels of this module, by built-in name (signatures in `dsl.builtins`), in the language's order.
KERNELS: tuple[Kernels, ...] = (
    Kernels("sma", sma_batch, Sma),
    Kernels("wma", wma_batch, Wma),
    Kernels("highest", highest_batch, Highest),
    Kernels("lowest", lowest_batch, Lowest),
    Kernels("sum", sum_batch, Sum),
    Kernels("ema", ema_batch, Ema),
    Kernels("rma", rma_batch, Rma),
    Kernels("roc", roc_batch, Roc),
    Kernels("momentum", change_batch, Change),
    Kernels("change", change_batch, Change),
    Kernels("offset", offset_batch, Offset),
)
