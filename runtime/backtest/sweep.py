"""Many backtests of one spec at once: the members of a parameter sweep (`strat optimize`).

The contract: `sweep(plans)` yields, for each planned member in order, exactly what `backtest(plan)` and
`compute_metrics` give for it (same trades, same equity, same metrics). This first version runs them one
by one; the fast version shares identical indicator nodes across members and simulates them in batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from runtime.backtest.drive import backtest
from runtime.backtest.metrics import Summary, compute_metrics
from runtime.plan.plan import RunPlan


@dataclass(frozen=True)
class MemberResult:
    """One member's outcome: its metrics and its equity curve (for overfitting statistics)."""

    summary: Summary  # every metric, as `strat run --backtest` reports them
    time: np.ndarray  # close time of every point of the reported period, UTC ms (int64)
    equity: np.ndarray  # marked equity at each of those points, quote currency (float64)


def sweep(plans: Iterable[RunPlan]) -> Iterator[MemberResult]:
    """Backtest every planned member, in order (see the module docstring for the contract)."""
    for rp in plans:
        result = backtest(rp)
        bar_ms = min(sp.graph.base.ms for sp in rp.sleeves)
        yield MemberResult(compute_metrics(result, bar_ms), result.time, result.equity)
