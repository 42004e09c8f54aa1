"""The syntax tree: what the parser produces and the checker consumes.

Nodes are plain frozen dataclasses with source spans; they carry no meaning beyond the text's structure.
Expressions and statements are separate families; a block statement holds a tuple of statements.
"""

from __future__ import annotations

from dataclasses import dataclass

from dsl.diagnostics import Span


@dataclass(frozen=True)
class Node:
    """Base of every syntax node."""

    span: Span  # where the node is in the source


# ---------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Expr(Node):
    """Base of expression nodes."""


@dataclass(frozen=True)
class Name(Expr):
    """A reference to a binding, param, const, source series or metric."""

    id: str  # the identifier as written


@dataclass(frozen=True)
class Literal(Expr):
    """A literal as written: number, quantity with unit suffix, amount, date, string, bool or na."""

    kind: str  # "number", "quantity", "amount", "date", "string", "bool" or "na"
    text: str  # the token text, e.g. "2.5%", "100_000 USDT", "true"


@dataclass(frozen=True)
class Kwarg(Node):
    """A keyword argument `name=value` of a call."""

    name: str  # parameter name
    value: Expr  # argument expression


@dataclass(frozen=True)
class Call(Expr):
    """A function call `f(a, b, k=v)`."""

    func: str  # called name
    func_span: Span  # where the function name is
    args: tuple[Expr, ...]  # positional arguments
    kwargs: tuple[Kwarg, ...]  # keyword arguments in order


@dataclass(frozen=True)
class Field(Expr):
    """A struct field access `x.name`."""

    obj: Expr  # the struct-valued expression
    name: str  # field name
    name_span: Span  # where the field name is


@dataclass(frozen=True)
class Offset(Expr):
    """A history offset `x[n]`: the value n bars ago on x's clock."""

    obj: Expr  # the series
    index: Expr  # bars back; must be a fixed non-negative integer


@dataclass(frozen=True)
class BinOp(Expr):
    """Arithmetic `+ - * /`, comparison `< <= > >= == !=` or logic `and or`."""

    op: str  # operator text
    left: Expr  # left operand
    right: Expr  # right operand


@dataclass(frozen=True)
class Cross(Expr):
    """`a crosses above b` / `a crosses below b`."""

    direction: str  # "above" or "below"
    left: Expr  # the crossing series
    right: Expr  # the level or series crossed


@dataclass(frozen=True)
class Unary(Expr):
    """Negation `-x` or logical `not x`."""

    op: str  # "-" or "not"
    operand: Expr  # the operand


@dataclass(frozen=True)
class IfElse(Expr):
    """`a if cond else b`."""

    cond: Expr  # condition
    then: Expr  # value when cond holds
    other: Expr  # value otherwise


# ---------------------------------------------------------------- statements


@dataclass(frozen=True)
class Stmt(Node):
    """Base of statements; `keyword` names the statement for placement messages."""

    @property
    def keyword(self) -> str:
        """The word a user would use to name this statement in a message."""
        return type(self).__name__.lower()


@dataclass(frozen=True)
class Version(Stmt):
    """`strat N`: the language version of the file."""

    number: str  # version as written

    @property
    def keyword(self) -> str:
        """The version line is named by its keyword."""
        return "strat"


@dataclass(frozen=True)
class Use(Stmt):
    """`use "path"`: import another file's definitions."""

    path: str  # the path without quotes


@dataclass(frozen=True)
class Const(Stmt):
    """`const NAME = expr`."""

    name: str  # constant name
    name_span: Span  # where the name is
    value: Expr  # its (const) expression


@dataclass(frozen=True)
class Def(Stmt):
    """`def f(a, b) = expr`: a pure function, inlined at each call."""

    name: str  # function name
    name_span: Span  # where the name is
    params: tuple[str, ...]  # parameter names
    body: Expr  # the body expression


@dataclass(frozen=True)
class Domain(Node):
    """A param domain: `in lo..hi [step s]` or `in {a, b, c}`."""

    low: Expr | None  # range start (None for a set)
    high: Expr | None  # range end, inclusive (None for a set)
    step: Expr | None  # grid step of a range, if any
    items: tuple[Expr, ...]  # members of a set domain (empty for a range)


@dataclass(frozen=True)
class Param(Stmt):
    """`param NAME = default [domain]`."""

    name: str  # param name
    name_span: Span  # where the name is
    default: Expr  # default value
    domain: Domain | None  # the optimizer's search space


@dataclass(frozen=True)
class Constraint(Stmt):
    """`constraint expr` over params."""

    expr: Expr  # a bool expression over params


@dataclass(frozen=True)
class Binding(Stmt):
    """`name = expr`: a named series."""

    name: str  # binding name
    name_span: Span  # where the name is
    value: Expr  # its expression


@dataclass(frozen=True)
class Setting(Stmt):
    """`key: expr`: an option of the enclosing block."""

    name: str  # setting key
    name_span: Span  # where the key is
    value: Expr  # its value


@dataclass(frozen=True)
class Rule(Stmt):
    """`entry long when C`, `exit short when C`."""

    kind: str  # "entry" or "exit"
    side: str  # "long" or "short"
    cond: Expr  # the condition

    @property
    def keyword(self) -> str:
        """Entry and exit rules are named by their kind."""
        return self.kind


@dataclass(frozen=True)
class Alert(Stmt):
    """`alert "message" when C`."""

    message: str  # alert text without quotes
    cond: Expr  # the condition


@dataclass(frozen=True)
class Sleeve(Stmt):
    """`sleeve NAME = template(overrides) weight W`."""

    name: str  # sleeve name
    name_span: Span  # where the name is
    call: Call  # template name and overrides
    weight: Expr | None  # share of equity, None when not written


@dataclass(frozen=True)
class RiskAction(Stmt):
    """`halt when C`, `pause D when C`, `flatten when C` or `cap METRIC at LIMIT`."""

    action: str  # "halt", "pause", "flatten" or "cap"
    cond: Expr | None  # the trigger (None for cap)
    duration: Expr | None  # pause length (pause only)
    metric: str | None  # capped metric (cap only)
    metric_span: Span | None  # where the capped metric is
    limit: Expr | None  # cap limit (cap only)

    @property
    def keyword(self) -> str:
        """Risk rules are named by their action."""
        return self.action


@dataclass(frozen=True)
class RiskRef(Stmt):
    """`risk: profile` or `risk per sleeve: profile`: apply a reusable risk profile."""

    per_sleeve: bool  # whether the profile applies to each sleeve
    name: str  # profile name
    name_span: Span  # where the name is

    @property
    def keyword(self) -> str:
        """The statement as written, `risk: NAME` or `risk per sleeve: NAME`."""
        return f"risk{' per sleeve' if self.per_sleeve else ''}: {self.name}"


@dataclass(frozen=True)
class Block(Stmt):
    """A block statement: strategy, portfolio, optimize, risk profile, risk block or setting block."""

    kind: str  # "strategy", "portfolio", "optimize", "risk_profile", "risk", "risk_sleeve" or "setting"
    name: str  # the block's name (setting key for setting blocks, "" for risk blocks)
    name_span: Span  # where the name (or keyword) is
    body: tuple[Stmt, ...]  # statements inside

    @property
    def keyword(self) -> str:
        """Readable kind for messages."""
        return {"risk_profile": "risk", "risk_sleeve": "risk per sleeve", "setting": self.name}.get(
            self.kind, self.kind
        )


@dataclass(frozen=True)
class ErrorStmt(Stmt):
    """A placeholder for source the parser could not read; the checker skips it and what it holds."""

    body: tuple[Stmt, ...]  # statements of an indented body that followed the broken line


@dataclass(frozen=True)
class Module:
    """A parsed file."""

    path: str  # file path as given
    stmts: tuple[Stmt, ...]  # top-level statements
    unread: bool = False  # the parser gave up on the file (its diagnostics say why); nothing else to check
