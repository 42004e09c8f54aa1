"""The language's settings as the engine's typed inputs: the one mapping from IR to `runtime.plan.model`.

A sleeve's graph computes its decisions (entry/exit, long/short) and the bracket settings written as
series (stop_loss, take_profit, trailing_stop); `decision_nodes` and `offset_nodes` name those graph nodes
as typed records, and the drivers hand back their values in the same records (`Decisions`, `Offsets`),
so no string key crosses a module boundary. Everything else (sizing, execution, risk rules, bracket
levels written as fixed values) comes from the strategy's settings here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np

from dsl.ir import Expr, RiskRuleIR, evaluate, risk_comparison
from dsl.units import TIMEFRAMES, parse_symbol
from runtime.graph.compiler import Graph
from runtime.plan import model as m
from runtime.plan.plan import RunPlan, SleevePlan
from runtime.plan.select import RunError

# What one field of a record holds: a graph node id, a bool array over the bars, one bar's value, ...
T = TypeVar("T")


class Decisions(NamedTuple, Generic[T]):
    """A sleeve's four decisions, each one T: graph node ids, bool arrays over the bars, or one bar's bools.

    A decision at bar t is taken at the close of bar t.
    """

    entry_long: T  # open (or add to) a long
    exit_long: T  # close the long
    entry_short: T  # open (or add to) a short
    exit_short: T  # close the short


class Offsets(NamedTuple, Generic[T]):
    """A sleeve's bracket settings written as price distance series, each one T (node ids, arrays, floats).

    A setting that is not a series (a percentage, an R multiple, a fixed distance) has no graph node and
    its field holds None; its value comes from the strategy's settings.
    """

    stop_loss: T  # distance of the stop-loss from the fill price, quote currency
    take_profit: T  # distance of the take-profit from the fill price, quote currency
    trailing_stop: T  # distance of the trailing stop from the best price so far, quote currency


def decision_nodes(graph: Graph) -> Decisions[int | None]:
    """The graph's decision nodes (bool series on the base clock); None for a decision it never takes."""
    rules = graph.rules
    return Decisions(
        rules.get("entry_long"), rules.get("exit_long"), rules.get("entry_short"), rules.get("exit_short")
    )


def offset_nodes(graph: Graph) -> Offsets[int | None]:
    """The graph's price distance series nodes of the bracket; None for a setting that is not a series."""
    series = graph.series_settings
    return Offsets(series.get("stop_loss"), series.get("take_profit"), series.get("trailing_stop"))


def sleeve_input(
    sp: SleevePlan, decisions: Decisions[np.ndarray], offsets: Offsets[np.ndarray | None]
) -> m.SleeveInput:
    """The broker's view of one sleeve: candles, decisions, bracket, sizing and execution.

    `decisions` are bool arrays over the sleeve's base bars; `offsets` hold the float64 values of its
    bracket settings written as series (see `offset_nodes`).
    """
    c = sp.feeds.candles[0]
    n = sp.feeds.length(0)
    settings = dict(sp.strategy.settings)
    tf_ms = TIMEFRAMES[sp.sleeve.timeframe]
    fixed = _Fixed(sp.values)
    bracket = m.Bracket(
        stop=_offset(settings.get("stop_loss"), offsets.stop_loss, fixed, n),  # type: ignore[arg-type]
        take_profit=_offset(settings.get("take_profit"), offsets.take_profit, fixed, n),
        trailing_stop=_offset(settings.get("trailing_stop"), offsets.trailing_stop, fixed, n),  # type: ignore[arg-type]
        trail_after=_threshold(settings.get("trail_after"), fixed),
        breakeven_after=fixed.number(settings.get("breakeven_after")),
        max_hold_bars=_bars(fixed.number(settings.get("max_hold")), tf_ms),
        cooldown_bars=_bars(fixed.number(settings.get("cooldown")), tf_ms) or m.Bracket.cooldown_bars,
    )
    return m.SleeveInput(
        name=sp.sleeve.name,
        strategy=sp.strategy.name,
        symbol=market_pair(sp.sleeve.symbol),
        timeframe=sp.sleeve.timeframe,
        weight=sp.sleeve.weight,
        time=np.asarray(c.time, dtype=np.int64),
        open=np.asarray(c.open, dtype=np.float64),
        high=np.asarray(c.high, dtype=np.float64),
        low=np.asarray(c.low, dtype=np.float64),
        close=np.asarray(c.close, dtype=np.float64),
        volume=np.asarray(c.volume, dtype=np.float64),
        entry_long=decisions.entry_long,
        exit_long=decisions.exit_long,
        entry_short=decisions.entry_short,
        exit_short=decisions.exit_short,
        bracket=bracket,
        sizing=_sizing(settings.get("size"), fixed),
        execution=_execution(dict(sp.strategy.execution), fixed, tf_ms),
        max_entries=int(fixed.number(settings.get("max_entries")) or m.SleeveInput.max_entries),
        scale_in=fixed.number(settings.get("scale_in")) or m.SleeveInput.scale_in,
        warmup=sp.first_decision,
        precision=None
        if sp.rules is None
        else m.Precision(sp.rules.amount_step, sp.rules.min_qty, sp.rules.min_notional),
    )


def market_pair(symbol: str) -> str:
    """`BASE/QUOTE` of `EXCHANGE:BASE/QUOTE`."""
    parts = parse_symbol(symbol)
    return f"{parts[1]}/{parts[2]}" if parts else symbol


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
    """The sizing rule of `size:` (the model's default when the strategy sets none)."""
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
    """The fill model of an `execution:` block; settings it leaves out take the model's defaults.

    `fee` sets both fees; `maker_fee` and `taker_fee` override one each.
    """
    fee = fixed.number(settings.get("fee"))
    slippage = settings.get("slippage")
    impact = m.Execution.volume_impact_k
    bps = m.Execution.slippage_bps
    if slippage is not None and slippage.op == "call":
        impact = fixed.arg(slippage, 0)
    elif slippage is not None:
        bps = (fixed.number(slippage) or 0.0) * m.BPS
    latency = settings.get("latency")
    latency_bars = m.Execution.latency_bars
    if latency is not None:
        value = fixed.number(latency) or 0.0
        latency_bars = int(value) if latency.kind != "duration" else math.ceil(value / tf_ms)
    fill = settings.get("fill")
    ambiguity = settings.get("ambiguity")
    both = m.DEFAULT_FEE if fee is None else fee
    return m.Execution(
        fill=str(fill.value) if fill is not None else m.Execution.fill,  # type: ignore[arg-type]
        fee_maker=fixed.number(settings.get("maker_fee")) if "maker_fee" in settings else both,  # type: ignore[arg-type]
        fee_taker=fixed.number(settings.get("taker_fee")) if "taker_fee" in settings else both,  # type: ignore[arg-type]
        slippage_bps=bps,
        volume_impact_k=impact,
        max_volume=fixed.number(settings.get("max_volume")),
        latency_bars=latency_bars,
        ambiguity=str(ambiguity.value) if ambiguity is not None else m.Execution.ambiguity,  # type: ignore[arg-type]
    )


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
    comparison = risk_comparison(expr)
    if comparison is not None:
        return m.Compare(*comparison)  # type: ignore[arg-type]
    raise RunError(f"risk rule '{text}': compare a metric with a fixed value, e.g. drawdown > 15%")


def portfolio_input(rp: RunPlan, sleeves: list[m.SleeveInput]) -> m.PortfolioInput:
    """The engine's portfolio input: the plan's account and risk rules around the sleeves' inputs."""
    return m.PortfolioInput(
        capital=rp.capital,
        quote=rp.quote,
        sleeves=tuple(sleeves),
        rebalance_ms=rp.rebalance_ms,
        risk=tuple(risk_rule(r) for r in rp.risk),
        synthetic=rp.synthetic,
    )
