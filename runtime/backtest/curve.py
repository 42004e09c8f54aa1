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


@njit(cache=True)
def _curve_stats(curve: np.ndarray) -> tuple[np.ndarray, float, int]:  # pragma: no cover
    """(per-point returns, largest drawdown, longest drawdown in bars) of an equity curve."""
    n = len(curve)
    rets = np.empty(max(n - 1, 0))
    peak = curve[0]
    last_peak = 0  # index of the latest point at or above the running peak
    under_before = False  # whether the previous point was under water
    worst = 0.0
    longest = 0
    for i in range(n):
        value = curve[i]
        if i > 0:
            before = curve[i - 1]
            rets[i - 1] = value / before - 1.0 if before > 0 else 0.0
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
    return rets, worst, longest


# The compiled kernel, typed loosely for mypy (numba's dispatcher has no useful signature).
_CURVE_STATS: Callable[..., tuple[np.ndarray, float, int]] = _curve_stats


def curve_stats(curve: np.ndarray) -> tuple[np.ndarray, float, int]:
    """Per-point returns (against the previous point; 0 after a non-positive one), max drawdown, duration."""
    rets, worst, longest = _CURVE_STATS(np.ascontiguousarray(curve, dtype=np.float64))
    return rets, float(worst), int(longest)
