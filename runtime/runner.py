"""From a checked spec to a simulated run.

Compile each sleeve, load its candles, evaluate its graph (batch, or bar by bar through the streaming
driver for a replay), and hand the decisions to the simulated broker.

This is the one place that maps the language's settings (stop_loss, size, execution, risk rules, ...) onto
the backtest engine's typed inputs; backtest and replay differ only in how the graph is driven and how the
broker is stepped.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dsl.ir import Expr, PortfolioIR, Program, RiskRuleIR, SleeveIR, StrategyIR, evaluate
from dsl.units import TIMEFRAMES, parse_symbol
from runtime.backtest import model as m
from runtime.broker.result import BacktestResult
from runtime.data.candles import DataError
from runtime.data.markets import MarketRules
from runtime.graph.compiler import CompileError, Graph, compile_strategy
from runtime.graph.drivers import Feeds, StreamDriver, replay_order, run_batch

# Loads candles for a clock: (symbol "EXCHANGE:BASE/QUOTE", timeframe, start ms, end ms) → candles.
CandleLoader = Callable[[str, str, int | None, int | None], Any]
# Finds the trading rules of a symbol ("EXCHANGE:BASE/QUOTE"), None when unknown.
RulesLookup = Callable[[str], "MarketRules | None"]
# Settings whose value is a price offset of the bracket.
_OFFSETS = ("stop_loss", "take_profit", "trailing_stop")


class RunError(Exception):
    """A spec that checks clean but cannot be run as asked (no such strategy, missing data, ...)."""


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


@dataclass(frozen=True)
class RunPlan:
    """A whole run: sleeves, capital and risk rules."""

    name: str  # portfolio or strategy name
    capital: float  # starting cash
    quote: str  # quote currency
    rebalance_ms: int | None  # rebalancing period
    risk: tuple[RiskRuleIR, ...]  # risk rules
    sleeves: tuple[SleevePlan, ...]  # sleeves in spec order

    @property
    def synthetic(self) -> bool:
        """Whether any candles are synthetic."""
        return any(bool(getattr(c, "synthetic", False)) for s in self.sleeves for c in s.feeds.candles)


def select(program: Program, strategy: str | None, capital: float | None) -> PortfolioIR:
    """The portfolio to run: the file's portfolio, or one strategy on its own as a one-sleeve portfolio."""
    if strategy is None and len(program.portfolios) == 1:
        chosen = program.portfolios[0]
        return chosen.model_copy(update={"capital": capital}) if capital is not None else chosen
    if strategy is None:
        own = [s for s in program.strategies if s.file == program.file] or list(program.strategies)
        if len(program.portfolios) > 1 or len(own) != 1:
            names = [p.name for p in program.portfolios] or [s.name for s in own]
            raise RunError(f"{program.file} defines {', '.join(names)}: choose one with --strategy NAME")
        strategy = own[0].name
    for portfolio in program.portfolios:
        if portfolio.name == strategy:
            return portfolio.model_copy(update={"capital": capital}) if capital is not None else portfolio
    try:
        template = program.strategy(strategy)
    except KeyError:
        known = [s.name for s in program.strategies] + [p.name for p in program.portfolios]
        raise RunError(f"no strategy or portfolio '{strategy}'; known: {', '.join(known)}") from None
    sleeve = SleeveIR(
        name=template.name,
        strategy=template.name,
        symbol=template.symbol,
        timeframe=template.timeframe,
        weight=1.0,
        overrides=(),
    )
    return PortfolioIR(
        name=template.name,
        file=template.file,
        capital=capital or 10_000.0,
        quote=None,
        rebalance_ms=None,
        sleeves=(sleeve,),
        risk=(),
    )


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
        SleevePlan(sl, t, v, g, Feeds(g, c), rules(sl.symbol) if rules is not None else None)
        for sl, t, v, g, c in loaded
    ]
    quote = portfolio.quote or _quote(portfolio.sleeves[0].symbol)
    return RunPlan(
        portfolio.name, portfolio.capital, quote, portfolio.rebalance_ms, portfolio.risk, tuple(sleeves)
    )


def _quote(symbol: str) -> str:
    """The quote currency of `EXCHANGE:BASE/QUOTE`."""
    parts = parse_symbol(symbol)
    return parts[2] if parts else "USDT"


def _pair(symbol: str) -> str:
    """`BASE/QUOTE` of `EXCHANGE:BASE/QUOTE`."""
    parts = parse_symbol(symbol)
    return f"{parts[1]}/{parts[2]}" if parts else symbol


# ====================================================================== decisions


# Decision arrays the broker reads, with the rule keys that set them.
DECISIONS = ("entry_long", "exit_long", "entry_short", "exit_short")


def batch_decisions(sp: SleevePlan) -> dict[str, np.ndarray]:
    """Evaluate a sleeve's graph over its whole history: bool decisions and series settings (base clock)."""
    g = sp.graph
    wanted = {**g.rules, **g.series_settings}
    values = run_batch(g, sp.feeds, list(wanted.values()))
    n = sp.feeds.length(0)
    out = {}
    for key, node in wanted.items():
        value = values[node]
        out[key] = value if isinstance(value, np.ndarray) else np.full(n, float(value))
    return out


def _decided(values: Mapping[str, np.ndarray], key: str, warmup: int, n: int) -> np.ndarray:
    """A bool decision array: the rule held (not na, not zero) at or after the warm-up."""
    arr = values.get(key)
    if arr is None:
        return np.zeros(n, dtype=np.bool_)
    decided = (arr == arr) & (arr != 0.0)
    decided[: min(warmup, n)] = False
    return decided


# ====================================================================== settings → engine inputs


def sleeve_input(sp: SleevePlan, series: Mapping[str, np.ndarray]) -> m.SleeveInput:
    """The broker's view of one sleeve: candles, decisions, bracket, sizing and execution."""
    c = sp.feeds.candles[0]
    n = sp.feeds.length(0)
    settings = dict(sp.strategy.settings)
    tf_ms = TIMEFRAMES[sp.sleeve.timeframe]
    fixed = _Fixed(sp.values)
    bracket = m.Bracket(
        stop=_offset(settings.get("stop_loss"), series.get("stop_loss"), fixed, n),  # type: ignore[arg-type]
        take_profit=_offset(settings.get("take_profit"), series.get("take_profit"), fixed, n),
        trailing_stop=_offset(settings.get("trailing_stop"), series.get("trailing_stop"), fixed, n),  # type: ignore[arg-type]
        trail_after=_threshold(settings.get("trail_after"), fixed),
        breakeven_after=fixed.number(settings.get("breakeven_after")),
        max_hold_bars=_bars(fixed.number(settings.get("max_hold")), tf_ms),
        cooldown_bars=_bars(fixed.number(settings.get("cooldown")), tf_ms) or 0,
    )
    return m.SleeveInput(
        name=sp.sleeve.name,
        strategy=sp.strategy.name,
        symbol=_pair(sp.sleeve.symbol),
        timeframe=sp.sleeve.timeframe,
        weight=sp.sleeve.weight,
        time=np.asarray(c.time, dtype=np.int64),
        open=np.asarray(c.open, dtype=np.float64),
        high=np.asarray(c.high, dtype=np.float64),
        low=np.asarray(c.low, dtype=np.float64),
        close=np.asarray(c.close, dtype=np.float64),
        volume=np.asarray(c.volume, dtype=np.float64),
        entry_long=_decided(series, "entry_long", sp.graph.warmup, n),
        exit_long=_decided(series, "exit_long", sp.graph.warmup, n),
        entry_short=_decided(series, "entry_short", sp.graph.warmup, n),
        exit_short=_decided(series, "exit_short", sp.graph.warmup, n),
        bracket=bracket,
        sizing=_sizing(settings.get("size"), fixed),
        execution=_execution(dict(sp.strategy.execution), fixed, tf_ms),
        max_entries=int(fixed.number(settings.get("max_entries")) or 1),
        scale_in=fixed.number(settings.get("scale_in")) or 1.0,
        warmup=sp.graph.warmup,
        precision=None
        if sp.rules is None
        else m.Precision(sp.rules.amount_step, sp.rules.min_qty, sp.rules.min_notional),
    )


class _Fixed:
    """Evaluates fixed setting values (consts and params) to numbers."""

    def __init__(self, values: Mapping[str, float]) -> None:
        """Evaluate with these param values."""
        self.values = values  # param values after overrides

    def number(self, expr: Expr | None) -> float | None:
        """The numeric value of a fixed setting, or None when it is not set."""
        if expr is None:
            return None
        value = evaluate(expr, self.values)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    def arg(self, call: Expr, index: int) -> float:
        """The numeric value of a call's argument."""
        return self.number(call.args[index]) or 0.0


def _offset(expr: Expr | None, series: np.ndarray | None, fixed: _Fixed, n: int) -> m.TargetOffset | None:
    """A bracket level: a percentage of the fill, a price distance series, or an R multiple."""
    if expr is None:
        return None
    if expr.kind == "percent":
        return ("percent", fixed.number(expr) or 0.0) if series is None else ("distance", series)
    if expr.kind == "R":
        return ("R", fixed.number(expr) or 0.0)
    # A price distance: a series, or a fixed number of quote units at every bar.
    return ("distance", series if series is not None else np.full(n, fixed.number(expr) or 0.0))


def _threshold(expr: Expr | None, fixed: _Fixed) -> m.ProfitThreshold | None:
    """trail_after: a percentage of the fill or an R multiple."""
    if expr is None:
        return None
    return ("R" if expr.kind == "R" else "percent", fixed.number(expr) or 0.0)  # type: ignore[return-value]


def _bars(ms: float | None, tf_ms: int) -> int | None:
    """A duration as whole bars of the sleeve's clock (rounded up)."""
    return None if ms is None else max(1, math.ceil(ms / tf_ms))


def _sizing(expr: Expr | None, fixed: _Fixed) -> m.Sizing:
    """The sizing rule of `size:` (default equity_pct(100%))."""
    if expr is None:
        return m.Sizing()
    kind = str(expr.value)
    if kind == "kelly":
        return m.Sizing(
            "kelly",
            kelly_fraction=fixed.arg(expr, 0),
            kelly_lookback=int(fixed.arg(expr, 1)),
            kelly_cap=fixed.arg(expr, 2),
        )
    return m.Sizing(kind, fixed.arg(expr, 0))  # type: ignore[arg-type]


def _execution(settings: Mapping[str, Expr], fixed: _Fixed, tf_ms: int) -> m.Execution:
    """The fill model of an `execution:` block."""
    fee = fixed.number(settings.get("fee"))
    slippage = settings.get("slippage")
    impact = None
    bps = 0.0
    if slippage is not None and slippage.op == "call":
        impact = fixed.arg(slippage, 0)
    elif slippage is not None:
        bps = (fixed.number(slippage) or 0.0) * 10_000
    latency = settings.get("latency")
    latency_bars = 0
    if latency is not None:
        value = fixed.number(latency) or 0.0
        latency_bars = int(value) if latency.kind != "duration" else math.ceil(value / tf_ms)
    fill = settings.get("fill")
    ambiguity = settings.get("ambiguity")
    default_fee = 0.001 if fee is None else fee
    return m.Execution(
        fill=str(fill.value) if fill is not None else "next_open",  # type: ignore[arg-type]
        fee_maker=fixed.number(settings.get("maker_fee")) if "maker_fee" in settings else default_fee,  # type: ignore[arg-type]
        fee_taker=fixed.number(settings.get("taker_fee")) if "taker_fee" in settings else default_fee,  # type: ignore[arg-type]
        slippage_bps=bps,
        volume_impact_k=impact,
        max_volume=fixed.number(settings.get("max_volume")),
        latency_bars=latency_bars,
        ambiguity=str(ambiguity.value) if ambiguity is not None else "worst_case",  # type: ignore[arg-type]
    )


# Flipped comparison operators, for `15% < drawdown`.
_FLIP = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "==": "==", "!=": "!="}


def risk_rule(rule: RiskRuleIR) -> m.RiskRule:
    """A checked risk rule as the engine's typed rule."""
    scope: Any = rule.scope
    if rule.action == "cap":
        metric: Any = rule.metric
        return m.RiskRule(scope, "cap", rule.text, cap_metric=metric, cap_limit=rule.limit or 0.0)
    assert rule.cond is not None
    action: Any = rule.action
    return m.RiskRule(
        scope, action, rule.text, condition=_condition(rule.cond, rule.text), pause_ms=rule.duration_ms or 0
    )


def _condition(expr: Expr, text: str) -> m.Condition:
    """A risk condition tree: comparisons of a metric with a fixed value, joined by and/or/not."""
    if expr.op == "binary" and expr.value in ("and", "or"):
        items = tuple(_condition(a, text) for a in expr.args)
        return m.All(items) if expr.value == "and" else m.Any(items)
    if expr.op == "unary" and expr.value == "not":
        return m.Not(_condition(expr.args[0], text))
    if expr.op == "binary" and expr.value in _FLIP:
        left, right = expr.args
        if left.op == "const" and right.op == "metric":
            left, right, op = right, left, _FLIP[str(expr.value)]
        else:
            op = str(expr.value)
        value = evaluate(right, {})
        if left.op == "metric" and isinstance(value, int | float):
            return m.Compare(str(left.value), op, float(value))  # type: ignore[arg-type]
    raise RunError(f"risk rule '{text}': compare a metric with a fixed value, e.g. drawdown > 15%")


def portfolio_input(rp: RunPlan, sleeves: list[m.SleeveInput]) -> m.PortfolioInput:
    """The engine's portfolio input."""
    return m.PortfolioInput(
        capital=rp.capital,
        quote=rp.quote,
        sleeves=tuple(sleeves),
        rebalance_ms=rp.rebalance_ms,
        risk=tuple(risk_rule(r) for r in rp.risk),
        synthetic=rp.synthetic,
    )


# ====================================================================== the two modes


def backtest(rp: RunPlan) -> BacktestResult:
    """Vectorized decisions over all history, then the compiled broker loop.

    Rules that read trade state (position_size, ...) can only be decided inside the loop: such a run
    takes the replay path, which gives the same decisions bar by bar.
    """
    from runtime.broker.simulator import simulate

    if any(sp.graph.needs_state for sp in rp.sleeves):
        return replay(rp)
    sleeves = [sleeve_input(sp, batch_decisions(sp)) for sp in rp.sleeves]
    return simulate(portfolio_input(rp, sleeves))


def replay(rp: RunPlan, progress: Callable[[int, int], None] | None = None) -> BacktestResult:
    """The live engine's path with history (`progress(done, total)` is told about every 10,000 bars).

    Every bar goes through the streaming driver and the broker is stepped once per time point, exactly
    as live trading would feed them: at each point the broker first fills due orders and checks brackets,
    then each sleeve's base bar is evaluated with its trade state at the close, then its decisions act.
    """
    from runtime.broker.simulator import BarUpdate, Simulator, TradeState

    # The broker's settings come from the sleeves; bars and decisions arrive through `step`.
    shells = [
        sleeve_input(sp, {k: np.zeros(sp.feeds.length(0)) for k in sp.graph.series_settings})
        for sp in rp.sleeves
    ]
    simulator = Simulator(portfolio_input(rp, shells))
    drivers = [StreamDriver(sp.graph) for sp in rp.sleeves]
    index = {sp.sleeve.name: s for s, sp in enumerate(rp.sleeves)}
    # One global event order: by close time, slower clocks first on ties, sleeves in spec order.
    events = []
    for s, sp in enumerate(rp.sleeves):
        for clock, i in replay_order(sp.feeds):
            close = int(sp.feeds.closes[clock][i])
            events.append((close, -sp.feeds.bar_ms[clock], s, clock, i))
    events.sort()
    fields = ("open", "high", "low", "close", "volume")
    columns = [
        [[np.asarray(getattr(c, f), dtype=np.float64) for f in fields] for c in sp.feeds.candles]
        for sp in rp.sleeves
    ]
    bar_index: dict[str, int] = {}  # base-bar index of each sleeve's bar in the pending point

    def decide(update: BarUpdate, state: TradeState) -> BarUpdate:
        """Evaluate a sleeve's base bar with its trade state at the close; return the decided bar."""
        s = index[update.sleeve]
        sp, driver, i = rp.sleeves[s], drivers[s], bar_index[update.sleeve]
        driver.state = {
            "position_size": state.position_size, "entry_price": state.entry_price,
            "bars_since_entry": state.bars_since_entry, "unrealized_pnl": state.unrealized_pnl,
        }  # fmt: skip
        driver.push(0, {f: float(col[i]) for f, col in zip(fields, columns[s][0], strict=True)})
        g = sp.graph
        decided = [
            i >= g.warmup and key in g.rules and _truthy(driver.values[g.rules[key]]) for key in DECISIONS
        ]
        dist = [
            float(driver.values[g.series_settings[k]]) if k in g.series_settings else math.nan
            for k in _OFFSETS
        ]
        return dataclasses.replace(
            update, entry_long=decided[0], exit_long=decided[1], entry_short=decided[2],
            exit_short=decided[3], stop_distance=dist[0], target_distance=dist[1], trail_distance=dist[2],
        )  # fmt: skip

    pending: list[BarUpdate] = []
    pending_close = None
    for done, (close, _, s, clock, i) in enumerate(events):
        if progress is not None and done % 10_000 == 0:
            progress(done, len(events))
        if pending and close != pending_close:
            simulator.step(*pending, decide=decide)
            pending = []
        if clock != 0:
            # A slower clock's bar needs no trade state: it is evaluated as it arrives.
            drivers[s].push(
                clock, {f: float(col[i]) for f, col in zip(fields, columns[s][clock], strict=True)}
            )
            continue
        sp = rp.sleeves[s]
        o, h, low, c, v = (float(col[i]) for col in columns[s][0])
        bar_index[sp.sleeve.name] = i
        pending.append(BarUpdate(sp.sleeve.name, int(sp.feeds.candles[0].time[i]), o, h, low, c, v))
        pending_close = close
    if pending:
        simulator.step(*pending, decide=decide)
    return simulator.finish()


def _truthy(value: float) -> bool:
    """Whether a streamed condition holds."""
    return value == value and value != 0.0


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
