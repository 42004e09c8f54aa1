"""The two ways a planned run is driven through the simulated broker: batch backtest and bar-by-bar replay.

`backtest` evaluates every sleeve's graph over its whole history and hands the decisions to the compiled
broker loop at once; `replay` feeds the bars one at a time through the streaming driver and steps the
broker once per point of the merged time line, as live trading would. Both give the same result.
`warm_kernels` loads numba's machinery before a run needs it.

Both also record the strategies' alerts (`alert "text" when C`): an alert fires at the close of every base
bar where its condition holds (after the warm-up), like a decision; the result lists them in time order,
sleeves in spec order at one time, alerts in spec order within a sleeve, the same on both paths.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from runtime.broker.result import BacktestResult
from runtime.broker.session import alert_of
from runtime.graph.drivers import SharedValues, run_batch, truth_np
from runtime.plan.inputs import (
    Decisions,
    Offsets,
    decision_nodes,
    offset_nodes,
    portfolio_input,
    sleeve_input,
)
from runtime.plan.plan import RunPlan, SleevePlan

# Bars between two calls of a replay's progress callback.
_PROGRESS_EVERY = 10_000


class Signals(NamedTuple):
    """What a sleeve's graph decides over its whole history (see `batch_signals`)."""

    decisions: Decisions[np.ndarray]  # bool arrays over the base bars
    offsets: Offsets[np.ndarray | None]  # float64 bracket distance series, None when not a series
    alerts: tuple[np.ndarray, ...]  # bool array over the base bars per alert: fired at that bar's close


def batch_signals(sp: SleevePlan, shared: SharedValues | None = None) -> Signals:
    """Evaluate a sleeve's graph over its whole history: decisions, series bracket settings and alerts.

    Decisions and alerts are bool arrays over the base bars (none before `first_decision`); a series
    setting is a float64 array, None when the setting is not a series. `shared`: indicator values shared
    with other sleeves over the same feeds (see `graph.drivers.SharedValues`).
    """
    g = sp.graph
    decisions, offsets = decision_nodes(g), offset_nodes(g)
    wanted = [node for node in (*decisions, *offsets, *g.alerts) if node is not None]
    values = run_batch(g, sp.feeds, wanted, shared)
    n = sp.feeds.length(0)

    def series(node: int | None) -> np.ndarray | None:
        """A node's values over the base bars (a constant repeated), None for no node."""
        if node is None:
            return None
        value = values[node]
        return value if isinstance(value, np.ndarray) else np.full(n, float(value))

    return Signals(
        Decisions._make(_decided(series(node), sp.first_decision, n) for node in decisions),
        Offsets._make(series(node) for node in offsets),
        tuple(_decided(series(node), sp.first_decision, n) for node in g.alerts),
    )


def _decided(values: np.ndarray | None, first: int, n: int) -> np.ndarray:
    """A bool decision array: the rule held (not na, not zero) at or after bar `first`."""
    if values is None:
        return np.zeros(n, dtype=np.bool_)
    decided = truth_np(values)
    decided[: min(first, n)] = False
    return decided


def backtest(rp: RunPlan) -> BacktestResult:
    """Vectorized decisions over all history, then the compiled broker loop.

    Rules that read trade state (position_size, ...) can only be decided inside the loop: such a run
    takes the replay path, which gives the same decisions bar by bar.
    """
    from runtime.broker.simulator import simulate

    if any(sp.graph.needs_state for sp in rp.sleeves):
        return replay(rp)
    signals = [batch_signals(sp) for sp in rp.sleeves]
    result = simulate(
        portfolio_input(
            rp,
            [sleeve_input(sp, sg.decisions, sg.offsets) for sp, sg in zip(rp.sleeves, signals, strict=True)],
        )
    ).since(rp.start)
    # Every firing, ordered by close time, then sleeve (spec order), then alert (spec order): as replayed.
    fired = sorted(
        (int(sp.feeds.candles[0].time[i]) + sp.graph.base.ms, s, k, int(i))
        for s, (sp, sg) in enumerate(zip(rp.sleeves, signals, strict=True))
        for k, bars in enumerate(sg.alerts)
        for i in np.flatnonzero(bars).tolist()
    )
    if not fired:
        return result
    return dataclasses.replace(result, alerts=tuple(alert_of(rp.sleeves[s], k, i) for _, s, k, i in fired))


def replay(rp: RunPlan, progress: Callable[[int, int], None] | None = None) -> BacktestResult:
    """The live engine's path with history (`progress(done, total)` is told about every 10,000 bars).

    Every bar goes through the streaming driver and the broker is stepped once per point of the merged
    time line (`runtime.graph.timeline`) of every sleeve's clocks by `broker.session.Session`, the driver
    paper and live trading use.
    """
    from runtime.broker.session import Session

    session = Session(rp)
    session.run_history(progress)
    result = session.simulator.finish().since(rp.start)
    return dataclasses.replace(result, alerts=tuple(session.alerts)) if session.alerts else result


def warm_kernels() -> None:
    """Load numba's machinery and the commonest compiled kernels before the candles are needed.

    numba's first call in a process costs about a quarter of a second of setup (its typing registries),
    whichever kernel it is, and each kernel then some milliseconds to load from the on-disk cache;
    `strat run` pays them here while a CSV file is still being parsed on another thread (see
    `csvfiles.prefetch`), so they overlap. The calls run on tiny inputs typed as the real ones (read-only
    candle columns, writable derived series): the kernels of the indicators S1 uses, of the cleaning of
    candles, of the equity curve statistics and of the CSV output.
    """
    import sys

    from runtime.backtest.curve import curve_stats
    from runtime.backtest.fastcsv import iso_column, rows_text
    from runtime.data.candles import Candles
    from runtime.data.validate import clean
    from runtime.ops.events import crosses_above_batch
    from runtime.ops.moving import sma_batch

    candles = Candles.from_arrays("warm", "A/B", "1m", np.arange(4) * 60_000, [np.ones(4)] * 5)
    # That setup would also import cffi and build its C parser (70 ms) only to type cffi calls, which no
    # kernel makes: hide cffi while it runs (numba then records it as absent), restore it afterwards.
    hidden = "cffi" not in sys.modules
    if hidden:
        sys.modules["cffi"] = None  # type: ignore[assignment]
    try:
        (average,) = sma_batch(candles.close, 2)
        crosses_above_batch(average, average)
        clean(candles)
        curve_stats(np.ones(2))
        rows_text(np.zeros(1, dtype=np.int64), np.zeros((4, 1)), False)
        iso_column(np.zeros(1, dtype=np.int64), False)
    finally:
        if hidden:
            del sys.modules["cffi"]
