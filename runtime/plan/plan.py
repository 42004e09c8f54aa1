"""A run's plan: every sleeve compiled, with the candles of every clock its graph reads.

Candles come through an injected loader and trading rules through an injected lookup, so the plan knows
no data source, store or command line.

A run's range is where every feed it reads has data. It ends where the first feed ends (each feed keeps
only the bars that close by then), so no position is ever marked at a price a feed stopped updating long
before; a feed that ends before the others is first asked again for the range they reach, which lets a
loader read a finer file that covers it. Inside the range a feed may have gaps: an exchange outage leaves
hours, at most a day and a half, without candles (33 1h bars in Binance's BTC/USDT, 2018), which the
data report counts; a feed without a candle for longer than `stale_ms` (three days, or three bars of a
longer timeframe) is stale there, and the run is refused with the gap named (`--fill-gaps` carries the
last price over it instead). A run that could trade no bar at all (too few bars for the warm-up, an
empty range) is refused with the reason; a lookback longer than the data is refused before anything is
allocated for it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dsl.ir import PortfolioIR, Program, RiskRuleIR, SleeveIR, StrategyIR
from dsl.units import format_duration, parse_symbol
from runtime.data.candles import Candles, DataError
from runtime.data.markets import MarketRules
from runtime.data.times import format_time
from runtime.graph.compiler import Clock, CompileError, Graph, compile_strategy
from runtime.graph.drivers import Feeds
from runtime.ops.registry import OPERATORS
from runtime.plan.select import RunError

# Loads candles for a clock: (symbol "EXCHANGE:BASE/QUOTE", timeframe, start ms, end ms) → candles.
CandleLoader = Callable[[str, str, int | None, int | None], Any]
# Finds the trading rules of a symbol ("EXCHANGE:BASE/QUOTE"), None when unknown.
RulesLookup = Callable[[str], "MarketRules | None"]

# Errors a command reports as one plain line: the spec cannot be run as asked, or its data cannot be had.
RUN_ERRORS: tuple[type[Exception], ...] = (
    RunError, CompileError, DataError, FileNotFoundError, ValueError, ConnectionError,
)  # fmt: skip


# A feed without a candle for longer than this inside a run's range is stale (see the module docstring).
STALE_MS = 3 * 86_400_000
# ... or for longer than this many of its bars, when that is longer (timeframes above a day).
STALE_BARS = 3


def stale_ms(timeframe_ms: int) -> int:
    """The longest time a feed of bars `timeframe_ms` long may go without a candle inside a run, ms."""
    return max(STALE_MS, STALE_BARS * timeframe_ms)


@dataclass(frozen=True)
class SleevePlan:
    """One sleeve ready to run: its template, param values, compiled graph and candles per clock."""

    sleeve: SleeveIR  # name, template, symbol, timeframe, weight, overrides
    strategy: StrategyIR  # the template
    values: Mapping[str, float]  # param values after overrides
    graph: Graph  # compiled graph
    feeds: Feeds  # candles of every clock of the graph
    rules: MarketRules | None = None  # the exchange's trading rules for the symbol, when known
    # First base bar that may decide: the graph's warm-up, or the first bar opening at or after the run's
    # start (--from) when that comes later (the bars before it are read for the indicators only).
    first_decision: int = 0


@dataclass(frozen=True)
class RunPlan:
    """A whole run: sleeves, capital and risk rules."""

    name: str  # portfolio or strategy name
    capital: float  # starting cash, quote currency
    quote: str  # quote currency
    rebalance_ms: int | None  # rebalancing period, ms; None = never
    risk: tuple[RiskRuleIR, ...]  # risk rules
    sleeves: tuple[SleevePlan, ...]  # sleeves in spec order
    notes: tuple[str, ...] = ()  # what the plan decided about the range that the user should read
    # Start of the reported period (--from), UTC ms: the result holds the points closing after it; None
    # reports every point from the first bar read.
    start: int | None = None

    @property
    def synthetic(self) -> bool:
        """Whether any candles are synthetic."""
        return any(bool(getattr(c, "synthetic", False)) for s in self.sleeves for c in s.feeds.candles)


def plan(
    program: Program,
    portfolio: PortfolioIR,
    load: CandleLoader,
    start: int | None,
    end: int | None,
    rules: RulesLookup | None = None,
    live: bool = False,
) -> RunPlan:
    """Compile every sleeve and load the candles of every clock it reads (with warm-up history).

    `live`: the candles are only the history a live session warms up on (its bars arrive later), so a
    history shorter than the warm-up or than a window is no error.

    The range is cut to where every feed has data (see the module docstring). `rules` finds the
    exchange's trading rules of a symbol (quantity step, minimums); sleeves whose symbol has none trade
    fractional units freely. Raises RunError when nothing could be traded or a feed is stale.
    """
    if start is not None and end is not None and start >= end:
        raise RunError(f"--from {format_time(start)} is not before --to {format_time(end)}: no bar to trade")
    loaded = []
    for sleeve in portfolio.sleeves:
        template = program.strategy(sleeve.strategy)
        values = {p.name: p.default for p in template.params} | dict(sleeve.overrides)
        graph = compile_strategy(
            template, dict(sleeve.overrides), symbol=sleeve.symbol, timeframe=sleeve.timeframe
        )
        # Load history before the start so that the first decision can come at the start itself.
        first = None if start is None else start - graph.warmup * graph.base.ms
        candles = {clock: load(clock.symbol, clock.timeframe, first, end) for clock in graph.clocks}
        for clock, series in candles.items():
            if len(series) == 0:
                raise RunError(
                    f"no {_pair(clock.symbol)} {clock.timeframe} candle in the requested range: "
                    "no bar was traded"
                )
        loaded.append((sleeve, template, values, graph, candles))
    notes: list[str] = []
    loaded = _reach_further(loaded, load, start, end, notes)
    # The range ends where the first feed ends: each feed keeps the bars that close by then.
    ends = {
        (i, clock): _end(c, clock) for i, (_, _, _, _, cs) in enumerate(loaded) for clock, c in cs.items()
    }
    stop = min([*ends.values(), *([end] if end is not None else [])])
    notes += _end_notes(ends, stop, end)
    begin = None
    if start is None and len(loaded) > 1:
        # Without --from a portfolio starts where every sleeve has data; each sleeve keeps just its warm-up
        # history before that, so no sleeve trades alone for years and dilutes the portfolio's figures.
        begin = max(_begin(g, c) for _, _, _, g, c in loaded)
    loaded = [
        (
            sl,
            t,
            v,
            g,
            {
                k: c.slice(None if begin is None else begin - g.warmup * g.base.ms, stop - k.ms + 1)
                for k, c in candles.items()
            },
        )
        for sl, t, v, g, candles in loaded
    ]
    if not live:
        notes += _traded(loaded)
    for _, _, _, g, candles in loaded:
        if not live:
            # Live, the bars still to come fill a window the history does not (the first decision waits).
            check_lookback(g, candles)
        for clock, series in candles.items():
            _check_fresh(clock, series)
    sleeves = [
        SleevePlan(
            sl,
            t,
            v,
            g,
            Feeds(g, c),
            rules(sl.symbol) if rules is not None else None,
            _first_decision(g, c[g.base].time, start),
        )
        for sl, t, v, g, c in loaded
    ]
    quote = portfolio.quote or _quote(portfolio.sleeves[0].symbol)
    return RunPlan(
        portfolio.name,
        portfolio.capital,
        quote,
        portfolio.rebalance_ms,
        portfolio.risk,
        tuple(sleeves),
        tuple(notes),
        start,
    )


def replan(base: RunPlan, portfolio: PortfolioIR, graphs: Sequence[Graph]) -> RunPlan:
    """The plan `plan` gives for `portfolio` over `base`'s range, from `base` (an optimizer's shortcut).

    `portfolio` differs from the one `base` planned only in its sleeves' param overrides, and `graphs`
    are its sleeves' compiled graphs, each reading the same clocks with the same warm-up as `base`'s:
    then every candle `plan` would load, cut and check is `base`'s, and so are the range, the notes and
    the first decisions; only each sleeve's graph, its param values and the lookback check are new.
    Raises ValueError when a graph reads other clocks or needs another warm-up, or when a sleeve cannot
    trade (its note names the graph's windows): plan that one afresh.
    """
    sleeves = []
    for old, sleeve, graph in zip(base.sleeves, portfolio.sleeves, graphs, strict=True):
        if graph.clocks != old.graph.clocks or graph.warmup != old.graph.warmup:
            raise ValueError("the graph reads other clocks or needs another warm-up than the base plan's")
        candles = dict(zip(old.graph.clocks, old.feeds.candles, strict=True))
        if len(candles[graph.base]) <= graph.warmup:
            raise ValueError("the sleeve trades no bar: its plan's note depends on its graph")
        check_lookback(graph, candles)
        values = {p.name: p.default for p in old.strategy.params} | dict(sleeve.overrides)
        # The feeds depend on the clocks and candles only: shared with the base plan.
        sleeves.append(dataclasses.replace(old, sleeve=sleeve, values=values, graph=graph))
    return dataclasses.replace(base, sleeves=tuple(sleeves))


def _first_decision(graph: Graph, times: Any, start: int | None) -> int:
    """The first base bar (open `times`, UTC ms) that may decide: warm, and opening at or after `start`.

    A decision at the close of a bar before the start would fill inside the warm-up, which is not traded.
    """
    if start is None:
        return graph.warmup
    return max(graph.warmup, int(np.searchsorted(times, start)))


# One sleeve while planned: its spec, template, param values, graph and candles per clock.
_Loaded = tuple[SleeveIR, StrategyIR, dict[str, float], Graph, dict[Clock, Candles]]


def _end(candles: Candles, clock: Clock) -> int:
    """When the last bar of a feed closes, UTC ms."""
    return int(candles.time[-1]) + clock.ms


def _begin(graph: Graph, candles: Mapping[Clock, Candles]) -> int:
    """The first time a sleeve can decide: its first base bar plus its warm-up, UTC ms."""
    return int(candles[graph.base].time[0]) + graph.warmup * graph.base.ms


def _reach_further(
    loaded: list[_Loaded], load: CandleLoader, start: int | None, end: int | None, notes: list[str]
) -> list[_Loaded]:
    """Ask again, over the range the other feeds reach, for each feed ending well (`stale_ms`) before them.

    The loader may then take another file (a finer timeframe's, resampled) that covers more of it; each
    feed so replaced adds a line to `notes`.
    """
    reach = max(_end(c, k) for *_, candles in loaded for k, c in candles.items())
    reach = reach if end is None else min(reach, end)
    begin = start if start is not None else max(_begin(g, c) for _, _, _, g, c in loaded)
    again = []
    for sl, t, v, g, candles in loaded:
        first = begin - g.warmup * g.base.ms
        fresh = dict(candles)
        for clock, series in candles.items():
            if _end(series, clock) < reach - stale_ms(clock.ms):
                other = load(clock.symbol, clock.timeframe, first, reach)
                if len(other) and _end(other, clock) > _end(series, clock):
                    fresh[clock] = other
                    notes.append(
                        f"{_pair(clock.symbol)} {clock.timeframe} candles ended "
                        f"{format_time(_end(series, clock))}; read again for the range the other feeds "
                        f"reach, they now end {format_time(_end(other, clock))}"
                    )
        again.append((sl, t, v, g, fresh))
    return again


def _end_notes(ends: Mapping[tuple[int, Clock], int], stop: int, end: int | None) -> list[str]:
    """Say where the range ends when a feed ends it well before the others or before --to."""
    later = max(ends.values())
    limit = end if end is not None else later
    short = [(k, e) for (_, k), e in ends.items() if e == stop]
    if not short or limit - stop <= min(stale_ms(k.ms) for k, _ in short):
        return []
    clock = short[0][0]
    asked = (
        f"--to {format_time(end)}"
        if end is not None and end <= later
        else f"other feeds to {format_time(later)}"
    )
    return [
        f"the run ends {format_time(stop)}, where the {_pair(clock.symbol)} {clock.timeframe} candles end "
        f"({asked})"
    ]


def _check_fresh(clock: Clock, series: Candles) -> None:
    """Refuse a feed with no candle for longer than `stale_ms` inside the range (RunError naming the gap)."""
    if len(series) < 2:
        return
    spacing = series.time[1:] - series.time[:-1]
    worst = int(spacing.argmax())
    if int(spacing[worst]) - clock.ms > stale_ms(clock.ms):
        after, before = int(series.time[worst]) + clock.ms, int(series.time[worst + 1])
        raise RunError(
            f"{_pair(clock.symbol)} {clock.timeframe}: no candle from {format_time(after)} to "
            f"{format_time(before)} ({format_duration(before - after)}): the feed is stale there; pass "
            "--fill-gaps to carry its last price over the gap, or choose --from/--to around it"
        )


def _windows(graph: Graph) -> list[tuple[float, str, Clock]]:
    """Every window length of the graph's functions: (bars, `sma() length`, the clock it counts bars of)."""
    found = []
    for node in graph.nodes:
        if node.kind != "op" or node.name not in OPERATORS:
            continue
        operator = OPERATORS[node.name]
        roles = {a.name: a.role for a in operator.signature.args}
        for (name, _), value in zip(operator.params, node.params, strict=False):
            if roles.get(name) == "length":
                found.append((value, f"{operator.name}() {name}", graph.clocks[node.clock]))
    return found


def check_lookback(graph: Graph, candles: Mapping[Clock, Candles]) -> None:
    """Refuse a function whose window is longer than the bars of its clock (before anything allocates it)."""
    for value, what, clock in _windows(graph):
        bars = len(candles[clock])
        if value > bars:
            raise RunError(
                f"{what}={value:,.0f} looks back further than the {bars:,} {_pair(clock.symbol)} "
                f"{clock.timeframe} bars in the range"
            )


def _traded(loaded: list[_Loaded]) -> list[str]:
    """Notes on sleeves that can trade no bar; RunError when no sleeve can trade any."""
    idle = []
    for sl, _, _, g, candles in loaded:
        bars = len(candles[g.base])
        if bars <= g.warmup:
            longest = max(_windows(g), default=None)
            window = f" (longest window: {longest[1]}={longest[0]:,.0f})" if longest else ""
            idle.append(
                f"{_pair(sl.symbol)} {sl.timeframe}: {bars:,} bar{'' if bars == 1 else 's'}, the strategy's "
                f"warm-up needs "
                f"{g.warmup:,}{window}: no bar was traded"
            )
    if idle and len(idle) == len(loaded):
        raise RunError("; ".join(idle))
    return idle


def _pair(symbol: str) -> str:
    """`BASE/QUOTE` of a spec symbol."""
    return symbol.split(":", 1)[-1]


def _quote(symbol: str) -> str:
    """The quote currency of `EXCHANGE:BASE/QUOTE`."""
    parts = parse_symbol(symbol)
    return parts[2] if parts else "USDT"
