"""Many backtests of one spec at once: the members of a parameter sweep (`strat optimize`).

The contract: `sweep(plans)` yields, for each planned member in order, exactly what `backtest(plan)` and
`compute_metrics` give for it (same trades, same equity, same metrics, bit for bit).

How it is fast: members are taken `batch` at a time. Every distinct indicator node (same operator, inputs
and params: `Graph.node_hashes`) is computed once per data set for the whole sweep (twice at most, see
`graph.drivers.SharedValues`) and shared by the members reading it (members read the same candles, as
the same objects or equal ones). The members of a batch that read the same bars are then simulated
together in one compiled call (`broker.simulator.simulate_members`: independent accounts, not sleeves
sharing cash), and their metrics computed with the calendar of their common time line (months, start
and end) found once (with `overlap`, the next batch is simulated on a second thread meanwhile). Memory
is bounded by the batch size (about 100 bytes per bar per member, `BYTES_PER_BAR`, plus the shared
indicators), not by the number of members.

The fast path takes members with one sleeve, no risk rules and no rebalancing whose rules are decided
over whole arrays. These take the plain path (`backtest`, one by one, in their place in the order):
rules that read trade state (`position_size`, ...: `Graph.needs_state`, decided bar by bar), portfolios
of several sleeves, risk rules or rebalancing, and the rare member whose trade or order rows outgrow the
room sized from its entry decisions (many partial fills under a volume cap).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from runtime.backtest.drive import backtest, batch_signals
from runtime.backtest.metrics import Calendar, CurveFigures, Summary, calendar, compute_metrics, curve_figures
from runtime.broker.result import BacktestResult
from runtime.broker.simulator import Scratch, simulate_members
from runtime.data.candles import Candles
from runtime.graph.drivers import Feeds, SharedValues
from runtime.plan.inputs import portfolio_input, sleeve_input
from runtime.plan.model import PortfolioInput
from runtime.plan.plan import RunPlan

# Members simulated together at most (more gains nothing: the per-call costs are gone long before).
BATCH = 64
# Bytes a batch may take: about 100 bytes per bar per member, measured (decisions, equity, cash and
# exposure, trade and order rows, two batches in flight), so 34 members of 58,419 bars, 2 of a million.
BATCH_BYTES = 200_000_000
BYTES_PER_BAR = 100
# The candle columns: what makes two data sets the same.
_PRICES = ("time", "open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class MemberResult:
    """One member's outcome: its metrics and its equity curve (for overfitting statistics)."""

    summary: Summary  # every metric, as `strat run --backtest` reports them
    time: np.ndarray  # close time of every point of the reported period, UTC ms (int64)
    equity: np.ndarray  # marked equity at each of those points, quote currency (float64)


def sweep(
    plans: Iterable[RunPlan],
    *,
    batch: int | None = None,
    overlap: bool = False,
    data: DataSets | None = None,
) -> Iterator[MemberResult]:
    """Backtest every planned member, in order (see the module docstring for the contract and the paths).

    `batch`: members simulated together (at least 1); memory grows with it, not with the member count.
    None: as many as take about `BATCH_BYTES` over the first member's bars, at most `BATCH`.
    `overlap`: simulate the next batch on a second thread while the metrics of this one are computed and
    yielded (the compiled loop and the curve passes run without the GIL): with a second core free, 1.2 s
    instead of 1.8 s for 1,000 members of 58,419 bars here; when the cores are busy (other processes, a
    pool of sweeps, two vCPUs sharing one core) the threads only compete, up to 40% slower, so it is not
    the default.
    `data`: the data sets (and the indicator values computed over them) of earlier sweeps, so that several
    sweeps over the same candles (an optimizer's tasks) compute each indicator once between them.
    """
    if batch is not None and batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    data = data if data is not None else DataSets()
    members = iter(plans)
    if batch is None:
        first = next(members, None)
        if first is None:
            return
        bars = max(sp.feeds.length(0) for sp in first.sleeves)
        batch = max(1, min(BATCH, BATCH_BYTES // (BYTES_PER_BAR * max(bars, 1))))
        members = itertools.chain([first], members)
    # Two sets of scratch arrays, alternating: one batch's results are read while the next is simulated.
    scratches = itertools.cycle((Scratch(), Scratch()))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sweep") as pool:
        waiting: tuple[_Batch, Future[_Simulated]] | None = None
        while chunk := list(itertools.islice(members, batch)):
            ready = _prepare(chunk, data, next(scratches))
            simulated = pool.submit(_simulate, ready) if overlap else _done(_simulate(ready))
            if waiting is not None:
                yield from _finish(*waiting)
            waiting = (ready, simulated)
        if waiting is not None:
            yield from _finish(*waiting)


def fast(rp: RunPlan) -> bool:
    """Whether a planned member takes the fast path (see the module docstring)."""
    return (
        len(rp.sleeves) == 1 and not rp.risk and not rp.rebalance_ms and not rp.sleeves[0].graph.needs_state
    )


class _Batch(NamedTuple):
    """A batch of members ready to simulate: the plans, and for the fast ones their data set and input."""

    plans: Sequence[RunPlan]  # the members, in order
    sets: dict[int, _DataSet]  # data set of each fast member, by its index in `plans`
    inputs: dict[int, PortfolioInput]  # the broker's input of each fast member, by its index
    scratch: Scratch  # the arrays the batch is simulated in (its results view them)


def _prepare(chunk: Sequence[RunPlan], data: DataSets, scratch: Scratch) -> _Batch:
    """Decide the fast members of a batch over whole arrays (their shared indicators computed once)."""
    quick = [i for i, rp in enumerate(chunk) if fast(rp)]
    # Each fast member's data set; every member announces its nodes before any is computed, so that the
    # nodes members of the batch share are kept from the first one that computes them.
    sets = {i: data.of(chunk[i].sleeves[0].feeds) for i in quick}
    for i in quick:
        sets[i].shared.expect(chunk[i].sleeves[0].graph.node_hashes())
    inputs = {}
    for i in quick:
        sp = chunk[i].sleeves[0]
        signals = batch_signals(sp, sets[i].shared)
        sleeve = sleeve_input(sp, signals.decisions, signals.offsets)
        # The data set's own bar arrays (equal values), so the members' bars are seen as the same at once.
        base = sets[i].candles[0]
        sleeve = dataclasses.replace(sleeve, **{f: getattr(base, f) for f in _PRICES})
        inputs[i] = portfolio_input(chunk[i], [sleeve])
    return _Batch(chunk, sets, inputs, scratch)


# A fast member simulated: its result over the reported period and the figures of its curves; None for
# one the plain path must run (its rows ran out).
_Simulated = dict[int, tuple[BacktestResult, CurveFigures] | None]


def _simulate(ready: _Batch) -> _Simulated:
    """Simulate a batch's fast members (those reading one data set's bars together), by index.

    The passes over every bar of their metrics (`curve_figures`) run here too: on the second thread,
    mostly without the GIL, they take that much off the thread computing the rest of the metrics.
    """
    results: _Simulated = {}
    groups: dict[int, list[int]] = {}
    for i, found in ready.sets.items():
        groups.setdefault(id(found), []).append(i)
    for n, group in enumerate(groups.values()):
        # Each group's results are read after the later groups ran: the first one takes the batch's
        # scratch, the others (members over other data) arrays of their own.
        scratch = ready.scratch if n == 0 else Scratch()
        simulated = simulate_members([ready.inputs[i] for i in group], scratch)
        for i, result in zip(group, simulated, strict=True):
            reported = None if result is None else result.since(ready.plans[i].start)
            results[i] = None if reported is None else (reported, curve_figures(reported))
    return results


def _done(results: _Simulated) -> Future[_Simulated]:
    """A future already holding `results` (the batch simulated on the calling thread)."""
    future: Future[_Simulated] = Future()
    future.set_result(results)
    return future


def _finish(ready: _Batch, simulated: Future[_Simulated]) -> Iterator[MemberResult]:
    """The members' results of a simulated batch, in order, with their metrics."""
    results = simulated.result()
    for i, rp in enumerate(ready.plans):
        bar_ms = min(sp.graph.base.ms for sp in rp.sleeves)
        done = results.get(i)
        if done is None:
            # The plain path: a member the fast path does not take, or one that ran out of rows.
            plain = backtest(rp)
            yield MemberResult(compute_metrics(plain, bar_ms), plain.time, plain.equity)
            continue
        result, curve = done
        dates = ready.sets[i].calendar(result.time, bar_ms)
        summary = compute_metrics(result, bar_ms, dates=dates, curve=curve)
        # A copy: the batch's arrays are released with the batch, whatever the caller keeps.
        yield MemberResult(summary, result.time, result.equity.copy())


class _DataSet:
    """One set of candles members read, with what is shared over it: indicator values, calendars."""

    def __init__(self, candles: list[Candles]) -> None:
        """A data set of these candles (one per clock of the members' graphs)."""
        self.candles = candles  # the candles, per clock index
        # every list of candle objects recognised as this set, kept alive: their ids are keys of `DataSets`
        self.held: list[Sequence[Candles]] = []
        self.shared = SharedValues()  # indicator values computed over them
        # the calendars of the members' time lines (the base bars' closes from a start), by (length, first
        # close time, bar length): within one data set these fix the line
        self._calendars: dict[tuple[int, int, int], Calendar] = {}

    def calendar(self, time: np.ndarray, bar_ms: int) -> Calendar:
        """The calendar of a member's time line (found once per line of this data set)."""
        key = (len(time), int(time[0]), bar_ms)
        found = self._calendars.get(key)
        if found is None:
            found = self._calendars[key] = calendar(time, bar_ms)
        return found


class DataSets:
    """The distinct data sets sweeps' members read, recognised by the identity or the values of candles.

    Each holds the indicator values shared over it (`SharedValues`, bounded by its budget): give one
    `DataSets` to several `sweep` calls over the same candles and they share their indicators too.
    """

    def __init__(self) -> None:
        """No data set yet."""
        self.sets: list[_DataSet] = []  # every data set seen, in order of first use
        self.by_ids: dict[tuple[int, ...], _DataSet] = {}  # ids of a member's candle objects -> its set

    def of(self, feeds: Feeds) -> _DataSet:
        """The data set of a member's feeds: a known one when its candles are the same objects or equal."""
        ids = tuple(id(c) for c in feeds.candles)
        found = self.by_ids.get(ids)
        if found is None:
            found = next((s for s in self.sets if _equal(s.candles, feeds.candles)), None)
            if found is None:
                found = _DataSet(list(feeds.candles))
                self.sets.append(found)
            # The candle objects are kept alive with the key, so their ids are not reused meanwhile.
            found.held.append(feeds.candles)
            self.by_ids[ids] = found
        return found


def _equal(ours: Sequence[Candles], theirs: Sequence[Candles]) -> bool:
    """Whether two lists of candles hold the same markets, timeframes and values."""
    return len(ours) == len(theirs) and all(
        a is b
        or (
            (a.symbol, a.timeframe, a.synthetic) == (b.symbol, b.timeframe, b.synthetic)
            and all(_same_values(getattr(a, f), getattr(b, f)) for f in _PRICES)
        )
        for a, b in zip(ours, theirs, strict=True)
    )


def _same_values(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two arrays hold equal values (at once when they view the same memory: slices of one series)."""
    same_memory = (
        a.__array_interface__["data"] == b.__array_interface__["data"]
        and a.shape == b.shape
        and a.strides == b.strides
        and a.dtype == b.dtype
    )
    return same_memory or np.array_equal(a, b)
