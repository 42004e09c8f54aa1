"""Static types of the language: a unit (kind) and a qualifier (const < param < series).

Units make "close > 2%" a compile error: values carry what they measure. Plain number literals are
"adaptable": they may stand for a price, quantity or money amount (`close > 30000`, `3 * atr(14)`), never
for a percentage, duration or R multiple, whose literals always carry their suffix.

Two plain-number kinds say what a number is: a `ratio` (the quotient of two values of one unit, such as
`(close - entry) / entry`) is a fraction and compares with a percentage directly (`> 2%`); `points` (the
bounded oscillators rsi, stoch, adx, on a 0–100 scale) never does (`rsi > 75%` is an error, `rsi > 75` is
meant). Both are plain numbers everywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from dsl.builtins import STRUCTS


class Qual(IntEnum):
    """How often a value may change: fixed in the text, fixed per run, or every bar."""

    CONST = 0
    PARAM = 1
    SERIES = 2

    def label(self) -> str:
        """Lower-case name used in messages."""
        return self.name.lower()


# Kinds with a magnitude, usable in arithmetic.
NUMERIC = frozenset({"number", "ratio", "points", "price", "qty", "money", "percent", "bps", "R", "duration"})
# Plain numbers: a number, a ratio of like units (a fraction), points on an oscillator's 0–100 scale.
PLAIN = frozenset({"number", "ratio", "points"})
# Kinds a plain number literal may stand for.
ADAPTABLE = frozenset({"number", "ratio", "points", "price", "qty", "money"})


@dataclass(frozen=True)
class Type:
    """A static type: unit kind, qualifier, integrality, and the field kinds of a struct."""

    kind: str  # "number", "price", "bool", "macd", "sizing", ... (see README, Types)
    qual: Qual = Qual.CONST  # how often the value may change
    integer: bool = False  # a whole number (lengths, counts)
    adaptable: bool = False  # a bare number literal that may stand for a price, qty or money
    fields: tuple[tuple[str, str], ...] = ()  # for structs: (field, kind) pairs

    def __str__(self) -> str:
        """`series<price>`, `param<int>`, ..."""
        kind = "int" if self.integer and self.kind == "number" else self.kind
        return f"{self.qual.label()}<{kind}>" if self.qual == Qual.SERIES else kind

    def at(self, qual: Qual) -> Type:
        """The same type with another qualifier."""
        return Type(self.kind, qual, self.integer, self.adaptable, self.fields)


def struct(kind: str, qual: Qual, source_kind: str = "price") -> Type:
    """The type of a struct-valued built-in result; "@" fields take the source's kind."""
    fields = tuple((name, source_kind if k == "@" else k) for name, k in STRUCTS[kind])
    return Type(kind, qual, fields=fields)


def join_qual(*types: Type) -> Qual:
    """The qualifier of a value computed from `types`: the most variable of them."""
    return max((t.qual for t in types), default=Qual.CONST)


def unify(a: Type, b: Type, *, compare: bool = False) -> str | None:
    """The common kind of two operands of + - (or of a comparison), or None when their units differ."""
    if a.kind == "na" or b.kind == "na":
        return b.kind if a.kind == "na" else a.kind
    if a.kind == b.kind:
        return a.kind
    if a.adaptable and b.kind in ADAPTABLE:
        return b.kind
    if b.adaptable and a.kind in ADAPTABLE:
        return a.kind
    pair = {a.kind, b.kind}
    # A ratio is a fraction: it meets a percentage as one (`(close - entry) / entry > 2%`, `r + 1%`).
    if pair == {"ratio", "percent"}:
        return "ratio"
    # "1 + 2%" means 1.02: a percentage joins a plain number as a fraction. Not in a comparison:
    # `x > 75%` would silently compare with 0.75; and never points (`rsi + 5%` has no meaning).
    if pair == {"number", "percent"} and not compare:
        return "number"
    # Plain numbers of different kinds mix as plain numbers (`rsi > threshold`, `a / b + roc`), except a
    # fraction with a 0–100 scale.
    if pair <= PLAIN and pair != {"ratio", "points"}:
        return "points" if "points" in pair else "number"
    return None


def multiply(a: str, b: str) -> str | None:
    """The kind of a × b, or None when the product has no meaning here (price × price)."""
    if a in PLAIN and b in PLAIN:
        # Scaling keeps a 0–100 scale (`2 * rsi`) but not a fraction (`100 * ratio` is a number).
        return a if a == b else "points" if "points" in (a, b) else "number"
    if a in PLAIN:
        return b
    if b in PLAIN:
        return a
    pair = {a, b}
    if "percent" in pair or "bps" in pair:
        # A percentage (or bps) of something is that something.
        other = (pair - {"percent", "bps"}) or {"percent"}
        return other.pop() if len(pair) == 2 else a
    if pair == {"price", "qty"}:
        return "money"
    if pair == {"R", "price"}:
        return "price"
    return None


def divide(a: str, b: str) -> str | None:
    """The kind of a / b, or None when the ratio has no meaning here."""
    if a == b:
        # Like units divide into a fraction: price / price, qty / qty, number / number.
        return "ratio"
    if b in PLAIN or b == "percent":
        return a
    if a == "money" and b == "price":
        return "qty"
    if a == "money" and b == "qty":
        return "price"
    return None
