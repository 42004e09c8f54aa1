"""Walk-forward analysis: optimise on a train window, run the winner on the test window after it, roll on.

`rolling(train, test)`: fold k trains on [s + k·test, s + k·test + train) and tests on the `test` after
it; `anchored(train, test)`: every fold trains from the start s, on [s, s + train + k·test). Folds
continue while a test window starts before the end e; the last test window is cut at e. The test runs
are stitched into one out-of-sample equity curve (each fold starts from the equity the previous ended
with), compared with buying and holding over the same bars.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from runtime.backtest.metrics import YEAR_MS, drawdown


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: its train and test windows, UTC ms, ends exclusive."""

    train_start: int  # first bar of the train window
    train_end: int  # end of the train window = start of the test window
    test_end: int  # end of the test window


def folds(start: int, end: int, train_ms: int, test_ms: int, anchored: bool) -> list[Fold]:
    """The folds of a walk-forward scheme over [start, end) (see the module docstring)."""
    found = []
    k = 0
    while start + train_ms + k * test_ms < end:
        train_start = start if anchored else start + k * test_ms
        train_end = start + train_ms + k * test_ms
        found.append(Fold(train_start, train_end, min(train_end + test_ms, end)))
        k += 1
    return found


@dataclass(frozen=True)
class Curve:
    """An equity curve: close times and equity."""

    time: np.ndarray  # bar close times, UTC ms (int64)
    equity: np.ndarray  # equity at those times, quote currency (float64)


def stitch(parts: Sequence[Curve], capital: float) -> Curve:
    """One curve of runs that each started with `capital`, each rescaled to go on from the last."""
    times, values = [], []
    level = capital
    for part in parts:
        scaled = np.asarray(part.equity, dtype=np.float64) * (level / capital)
        times.append(np.asarray(part.time, dtype=np.int64))
        values.append(scaled)
        if len(scaled):
            level = float(scaled[-1])
    if not times:
        return Curve(np.zeros(0, dtype=np.int64), np.zeros(0))
    return Curve(np.concatenate(times), np.concatenate(values))


@dataclass(frozen=True)
class CurveStats:
    """Headline metrics of a stitched curve, computed as `strat run` computes them."""

    total_return: float  # last equity / capital - 1
    sharpe: float | None  # annualised mean / sample std of per-bar returns; None when flat
    max_drawdown: float  # largest peak-to-trough fall (fraction)
    bars: int  # points of the curve


def curve_stats(curve: Curve, capital: float, bar_ms: int) -> CurveStats:
    """The headline metrics of a curve that started from `capital`, with bars `bar_ms` long."""
    full = np.concatenate(([capital], curve.equity))
    returns = full[1:] / full[:-1] - 1.0
    std = float(np.std(returns, ddof=1)) if len(returns) > 1 else 0.0
    sharpe = float(np.mean(returns)) / std * math.sqrt(YEAR_MS / bar_ms) if std > 0 else None
    return CurveStats(float(full[-1] / capital - 1), sharpe, float(drawdown(full).max()), len(curve.equity))


@dataclass(frozen=True)
class Stability:
    """How much one param's chosen value moved across the folds."""

    name: str  # param name
    values: tuple[float, ...]  # the value chosen in each fold
    spread: float  # standard deviation of those values over the width of the param's domain (0 = stable)


def stability(name: str, values: Sequence[float], low: float, high: float) -> Stability:
    """The stability of one param's chosen values over the folds."""
    width = high - low
    spread = float(np.std(values)) / width if width > 0 and len(values) else 0.0
    return Stability(name, tuple(values), spread)
