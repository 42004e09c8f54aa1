"""The typed, immutable IR the checker produces and the runtime compiles.

Expressions use one node model (`Expr`) whose `op` says what it is; every node carries its unit kind,
qualifier and clock, and a content digest computed from its own fields and its children's digests, so
identical sub-expressions have identical digests (the graph shares them, the reload diff compares them).
Numeric values are stored in base units: percentages and bps as fractions (2.5% → 0.025), durations in ms,
dates as UTC ms.

Process-global state: the node memo, and nothing else. `Expr.make` remembers every node it builds by its
content, so that a spec repeating itself, or checked again (a hot reload in a long-lived process), gets the
same immutable node objects back instead of new copies. The memo is bounded: it holds at most
`NODE_MEMO_LIMIT` nodes (about 1.4 KB each, so about 70 MB when full; the whole standard library and the
example specs make a few hundred) and starts over, emptied at once, when full. Emptying it never changes a
result, only which equal objects are shared. `forget_nodes()` is the one way to empty it by hand: a
long-lived process may call it to give the memory back, a benchmark to measure a cold check. Concurrent
checks may share it: a race only builds an equal node twice.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from dsl.diagnostics import Span

# Value of a constant node: a number, a bool, a string (symbols, enum words, metric names) or None (na).
Value = float | int | bool | str | None


class Frozen(BaseModel):
    """Base of IR models: immutable, and strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Expr(Frozen):
    """One expression node.

    `op` is one of: const (value), param (value = name), source (value = open/high/...), state (value =
    position_size/...), metric (value = risk or result metric name), call (value = function name, args in
    signature order, defaults filled in), field (value = field name, args = (struct,)), offset (args =
    (series, bars)), binary (value = + - * / < <= > >= == != and or), unary (value = - or not), cross
    (value = above or below), if (args = (cond, then, else)), bars (a candle struct; symbol, clock set).
    """

    op: str  # node kind, see above
    value: Value = None  # literal value, name or operator, depending on op
    args: tuple[Expr, ...] = ()  # children
    kind: str = "number"  # unit kind of the result ("price", "bool", "macd", ...)
    qual: int = 0  # 0 const, 1 param, 2 series
    integer: bool = False  # whole-number valued
    clock: str | None = None  # timeframe of a slower clock ("1h"), None for the strategy's base clock
    symbol: str | None = None  # another market ("BINANCE:BTC/USDT") for bars(), None for the own symbol
    digest: str = ""  # content hash (hex), set by `make`

    @staticmethod
    def make(
        op: str,
        value: Value = None,
        args: tuple[Expr, ...] = (),
        *,
        kind: str = "number",
        qual: int = 0,
        integer: bool = False,
        clock: str | None = None,
        symbol: str | None = None,
    ) -> Expr:
        """Build a node and compute its content digest (inputs are trusted: no validation pass)."""
        qual, integer = int(qual), bool(integer)
        text = f"{op}|{value!r}|{kind}|{qual}|{integer}|{clock}|{symbol}"
        if args:
            text += "|" + "|".join([a.digest for a in args])
        # Identical content gives an identical (immutable) node: reuse the one already built.
        node = _MADE.get(text)
        if node is not None:
            return node
        digest = hashlib.blake2b(text.encode(), digest_size=10).hexdigest()
        # What `model_construct` does, without its per-field alias and default lookups (every field is
        # given): this runs for every node of every spec, so its cost shows in the checker's time.
        node = _new_expr(Expr)
        _set(
            node,
            "__dict__",
            {
                "op": op,
                "value": value,
                "args": args,
                "kind": kind,
                "qual": qual,
                "integer": integer,
                "clock": clock,
                "symbol": symbol,
                "digest": digest,
            },
        )
        _set(node, "__pydantic_fields_set__", set(_EXPR_FIELDS))
        _set(node, "__pydantic_extra__", None)
        _set(node, "__pydantic_private__", None)
        # The memo's bound (see the module docstring): start over when full, rather than track ages.
        if len(_MADE) >= NODE_MEMO_LIMIT:
            _MADE.clear()
        _MADE[text] = node
        return node


# The node memo: nodes built by `Expr.make`, by their digest text (the process-global state of this module;
# see the module docstring).
_MADE: dict[str, Expr] = {}
# Most nodes the memo holds (about 1.4 KB each); when full, it is emptied and fills again.
NODE_MEMO_LIMIT = 50_000


def forget_nodes() -> None:
    """Empty the node memo of `Expr.make`: the one way to give its memory back by hand.

    Safe at any time (results never depend on it; later checks just build their nodes afresh). A long-lived
    process may call it after dropping the programs it checked; benchmarks call it to measure a cold check.
    """
    _MADE.clear()


# The field names of `Expr`, in declaration order (all set by `Expr.make`).
_EXPR_FIELDS = tuple(Expr.model_fields)
# Raw constructors used by `Expr.make` to skip pydantic's generic construction path.
_new_expr = object.__new__
_set = object.__setattr__


class ParamIR(Frozen):
    """A strategy parameter with its default and optimizer domain."""

    name: str  # param name
    kind: str  # unit kind of its values
    integer: bool  # whole-number valued
    default: float  # default value in base units
    low: float | None = None  # range domain start (inclusive)
    high: float | None = None  # range domain end (inclusive)
    step: float | None = None  # range grid step
    choices: tuple[float, ...] | None = None  # set domain members


class RuleIR(Frozen):
    """`entry long when C` / `exit short when C`."""

    kind: str  # "entry" or "exit"
    side: str  # "long" or "short"
    cond: Expr  # bool series
    span: Span | None = None  # where the rule is written in its strategy's file (for E080); not digested


class AlertIR(Frozen):
    """`alert "text" when C`."""

    message: str  # text sent when the condition fires
    cond: Expr  # bool series


class StrategyIR(Frozen):
    """A checked strategy template."""

    name: str  # strategy name
    file: str  # file that defines it
    symbol: str  # "EXCHANGE:BASE/QUOTE"
    timeframe: str  # base clock, e.g. "1h"
    params: tuple[ParamIR, ...]  # parameters in declaration order
    constraints: tuple[Expr, ...]  # bool expressions over params
    bindings: tuple[tuple[str, Expr], ...]  # named series in declaration order
    rules: tuple[RuleIR, ...]  # entry and exit rules in order
    alerts: tuple[AlertIR, ...]  # alerts in order
    settings: tuple[tuple[str, Expr], ...]  # strategy settings (stop_loss, size, ...) as written
    execution: tuple[tuple[str, Expr], ...]  # execution settings (fill, fee, ...)
    timeframes: tuple[str, ...]  # every clock used, base first
    warmup: int  # bars of the base clock before the first decision, at the defaults
    warmup_sweep: int  # the same with every param at its domain's maximum
    trade_state: bool  # whether a rule reads position_size, entry_price, ... (evaluated in the simulation)
    # where its candles come from when run on its own (`data:`): "exchange", "synthetic" or the absolute
    # path of a folder of CSV files; None when not set (the command line's --data, else the exchange)
    data: str | None = None
    digest: str  # content hash of the whole template


class SleeveIR(Frozen):
    """A strategy instance inside a portfolio."""

    name: str  # sleeve name
    strategy: str  # template name
    symbol: str  # market after overrides
    timeframe: str  # base clock after overrides
    weight: float  # share of equity, a fraction
    overrides: tuple[tuple[str, float], ...]  # param overrides in base units


class RiskRuleIR(Frozen):
    """A risk rule at portfolio or sleeve scope."""

    scope: str  # "portfolio" or "sleeve"
    action: str  # "halt", "pause", "flatten" or "cap"
    cond: Expr | None  # bool over metric nodes (not for cap)
    duration_ms: int | None  # pause length
    metric: str | None  # capped metric (cap only)
    limit: float | None  # cap limit in base units
    text: str  # the rule as written


class PortfolioIR(Frozen):
    """A portfolio: capital, sleeves and risk rules."""

    name: str  # portfolio name
    file: str  # file that defines it
    capital: float  # starting capital in the quote currency
    quote: str | None  # currency of the capital amount ("USDT"), if written
    rebalance_ms: int | None  # rebalancing period
    sleeves: tuple[SleeveIR, ...]  # sleeves in order
    risk: tuple[RiskRuleIR, ...]  # portfolio and per-sleeve rules in order
    # where every sleeve's candles come from (`data:`), as StrategyIR.data; None when not set
    data: str | None = None


def alone(strategy: StrategyIR, capital: float) -> PortfolioIR:
    """A strategy run on its own: a one-sleeve portfolio named after it, with all of the capital."""
    sleeve = SleeveIR(
        name=strategy.name,
        strategy=strategy.name,
        symbol=strategy.symbol,
        timeframe=strategy.timeframe,
        weight=1.0,
        overrides=(),
    )
    return PortfolioIR(
        name=strategy.name,
        file=strategy.file,
        capital=capital,
        quote=None,
        rebalance_ms=None,
        sleeves=(sleeve,),
        risk=(),
        data=strategy.data,
    )


class OptimizeIR(Frozen):
    """A parameter search over a strategy."""

    name: str  # optimize block name
    target: str  # strategy searched
    start_ms: int | None  # start of the data range, UTC ms
    end_ms: int | None  # end of the data range, UTC ms
    method: Expr | None  # grid/random/bayes call
    objective: Expr | None  # maximize/minimize call
    require: Expr | None  # bool over result metrics
    walk_forward: Expr | None  # rolling/anchored call


class RiskProfileIR(Frozen):
    """A reusable set of risk rules."""

    name: str  # profile name
    rules: tuple[RiskRuleIR, ...]  # its rules (scope set where the profile is applied)


class Program(Frozen):
    """Everything a checked file defines, imports included."""

    file: str  # the checked file
    version: int  # language version
    strategies: tuple[StrategyIR, ...]  # strategy templates, imported ones included
    portfolios: tuple[PortfolioIR, ...]  # portfolios of this file
    risk_profiles: tuple[RiskProfileIR, ...]  # reusable risk profiles
    optimizes: tuple[OptimizeIR, ...]  # optimize blocks of this file

    def strategy(self, name: str) -> StrategyIR:
        """The strategy template called `name`; KeyError when there is none."""
        for item in self.strategies:
            if item.name == name:
                return item
        raise KeyError(name)


def _bounded(value: Any) -> Any:
    """A whole number past a float's exact range as a float (±inf past its range), else `value`.

    Python's ints grow without bound: `a * a * ... * a` of fixed values would otherwise become an int no
    float conversion (warm-up, the runtime) survives; as a float it is an infinite value the checks refuse.
    """
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    return value


# Binary operators a constant evaluation understands.
_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "+": lambda a, b: _bounded(a + b),
    "-": lambda a, b: _bounded(a - b),
    "*": lambda a, b: _bounded(a * b),
    "/": lambda a, b: a / b if b else math.nan,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "and": lambda a, b: bool(a) and bool(b),
    "or": lambda a, b: bool(a) or bool(b),
}


def evaluate(expr: Expr, params: Mapping[str, float], memo: dict[str, Value] | None = None) -> Value:
    """Evaluate a const or param expression; None when it depends on series or a value is unknown.

    Nodes are shared (hash-consed), so each distinct node is evaluated once, by its digest, in `memo`: a
    fresh one per call, or one the caller keeps across calls that all pass the same `params` (the
    checker's, for fixed values), so that evaluating a growing expression node by node stays linear.
    """
    known: dict[str, Value] = {} if memo is None else memo

    def value(node: Expr) -> Value:
        """The value of one node, from the memo when seen before."""
        if node.op == "const":
            return node.value
        if node.op == "param":
            return params.get(str(node.value))
        if node.digest in known:
            return known[node.digest]
        found = _apply(node, [value(a) for a in node.args])
        known[node.digest] = found
        return found

    return value(expr)


def _apply(expr: Expr, values: list[Value]) -> Value:
    """The value of one operator node given its operands' values (None when one is unknown)."""
    if any(v is None for v in values):
        return None
    if expr.op == "binary" and isinstance(expr.value, str):
        return _BINARY[expr.value](values[0], values[1])
    if expr.op == "unary":
        return (not values[0]) if expr.value == "not" else -values[0]  # type: ignore[operator]
    if expr.op == "if":
        return values[1] if values[0] else values[2]
    return None


# A comparison read the other way round (`15% < drawdown` is `drawdown > 15%`).
FLIPPED = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "==": "==", "!=": "!="}


def risk_comparison(expr: Expr) -> tuple[str, str, float] | None:
    """A risk condition's comparison as (metric, operator, fixed value), metric first; None if it is not one.

    The one reading of the form the broker evaluates: the checker refuses any other (E052), the runtime
    builds its rules from this.
    """
    if expr.op != "binary" or expr.value not in FLIPPED:
        return None
    left, right = expr.args
    op = str(expr.value)
    if left.op != "metric":
        left, right, op = right, left, FLIPPED[op]
    value = evaluate(right, {})
    if left.op != "metric" or not isinstance(value, int | float) or isinstance(value, bool):
        return None
    return str(left.value), op, float(value)
