"""One optimisation from start to end: search the whole range, walk forward, judge overfitting.

The spec is checked once by the caller; each member is the checked target run alone with the member's
params as its sleeve's overrides (what `strat run --backtest --set ...` plans). The widest member (the
longest warm-up) is planned first, which reads every candle series once into a `CandleCache`; every
other member's candles are slices of those. Members run through an `Executor` in batches, in member
order; a `sink` sees each outcome as it comes (the command appends it to results.csv), and outcomes of
an earlier, interrupted run (`done`) are taken instead of run again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from dsl.ir import OptimizeIR, Program, StrategyIR, alone
from runtime.backtest.sweep import MemberResult, sweep
from runtime.optimize.executor import CandleCache, Executor, Job, Outcome, Task, make_executor, outcome
from runtime.optimize.members import Params, Space
from runtime.optimize.overfit import block_edges, deflated_sharpe, expected_max_sharpe, pbo, stats
from runtime.optimize.search import (
    BAYES_ROUND,
    Method,
    Objective,
    best,
    done_filter,
    members,
    read_block,
    requirement,
    search,
)
from runtime.optimize.walkforward import (
    Curve,
    CurveStats,
    Fold,
    Stability,
    curve_stats,
    folds,
    stability,
    stitch,
)
from runtime.plan.plan import RUN_ERRORS, CandleLoader, RulesLookup
from runtime.plan.select import RunError

# Called with (fold, member index, outcome, whether it ran now) for every member of every search.
Sink = Callable[[int, int, Outcome, bool], None]
# The most members per task (a task is the unit a worker receives).
MAX_BATCH = 128


@dataclass(frozen=True)
class Settings:
    """How to run an optimisation: its range, capital and workers."""

    start: int | None  # start of the reported period, UTC ms (None: from the first bar read)
    end: int | None  # end of the range, UTC ms (None: the source's default)
    capital: float  # starting capital of every member, quote currency
    jobs: int = 1  # local worker processes
    cluster: str | None = None  # Dask scheduler address (tcp://HOST:8786), or None
    exact: bool = False  # candle requests answered only by identical reads (--fill-gaps)


@dataclass(frozen=True)
class FoldResult:
    """One walk-forward fold: the member that won its train window and how it did on the test window."""

    fold: Fold  # the windows
    train: Outcome | None  # the winner's in-sample outcome (None: no member could run)
    test: Outcome | None  # its out-of-sample outcome


@dataclass(frozen=True)
class WalkForward:
    """A walk-forward analysis: every fold, the stitched out-of-sample curve, the params' stability."""

    scheme: str  # "rolling" or "anchored"
    train_ms: int  # train window length, ms
    test_ms: int  # test window length, ms
    folds: tuple[FoldResult, ...]  # in time order
    oos: Curve  # stitched out-of-sample equity
    hold: Curve  # buying and holding the target's market over the same bars, from the same capital
    oos_stats: CurveStats  # metrics of the stitched curve
    stability: tuple[Stability, ...]  # per searched param


@dataclass(frozen=True)
class Overfit:
    """The overfitting statistics of the best member among all members of the whole-range search."""

    trials: int  # members that ran
    dsr: float | None  # deflated Sharpe ratio (a probability)
    sharpe: float  # the best member's per-bar Sharpe ratio
    expected_max: float  # the per-bar Sharpe ratio the best of `trials` skill-less members reaches
    pbo: float | None  # probability of backtest overfitting (None: fewer than two members)
    logits: tuple[float, ...] = ()  # λ of every cross-validation split


@dataclass(frozen=True)
class Optimization:
    """Everything an optimisation found."""

    block: OptimizeIR  # the optimize block run
    strategy: StrategyIR  # its target
    space: Space  # the searched params
    method: Method  # how members were chosen
    objective: Objective  # what ranks them
    outcomes: tuple[Outcome, ...]  # every member of the whole-range search, in member order
    passed: tuple[bool, ...]  # whether each member meets the requirement
    best: Outcome | None  # the best member meeting the requirement (None: no member does)
    best_run: MemberResult | None  # its backtest over the whole range (its equity for the store)
    overfit: Overfit | None  # None when no member ran
    walk: WalkForward | None  # None without walk_forward


class Optimizer:
    """Runs one optimize block of a checked program (see the module docstring)."""

    def __init__(
        self,
        program: Program,
        block: OptimizeIR,
        settings: Settings,
        load: CandleLoader,
        rules: RulesLookup,
    ) -> None:
        """Prepare the search of `block` with candles from `load` and trading rules from `rules`."""
        self.block = block  # the optimize block
        self.settings = settings  # range, capital, workers
        self.strategy = program.strategy(block.target)  # the target template
        self.space = Space.of(self.strategy)  # its searched params
        self.method, self.objective = read_block(block)  # how members are chosen and ranked
        self.passes = requirement(block.require)  # pass/fail of `require`
        self.listed = members(self.space, self.method)  # the members (None: proposed as it goes)
        template = alone(self.strategy, settings.capital)
        rules_by_symbol = {template.sleeves[0].symbol: rules(template.sleeves[0].symbol)}
        self.job = Job(program, template, CandleCache(load, settings.exact), rules_by_symbol)  # shared part
        # The widest member read first: its candles cover every other member's.
        self.prime = self.job.plan(self._widest(), settings.start, settings.end)  # its plan
        base = self.prime.sleeves[0]
        self.base = base.feeds.candles[0]  # the target's base candles over the whole range
        self.bar_ms = base.graph.base.ms  # its bar length, ms
        closes = np.asarray(self.base.time[base.first_decision :], dtype=np.int64) + self.bar_ms
        if len(closes) == 0:
            raise RunError("no bar of the range can be traded")
        self.closes = closes  # close times of the bars members may trade on, UTC ms
        self.edges = block_edges(closes)  # the time blocks of the overfitting statistics

    def _widest(self) -> Params:
        """The member whose candles are read first: every param at its domain's top (the longest windows).

        A member that needs more history (a param that shortens a window as it grows) reads it itself.
        """
        return tuple((d.name, d.high) for d in self.space.domains)

    def total(self) -> int | None:
        """Members per search (None: Bayesian search, known as it goes)."""
        return len(self.listed) if self.listed is not None else self.method.count

    def folds(self) -> list[Fold]:
        """The walk-forward folds ([] without walk_forward)."""
        wf = self.block.walk_forward
        if wf is None:
            return []
        train, test = (int(a.value) for a in wf.args)  # type: ignore[arg-type]
        start = self.settings.start if self.settings.start is not None else int(self.closes[0]) - self.bar_ms
        end = self.settings.end if self.settings.end is not None else int(self.closes[-1])
        return folds(start, end, train, test, wf.value == "anchored")

    def run(self, sink: Sink, done: Mapping[int, Mapping[Params, Outcome]] | None = None) -> Optimization:
        """Search the whole range, then each walk-forward fold; `done`: outcomes by fold to reuse."""
        done = done or {}
        executor = make_executor(self.job, self.settings.jobs, self.settings.cluster)
        try:
            outcomes = self._search(
                executor, 0, self.settings.start, self.settings.end, self.edges, sink, done
            )
            walk = self._walk(executor, sink, done)
        finally:
            executor.close()
        passed = tuple(self.passes(o) for o in outcomes)
        winner = best(outcomes, self.objective, self.passes)
        best_run = None
        if winner is not None:
            best_run = next(
                iter(sweep([self.job.plan(winner.params, self.settings.start, self.settings.end)]))
            )
        return Optimization(
            self.block, self.strategy, self.space, self.method, self.objective, tuple(outcomes), passed,
            winner, best_run, self._overfit(outcomes, winner), walk,
        )  # fmt: skip

    def _search(
        self,
        executor: Executor,
        fold: int,
        start: int | None,
        end: int | None,
        edges: tuple[int, ...],
        sink: Sink,
        done: Mapping[int, Mapping[Params, Outcome]],
    ) -> list[Outcome]:
        """Every member's outcome over [start, end), each handed to `sink` as it comes."""
        finished = done.get(fold, {})
        # Each worker gets a few batches of a listed search, a share of each round of a Bayesian one.
        total, shares = (len(self.listed), 4) if self.listed is not None else (BAYES_ROUND, 1)
        size = max(1, min(MAX_BATCH, math.ceil(total / (executor.workers * shares))))

        def run(batches: Iterable[list[Params]]) -> Iterator[list[Outcome]]:
            """Backtest batches of members through the executor."""
            return executor.map(Task(start, end, tuple(b), edges) for b in batches)

        found = []
        for i, item in enumerate(
            search(self.space, self.method, self.objective, done_filter(finished, run), size)
        ):
            sink(fold, i, item, item.params not in finished)
            found.append(item)
        return found

    def _walk(
        self, executor: Executor, sink: Sink, done: Mapping[int, Mapping[Params, Outcome]]
    ) -> WalkForward | None:
        """The walk-forward analysis (None without walk_forward)."""
        chosen = self.folds()
        if not chosen:
            return None
        results = []
        curves = []
        for k, fold in enumerate(chosen, 1):
            outcomes = self._search(executor, k, fold.train_start, fold.train_end, (), sink, done)
            winner = best(outcomes, self.objective, self.passes) or best(outcomes, self.objective, _ran)
            test = None
            if winner is not None:
                # The test window's run is needed whole (its equity is stitched), so it runs here.
                try:
                    rp = self.job.plan(winner.params, fold.train_end, fold.test_end)
                except RUN_ERRORS as error:
                    test = Outcome(winner.params, (None,) * len(winner.metrics), None, str(error))
                else:
                    result = next(iter(sweep([rp])))
                    test = outcome(winner.params, result, ())
                    curves.append(Curve(result.time, result.equity))
            results.append(FoldResult(fold, winner, test))
        capital = self.settings.capital
        oos = stitch(curves, capital)
        wf = self.block.walk_forward
        assert wf is not None  # folds exist only with walk_forward
        train, test_ms = (int(a.value) for a in wf.args)  # type: ignore[arg-type]
        picks = [r.train.params for r in results if r.train is not None]
        return WalkForward(
            str(wf.value), train, test_ms, tuple(results), oos, self._hold(oos, capital),
            curve_stats(oos, capital, self.bar_ms),
            tuple(
                stability(d.name, [dict(p)[d.name] for p in picks], d.low, d.high) for d in self.space.domains
            ),
        )  # fmt: skip

    def _hold(self, curve: Curve, capital: float) -> Curve:
        """Buying the target's market with `capital` at the open of the curve's first bar, held throughout."""
        if len(curve.time) == 0:
            return curve
        closes = np.asarray(self.base.time, dtype=np.int64) + self.bar_ms
        at = np.clip(np.searchsorted(closes, curve.time), 0, len(closes) - 1)
        first = float(self.base.open[at[0]])
        return Curve(curve.time, capital * np.asarray(self.base.close, dtype=np.float64)[at] / first)

    def _overfit(self, outcomes: list[Outcome], winner: Outcome | None) -> Overfit | None:
        """The deflated Sharpe ratio of the winner and the PBO of the whole-range members."""
        ran = [o for o in outcomes if o.moments is not None and not o.error]
        if not ran:
            return None
        # The winner's, or (none meeting the requirement) the best member's by the objective alone.
        pick = winner or best(ran, self.objective, _ran) or ran[0]
        sharpes = np.array([stats(o.moments).sharpe for o in ran])  # type: ignore[arg-type]
        best_stats = stats(pick.moments if pick.moments is not None else ran[0].moments)  # type: ignore[arg-type]
        variance = float(np.var(sharpes, ddof=1)) if len(sharpes) > 1 else 0.0
        found = pbo(np.stack([o.moments for o in ran]))  # type: ignore[misc]
        return Overfit(
            len(ran),
            deflated_sharpe(best_stats, sharpes),
            best_stats.sharpe,
            expected_max_sharpe(variance, len(ran)),
            None if found is None else found[0],
            () if found is None else tuple(float(x) for x in found[1]),
        )


def _ran(outcome: Outcome) -> bool:
    """Whether a member ran (a requirement every member that ran meets)."""
    return not outcome.error


def find_block(program: Program, name: str | None) -> OptimizeIR:
    """The optimize block named `name`, or the only one (RunError otherwise)."""
    blocks = program.optimizes
    if name is None:
        if len(blocks) == 1:
            return blocks[0]
        if not blocks:
            raise RunError(f"{program.file} has no optimize block")
        raise RunError(f"{program.file} has optimize blocks {', '.join(b.name for b in blocks)}: name one")
    for block in blocks:
        if block.name == name:
            return block
    raise RunError(f"no optimize block '{name}'; known: {', '.join(b.name for b in blocks) or 'none'}")
