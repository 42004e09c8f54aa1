"""The checker's scopes: a file's globals, a strategy's locals and where an expression is checked."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from dsl import syntax as s
from dsl.diagnostics import Reporter, Span
from dsl.ir import (
    Expr,
    ParamIR,
)
from dsl.types import Qual
from dsl.units import TIMEFRAMES

# The node standing for an expression that already produced a diagnostic; it silences follow-on errors.
ERROR = Expr.make("const", None, kind="error", qual=Qual.SERIES)


@dataclass
class Globals:
    """A file's global scope: consts and defs of the file and of the files it uses."""

    const_syntax: dict[str, s.Const] = field(default_factory=dict)  # this file's consts, not yet checked
    consts: dict[str, Expr] = field(default_factory=dict)  # checked consts (own and imported)
    defs: dict[str, tuple[s.Def, Globals]] = field(default_factory=dict)  # visible defs and their home
    resolving: list[str] = field(default_factory=list)  # consts being resolved, for cycle detection


@dataclass
class StrategyScope:
    """The local scope of one strategy while it is checked."""

    name: str  # strategy name
    base_ms: int  # base clock length
    params: dict[str, ParamIR] = field(default_factory=dict)  # declared params
    param_spans: dict[str, Span] = field(default_factory=dict)  # where each param is declared
    syntax: dict[str, s.Binding] = field(default_factory=dict)  # bindings by name, unchecked
    done: dict[str, Expr] = field(default_factory=dict)  # checked bindings
    resolving: list[str] = field(default_factory=list)  # bindings being resolved, for cycle detection
    timeframes: set[str] = field(default_factory=set)  # clocks used by bars()
    bars_spans: list[tuple[str, Span]] = field(default_factory=list)  # bars() timeframes and where
    trade_state: bool = False  # whether a trade-state series was read


@dataclass
class Env:
    """Where an expression is checked: which names it may see and what kind of context it is."""

    globals: Globals  # consts and defs
    strategy: StrategyScope | None = None  # enclosing strategy, if any
    locals: dict[str, Expr] = field(default_factory=dict)  # def parameters bound to argument values
    inlining: tuple[str, ...] = ()  # defs being inlined, for recursion detection
    metrics: Mapping[str, str] | None = None  # visible risk or result metrics
    metric_scope: str = ""  # "portfolio", "sleeve" or "optimize" (for messages)
    fixed: str = ""  # non-empty when only fixed values are allowed: names the thing, for E024


def resolve_once(
    name: str, resolving: list[str], span: Span, rep: Reporter, compute: Callable[[], Expr]
) -> Expr:
    """Compute a named definition's value; a name met again while it resolves is a cycle (E014)."""
    if name in resolving:
        chain = [*resolving[resolving.index(name) :], name]
        rep.add("E014", span, f"circular definition: {' → '.join(chain)}")
        return ERROR
    resolving.append(name)
    try:
        return compute()
    finally:
        resolving.pop()


def timeframe_literal(node: s.Expr, rep: Reporter) -> str | None:
    """The timeframe a literal names (`1h`), or None after reporting that it is not available (E036)."""
    text = node.text if isinstance(node, s.Literal) else ""
    if text in TIMEFRAMES:
        return text
    rep.add(
        "E036",
        node.span,
        f"timeframe {text or 'expression'} is not available",
        "available: " + ", ".join(TIMEFRAMES),
    )
    return None
