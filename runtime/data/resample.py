"""Resampling candles to a coarser timeframe that is a whole multiple of theirs.

Periods are aligned to UTC epoch boundaries (weeks to Monday 00:00 UTC, as exchanges open them) and only
complete periods are produced: a period missing any base bar is dropped, never guessed. Volumes are
summed in scaled integers when the values allow it, so that 5m Binance candles resampled to 1h equal
Binance's own 1h candles bit for bit.
"""

from __future__ import annotations

import numpy as np

from dsl.units import TIMEFRAMES, timeframe_ms
from runtime.data.candles import Candles

# Weekly periods start on Monday; the epoch (1970-01-01) was a Thursday, four days later than one.
_WEEK_OFFSET_MS = 4 * 86_400_000
# Most decimal places tried when summing exactly; exchanges quote at most 8.
_MAX_DECIMALS = 8
# Largest scaled magnitude summed as integers: well inside float64's exact integer range (2**53).
_MAX_SCALED = float(2**43)


def can_resample(base: str, target: str) -> bool:
    """Whether `target` is a strictly coarser whole multiple of `base`."""
    b, t = timeframe_ms(base), timeframe_ms(target)
    return t > b and t % b == 0


def finer_timeframes(target: str) -> list[str]:
    """Timeframes that can be resampled to `target`, coarsest first (fewest bars to read)."""
    return sorted((tf for tf in TIMEFRAMES if can_resample(tf, target)), key=TIMEFRAMES.__getitem__)[::-1]


def period_start(time: np.ndarray, timeframe: str) -> np.ndarray:
    """Open time of the `timeframe` period that contains each open time, UTC ms."""
    step = timeframe_ms(timeframe)
    offset = _WEEK_OFFSET_MS if timeframe == "1w" else 0
    return (time - offset) // step * step + offset


def resample(candles: Candles, timeframe: str) -> Candles:
    """Aggregate sorted, distinct base candles into complete `timeframe` periods.

    open = first open, high = max, low = min, close = last close, volume = sum; a period is marked
    filled when any of its base bars was. Raises ValueError when the target is not a coarser multiple.
    """
    if timeframe == candles.timeframe:
        return candles
    if not can_resample(candles.timeframe, timeframe):
        raise ValueError(f"cannot resample {candles.timeframe} to {timeframe}: not a coarser whole multiple")
    per_period = timeframe_ms(timeframe) // candles.timeframe_ms
    period = period_start(candles.time, timeframe)
    # Start index of each run of equal period starts; reduceat aggregates each run.
    starts = np.flatnonzero(np.r_[True, period[1:] != period[:-1]]) if len(period) else np.zeros(0, int)
    counts = np.diff(np.r_[starts, len(period)])
    complete = counts == per_period
    if not len(starts):
        return Candles.empty(candles.exchange, candles.symbol, timeframe, synthetic=candles.synthetic)
    ends = starts + counts - 1
    return Candles.from_arrays(
        candles.exchange,
        candles.symbol,
        timeframe,
        period[starts][complete],
        [
            candles.open[starts][complete],
            np.maximum.reduceat(candles.high, starts)[complete],
            np.minimum.reduceat(candles.low, starts)[complete],
            candles.close[ends][complete],
            exact_sums(candles.volume, starts)[complete],
        ],
        filled=np.logical_or.reduceat(candles.filled, starts)[complete],
        synthetic=candles.synthetic,
    )


def exact_sums(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Sum runs of `values` beginning at `starts`, exactly when they are short decimals.

    When every value has at most `_MAX_DECIMALS` decimal places, the values are scaled to integers,
    summed without rounding error and divided back once: a correctly rounded division gives the float
    nearest the true decimal sum, which is what parsing the exchange's own aggregate yields. Otherwise
    it is a plain float sum.
    """
    if not len(values):
        return values.copy()
    peak = float(np.max(np.abs(values)))
    for decimals in range(_MAX_DECIMALS + 1):
        scale = 10.0**decimals
        if peak * scale * 1_000 >= _MAX_SCALED:
            break
        scaled = values * scale
        integers = np.rint(scaled)
        if np.all(np.abs(scaled - integers) <= 1e-6):
            return np.add.reduceat(integers, starts) / scale
    return np.add.reduceat(values, starts)
