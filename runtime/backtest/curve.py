"""Compiled one-pass statistics of an equity curve, for `metrics.compute_metrics` on long runs.

Every value is computed with the same floating-point operations as the numpy definitions in
`runtime.backtest.metrics` (element-wise returns, drawdown from the running peak, a maximum, integer bar
counts), so the results are identical; sums and means stay with numpy, whose pairwise summation
`summary.json` has always used.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _curve_stats(first: float, rest: np.ndarray, rets: np.ndarray) -> tuple[float, int]:  # pragma: no cover
    """(largest drawdown, longest drawdown in bars) of the curve `[first, *rest]`; its returns into `rets`."""
    n = len(rest) + 1
    peak = first
    last_peak = 0  # index of the latest point at or above the running peak
    under_before = False  # whether the previous point was under water
    worst = 0.0
    longest = 0
    before = first  # the previous point's value
    for i in range(n):
        value = rest[i - 1] if i > 0 else first
        if i > 0:
            rets[i - 1] = value / before - 1.0 if before > 0 else 0.0
        before = value
        peak = max(peak, value)
        dd = 1.0 - value / peak if peak > 0 else 0.0
        if dd != dd or worst != worst:
            worst = np.nan
        elif dd > worst:
            worst = dd
        under = value < peak
        # A stretch is measured at each underwater point and at the recovery point right after one.
        if i > 0 and (under or under_before):
            longest = max(longest, i - last_peak)
        if not under:
            last_peak = i
        under_before = under
    return worst, longest


# The compiled kernel, typed loosely for mypy (numba's dispatcher has no useful signature).
_CURVE_STATS: Callable[..., tuple[float, int]] = _curve_stats


def curve_stats(curve: np.ndarray) -> tuple[np.ndarray, float, int]:
    """Per-point returns (against the previous point; 0 after a non-positive one), max drawdown, duration."""
    values = np.ascontiguousarray(curve, dtype=np.float64)
    return equity_stats(float(values[0]), values[1:])


def equity_stats(capital: float, equity: np.ndarray) -> tuple[np.ndarray, float, int]:
    """`curve_stats` of the curve `[capital, *equity]`, without building that curve (one array less)."""
    values = np.ascontiguousarray(equity, dtype=np.float64)
    # The returns array is allocated here, not in the kernel: numpy backs a big array with huge pages,
    # which on a million bars faults in far faster than numba's allocation.
    rets = np.empty(len(values))
    worst, longest = _CURVE_STATS(float(capital), values, rets)
    return rets, float(worst), int(longest)
