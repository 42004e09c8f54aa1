"""Where the members' backtests run: in this process, in a local process pool, or on a Dask cluster.

Every executor runs `Task`s (a batch of members over one range) against one `Job` (the checked program,
the target, the candles) and yields each task's outcomes in the order the tasks were given, whatever
order they finish in, so results never depend on where they ran. The job travels once per worker: a pool
process receives it in its initializer, a Dask worker through one broadcast `scatter`; a task carries only
its members' params. A member's backtest is `runtime.backtest.sweep.sweep` of the plan `strat run
--backtest --set ...` would make: the template run alone with the member's params as its overrides.

dask is imported here and nowhere else (an import-linter contract).
"""

from __future__ import annotations

import concurrent.futures as cf
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np
from numba import njit

from dsl.ir import PortfolioIR, Program
from runtime.backtest.sweep import DataSets, MemberResult, sweep
from runtime.data.candles import Candles
from runtime.data.markets import MarketRules
from runtime.graph.compiler import compile_strategy
from runtime.optimize.members import Params
from runtime.plan.plan import RUN_ERRORS, CandleLoader, RunPlan, plan, replan
from runtime.plan.select import RunError

# The scalar metrics of a member, in results.csv's order: the Summary fields every row carries.
METRICS = (
    "final_equity", "total_return", "cagr", "max_drawdown", "max_drawdown_duration_bars", "volatility",
    "sharpe", "sortino", "calmar", "exposure", "avg_exposure", "turnover", "bars", "entries",
    "closed_trades", "pnl", "win_rate", "profit_factor", "expectancy", "avg_hold_bars", "median_hold_bars",
    "fees",
)  # fmt: skip
# Per-block sums kept of each member's per-bar returns: count, Σr, Σr², Σr³, Σr⁴ (see overfit).
MOMENTS = 5
# Tasks in flight per worker: enough to keep each busy, few enough to bound memory by the batch size.
IN_FLIGHT = 2


@dataclass
class CandleCache:
    """A candle loader that reads each series once and answers narrower requests by slicing it.

    A request is answered from a series already read over a range that contains it (the same rows a
    fresh read gives: the loader cleans and resamples before it cuts the range); with `exact` (gap
    filling, whose result depends on the range's ends) only the same request is. A request no series
    covers goes to `load` (in a worker too: the loader travels with the job, for the rare member that
    needs more history than the widest one read first); without one it is a RunError.
    """

    load: CandleLoader | None  # the source's loader (None: answer from what was read only)
    exact: bool = False  # answer only identical requests (--fill-gaps)
    # what was read: (symbol, timeframe) → [(first asked, last asked, candles)], UTC ms (None: open)
    read: dict[tuple[str, str], list[tuple[int | None, int | None, Candles]]] = field(default_factory=dict)

    def __call__(self, symbol: str, timeframe: str, first: int | None, last: int | None) -> Candles:
        """The candles of `symbol` `timeframe` opening in [first, last) (the CandleLoader contract)."""
        entries = self.read.setdefault((symbol, timeframe), [])
        for have_first, have_last, candles in entries:
            if (have_first, have_last) == (first, last):
                return candles
            if not self.exact and _covers(have_first, have_last, first, last):
                return candles.slice(first, last)
        if self.load is None:
            raise RunError(f"{symbol} {timeframe} candles from {first} to {last} were not sent to the worker")
        candles = self.load(symbol, timeframe, first, last)
        entries.append((first, last, candles))
        return candles

    def shipped(self) -> CandleCache:
        """A copy of this cache: what a job sends to other processes."""
        return CandleCache(self.load, self.exact, {k: list(v) for k, v in self.read.items()})


def _covers(have_first: int | None, have_last: int | None, first: int | None, last: int | None) -> bool:
    """Whether a series read over [have_first, have_last) holds every bar of [first, last)."""
    starts = have_first is None or (first is not None and have_first <= first)
    ends = have_last is not None and last is not None and last <= have_last
    return starts and ends


@dataclass(frozen=True)
class Job:
    """What every member of one optimisation shares: the program, the target run alone, the candles."""

    program: Program  # the checked spec
    template: PortfolioIR  # the target strategy alone (its sleeve's overrides are a member's params)
    cache: CandleCache  # candles read so far (primed with the widest member's)
    rules: Mapping[str, MarketRules | None]  # the exchange's trading rules by symbol (None: unknown)
    # plans made afresh, by range, clocks and warm-up: members sharing them are replanned from these
    bases: dict[tuple[Any, ...], RunPlan] = field(default_factory=dict, compare=False, repr=False)
    # the data sets of the members swept so far in this process, with their shared indicator values:
    # every task's sweep computes an indicator the earlier tasks computed over the same candles once
    data: DataSets = field(default_factory=DataSets, compare=False, repr=False)

    def plan(self, params: Params, start: int | None, end: int | None) -> RunPlan:
        """The plan of one member over [start, end): `strat run --backtest --set` of its params.

        The first member of each warm-up (and set of clocks) is planned by `plan`; the others reuse its
        candles through `replan`, which gives the same plan without loading and checking them again.
        """
        template = self.template.sleeves[0]
        sleeve = template.model_copy(update={"overrides": params})
        portfolio = self.template.model_copy(update={"sleeves": (sleeve,)})
        strategy = self.program.strategy(template.strategy)
        graph = compile_strategy(strategy, dict(params), symbol=sleeve.symbol, timeframe=sleeve.timeframe)
        key = (start, end, graph.warmup, tuple(graph.clocks))
        base = self.bases.get(key)
        if base is not None:
            try:
                return replan(base, portfolio, [graph])
            except ValueError:
                pass  # a sleeve that trades no bar: its own plan says why
        found = plan(self.program, portfolio, self.cache, start, end, self.rules.get)
        self.bases.setdefault(key, found)
        return found

    def shipped(self) -> Job:
        """This job as sent to other processes (its plans left behind: each worker makes its own)."""
        return Job(self.program, self.template, self.cache.shipped(), self.rules)


class Task(NamedTuple):
    """A batch of members to backtest over one range."""

    start: int | None  # start of the reported period, UTC ms (None: from the first bar read)
    end: int | None  # end of the range, UTC ms (None: the source's default)
    members: tuple[Params, ...]  # the members, in order
    edges: tuple[int, ...] = ()  # bounds of the time blocks whose return moments are kept (see overfit)


@dataclass(frozen=True)
class Outcome:
    """One member's result: its scalar metrics (METRICS order) and its per-block return moments."""

    params: Params  # the member
    metrics: tuple[float | None, ...]  # values of METRICS; all None when the member could not run
    moments: np.ndarray | None = None  # (blocks, MOMENTS) sums of per-bar returns; None when not asked
    error: str = ""  # why the member could not run ('' when it ran)

    def metric(self, name: str) -> float | None:
        """One metric's value by its METRICS name."""
        return self.metrics[METRICS.index(name)]


def outcome(params: Params, result: MemberResult, edges: tuple[int, ...]) -> Outcome:
    """The outcome of a member's backtest (moments over `edges`' blocks when given)."""
    summary = result.summary
    metrics = tuple(_number(getattr(summary, name)) for name in METRICS)
    moments = block_moments(result.time, result.equity, summary.capital, edges) if edges else None
    return Outcome(params, metrics, moments)


def _number(value: object) -> float | None:
    """A metric as a float (None stays None)."""
    return None if value is None else float(value)  # type: ignore[arg-type]


def block_moments(time: np.ndarray, equity: np.ndarray, capital: float, edges: tuple[int, ...]) -> np.ndarray:
    """Per block of [edges[i], edges[i+1]), the count and power sums Σr..Σr⁴ of per-bar returns.

    A bar's return is its equity over the previous bar's (the capital before the first), minus 1; it
    belongs to the block holding its close time (`time`, sorted, UTC ms).
    """
    return _block_sums(
        np.asarray(time, dtype=np.int64),
        np.asarray(equity, dtype=np.float64),
        float(capital),
        np.asarray(edges, dtype=np.int64),
    )


@njit(cache=True)
def _block_sums(time: np.ndarray, equity: np.ndarray, capital: float, edges: np.ndarray) -> np.ndarray:
    """`block_moments` in one pass over the bars (each block's sums kept in locals until it ends)."""
    blocks = len(edges) - 1
    out = np.zeros((blocks, MOMENTS))
    previous = capital
    i = 0
    # Bars closing before the first block are skipped (their returns chain the next one's only).
    while i < len(time) and time[i] < edges[0]:
        previous = equity[i]
        i += 1
    for block in range(blocks):
        n = s1 = s2 = s3 = s4 = 0.0
        while i < len(time) and time[i] < edges[block + 1]:
            r = equity[i] / previous - 1.0
            previous = equity[i]
            r2 = r * r
            n += 1.0
            s1 += r
            s2 += r2
            s3 += r2 * r
            s4 += r2 * r2
            i += 1
        out[block, 0] = n
        out[block, 1] = s1
        out[block, 2] = s2
        out[block, 3] = s3
        out[block, 4] = s4
    return out


def run_task(job: Job, task: Task) -> list[Outcome]:
    """Backtest a task's members (a member that cannot be planned is an outcome with its error)."""
    planned: list[tuple[Params, RunPlan]] = []
    failed: dict[int, Outcome] = {}
    for i, params in enumerate(task.members):
        try:
            planned.append((params, job.plan(params, task.start, task.end)))
        except RUN_ERRORS as error:
            failed[i] = Outcome(params, (None,) * len(METRICS), None, str(error) or type(error).__name__)
    results = iter(sweep((rp for _, rp in planned), data=job.data))
    ran = iter([outcome(params, next(results), task.edges) for params, _ in planned])
    return [failed[i] if i in failed else next(ran) for i in range(len(task.members))]


class Executor(Protocol):
    """Runs tasks against one job, yielding each task's outcomes in the order the tasks were given."""

    workers: int  # tasks it runs at once

    def map(self, tasks: Iterable[Task]) -> Iterator[list[Outcome]]:
        """The outcomes of each task, in task order."""
        ...

    def close(self) -> None:
        """Release the workers (pending tasks are cancelled)."""
        ...


class LocalExecutor:
    """Runs every task in this process."""

    def __init__(self, job: Job) -> None:
        """Run against `job`."""
        self.job = job  # the shared part of every task
        self.workers = 1  # tasks run at once

    def map(self, tasks: Iterable[Task]) -> Iterator[list[Outcome]]:
        """The outcomes of each task, in task order."""
        for task in tasks:
            yield run_task(self.job, task)

    def close(self) -> None:
        """Nothing to release."""


# The job of this pool worker process (set once by `_install`).
_WORKER_JOB: list[Job] = []


def _install(job: Job) -> None:
    """Pool initializer: keep the job for every task this process runs."""
    _WORKER_JOB[:] = [job]


def _pool_task(task: Task) -> list[Outcome]:
    """A task in a pool worker, against the job installed there."""
    return run_task(_WORKER_JOB[0], task)


def _ordered(submit: Callable[[Task], Any], tasks: Iterable[Task], width: int) -> Iterator[list[Outcome]]:
    """Submit tasks keeping at most `width` in flight, yielding their results in submission order."""
    pending: deque[Any] = deque()
    for task in tasks:
        pending.append(submit(task))
        if len(pending) >= width:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


class PoolExecutor:
    """Runs tasks in a local pool of processes, each holding the job once."""

    def __init__(self, job: Job, workers: int) -> None:
        """Start `workers` processes, each receiving `job` once."""
        self.workers = workers  # processes in the pool
        self.pool = cf.ProcessPoolExecutor(workers, initializer=_install, initargs=(job.shipped(),))  # pool

    def map(self, tasks: Iterable[Task]) -> Iterator[list[Outcome]]:
        """The outcomes of each task, in task order."""
        yield from _ordered(lambda t: self.pool.submit(_pool_task, t), tasks, self.workers * IN_FLIGHT)

    def close(self) -> None:
        """Stop the processes, cancelling what has not started."""
        self.pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor:
    """Runs tasks on a Dask distributed cluster; the job is broadcast to every worker once."""

    def __init__(self, job: Job, address: str) -> None:
        """Connect to the scheduler at `address` (tcp://HOST:8786) and send it the job."""
        try:
            from distributed import Client
        except ImportError:
            raise RunError("--cluster needs Dask: pip install 'strat[cluster]'") from None
        self.client = Client(address)  # connection to the scheduler
        self.workers = max(1, len(self.client.scheduler_info().get("workers", {})))  # tasks run at once
        self.width = self.workers * IN_FLIGHT  # tasks in flight
        # One copy of the job (and its candles) per worker, referred to by every task.
        self.job = self.client.scatter(job.shipped(), broadcast=True, hash=False)  # the job's future

    def map(self, tasks: Iterable[Task]) -> Iterator[list[Outcome]]:
        """The outcomes of each task, in task order."""
        yield from _ordered(
            lambda t: self.client.submit(run_task, self.job, t, pure=False), tasks, self.width
        )

    def close(self) -> None:
        """Disconnect from the scheduler (the cluster keeps running)."""
        self.client.close()


def make_executor(job: Job, jobs: int = 1, cluster: str | None = None) -> Executor:
    """The executor for `--jobs N` / `--cluster tcp://HOST:8786` (this process when neither asks more)."""
    if cluster:
        return DaskExecutor(job, cluster)
    if jobs > 1:
        return PoolExecutor(job, jobs)
    return LocalExecutor(job)
