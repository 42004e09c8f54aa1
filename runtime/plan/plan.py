"""A run's plan: every sleeve compiled, with the candles of every clock its graph reads.

Candles come through an injected loader and trading rules through an injected lookup, so the plan knows
no data source, store or command line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dsl.ir import PortfolioIR, Program, RiskRuleIR, SleeveIR, StrategyIR
from dsl.units import parse_symbol
from runtime.data.candles import DataError
from runtime.data.markets import MarketRules
from runtime.graph.compiler import CompileError, Graph, compile_strategy
from runtime.graph.drivers import Feeds
from runtime.plan.select import RunError

# Loads candles for a clock: (symbol "EXCHANGE:BASE/QUOTE", timeframe, start ms, end ms) → candles.
CandleLoader = Callable[[str, str, int | None, int | None], Any]
# Finds the trading rules of a symbol ("EXCHANGE:BASE/QUOTE"), None when unknown.
RulesLookup = Callable[[str], "MarketRules | None"]

# Errors a command reports as one plain line: the spec cannot be run as asked, or its data cannot be had.
RUN_ERRORS: tuple[type[Exception], ...] = (
    RunError, CompileError, DataError, FileNotFoundError, ValueError, ConnectionError,
)  # fmt: skip


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
) -> RunPlan:
    """Compile every sleeve and load the candles of every clock it reads (with warm-up history).

    `rules` finds the exchange's trading rules of a symbol (quantity step, minimums); sleeves whose
    symbol has none trade fractional units freely.
    """
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
        if len(candles[graph.base]) == 0:
            raise RunError(f"no {sleeve.symbol} {sleeve.timeframe} candles in the requested range")
        loaded.append((sleeve, template, values, graph, candles))
    if start is None and len(loaded) > 1:
        # Without --from a portfolio starts where every sleeve has data; each sleeve keeps just its warm-up
        # history before that, so no sleeve trades alone for years and dilutes the portfolio's figures.
        begin = max(int(c[g.base].time[0]) + g.warmup * g.base.ms for _, _, _, g, c in loaded)
        loaded = [
            (sl, t, v, g, {k: c.slice(begin - g.warmup * g.base.ms, None) for k, c in candles.items()})
            for sl, t, v, g, candles in loaded
        ]
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
    risk, rebalance = portfolio.risk, portfolio.rebalance_ms
    return RunPlan(portfolio.name, portfolio.capital, quote, rebalance, risk, tuple(sleeves), start)


def _first_decision(graph: Graph, times: Any, start: int | None) -> int:
    """The first base bar (open `times`, UTC ms) that may decide: warm, and opening at or after `start`.

    A decision at the close of a bar before the start would fill inside the warm-up, which is not traded.
    """
    if start is None:
        return graph.warmup
    return max(graph.warmup, int(np.searchsorted(times, start)))


def _quote(symbol: str) -> str:
    """The quote currency of `EXCHANGE:BASE/QUOTE`."""
    parts = parse_symbol(symbol)
    return parts[2] if parts else "USDT"
