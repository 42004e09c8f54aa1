"""The parser's fast path: a tokenizer and an LALR driver that build syntax nodes directly from lark's tables.

lark's own parse of a valid file costs a generic lexer, a parse tree with position metadata and a second
pass to turn that tree into `dsl.syntax` nodes. Here the same terminals (lark's compiled scanner and keyword
table), the same indentation and bracket rules (those of `dsl.parser`'s indenter) and the same LALR tables
drive one loop whose reductions build the nodes at once. Spans follow lark's position propagation: a node
spans its rule's first to last symbol, keywords and newlines included.

Only valid text is handled: any lexical, indentation or grammar error raises `ParseFailed`, and the caller
parses again with lark, whose exceptions carry everything the diagnostics need.

`tables` reads lark's internals (the basic lexer's compiled scanner, its ignored terminals, the LALR parse
table with its Shift/Reduce actions, the rules) as of lark 1.3, the minor version pinned in pyproject.toml.
tests/dsl/test_lark_internals.py touches each of them and names the one that moved; a lark whose internals
differ also makes this module fail at the first parse, never silently.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from lark import Lark
from lark.parsers.lalr_analysis import Shift

from dsl import syntax as s
from dsl.diagnostics import Span

# Placeholder statements substituted for lines that failed to parse; the checker skips them.
ERROR_NAME = "__error__"
# Opening bracket terminal → its closing terminal.
BRACKETS = {"LPAR": "RPAR", "LSQB": "RSQB", "LBRACE": "RBRACE"}
# Runs of spaces inside an amount ("100   USDT") are shown as one.
_SPACES = re.compile(r"\s+")
# Binding strength of the chain's binary operators (higher binds tighter) and of the `not` prefix.
_PRECEDENCE = {"OR": 1, "AND": 2, "COMP_OP": 4, "CROSSES": 4, "ADD_OP": 5, "MUL_OP": 6}
_NOT_PRECEDENCE = 3
# A prefix minus binds tighter than any binary operator.
_NEG_PRECEDENCE = 7

# One stack entry: a token (its text) or a reduced value, then the 1-based start line and column and the end
# line and exclusive end column of the text it covers (tokens carry their terminal name as a 6th item).
Item = tuple[Any, ...]
# Builds a rule's value from the entries of its symbols.
Builder = Callable[[Sequence[Item]], Any]


class ParseFailed(Exception):
    """The text is not valid here; the caller re-parses it with lark to report why."""


class Op(NamedTuple):
    """A prefix or binary operator of an operator chain."""

    type: str  # terminal name: NOT, ADD_OP, MUL_OP, COMP_OP, AND, OR or CROSSES
    text: str  # the operator as written
    span: Span  # where it is
    direction: str | None  # for CROSSES: "above" or "below"


@dataclass(frozen=True)
class Tables:
    """Everything the fast path needs, derived once from a lark LALR parser."""

    scanner: re.Pattern[str]  # skipped spaces, then lark's master regex (a named group per terminal) if any
    keywords: dict[str, str]  # keyword text → its terminal (a NAME match that is a keyword)
    actions: tuple[dict[str, int], ...]  # per state: terminal → next state (>= 0) or ~rule index (reduce)
    gotos: tuple[dict[str, int], ...]  # per state: rule name → state after reducing to it
    rules: tuple[tuple[int, str, Builder | None], ...]  # per rule: symbol count, rule name, builder
    start: int  # initial state
    end: int  # state reached once the whole file has been reduced


def tables(lark: Lark) -> Tables:
    """Read the scanner, keywords and LALR tables out of `lark` and attach a builder to each rule."""
    lexer = lark.parser.lexer.lexer  # type: ignore[attr-defined]
    scanners = lexer.scanner._mres
    if len(scanners) != 1:
        raise RuntimeError("lark split its scanner; the fast parser expects one master regex")
    name = re.compile(next(t.pattern.to_regexp() for t in lark.terminals if t.name == "NAME"))
    keywords = {
        t.pattern.value: t.name
        for t in lark.terminals
        if t.pattern.type == "str" and name.fullmatch(t.pattern.value)
    }
    ignored = [t.pattern.to_regexp() for t in lark.terminals if t.name in lexer.ignore_types]
    table = lark.parser.parser.parser.parse_table  # type: ignore[attr-defined]
    index = {rule: i for i, rule in enumerate(lark.rules)}
    actions: list[dict[str, int]] = []
    gotos: list[dict[str, int]] = []
    for state in range(len(table.states)):
        act, goto = {}, {}
        for symbol, (action, arg) in table.states[state].items():
            if action is not Shift:
                act[symbol] = ~index[arg]
            elif symbol.isupper():
                act[symbol] = arg
            else:
                goto[symbol] = arg
        actions.append(act)
        gotos.append(goto)
    rules = tuple(
        (len(r.expansion), r.origin.name, _builder(r.alias or r.origin.name, [x.name for x in r.expansion]))
        for r in lark.rules
    )
    return Tables(
        # No terminal starts with a space, so skipping the ignored ones first is what lark's alternation does.
        re.compile(f"(?:{'|'.join(ignored)})*(?:{scanners[0].pattern})?"),
        keywords,
        tuple(actions),
        tuple(gotos),
        rules,
        table.start_states["start"],
        table.end_states["start"],
    )


def parse(text: str, t: Tables) -> list[s.Stmt]:
    """The module's statements, or `ParseFailed` at the first error of any kind."""
    actions, gotos, rules, end = t.actions, t.gotos, t.rules, t.end
    state = t.start  # the state on top of `states`
    states = [state]
    values: list[Item] = []
    tokens = tokenize(text, t)
    tokens.append(("", 0, 0, 0, 0, "$END"))
    for token in tokens:
        kind = token[5]
        act = actions[state].get(kind)
        # Reduce while the table says so, then shift the token.
        while act is not None and act < 0:
            size, origin, build = rules[~act]
            if build is None:
                # A rule that only passes its one symbol on: the entry stays, only the state changes.
                state = states[-1] = gotos[states[-2]][origin]
            else:
                if size:
                    items = values[-size:]
                    del values[-size:]
                    del states[-size:]
                    values.append((build(items), items[0][1], items[0][2], items[-1][3], items[-1][4]))
                else:
                    values.append(([], 1, 1, 1, 1))
                state = gotos[states[-1]][origin]
                states.append(state)
                if state == end:
                    # Only the whole file reduces to the end state (with the end-of-text token ahead).
                    return values[-1][0]  # type: ignore[no-any-return]
            act = actions[state].get(kind)
        if act is None:
            raise ParseFailed
        state = act
        states.append(state)
        values.append(token)
    raise ParseFailed  # unreachable: lark's tables accept only at the end of the text


def tokenize(text: str, t: Tables) -> list[Item]:
    """The tokens lark and `dsl.parser`'s indenter give for `text`: newlines, indents, dedents included."""
    match, keywords = t.scanner.match, t.keywords
    out: list[Item] = []
    append = out.append
    indents = [0]  # indentation of the enclosing blocks, innermost last
    brackets: list[str] = []  # closing terminals of the brackets still open, innermost last
    last: Item | None = None  # the last token read (dedents at the end of the text borrow its position)
    pos, line, line_start, size = 0, 1, 0, len(text)
    while pos < size:
        m = match(text, pos)  # matches, possibly nothing (the pattern accepts the empty string)
        if m is None:
            raise ParseFailed
        kind, end = m.lastgroup, m.end()
        if kind is None:
            # Only spaces (or nothing: a character no terminal accepts).
            if end == pos:
                raise ParseFailed
            pos = end
            continue
        value = m.group(kind)
        col = m.start(kind) - line_start + 1
        pos = end
        if kind != "_NL":
            kind = keywords.get(value, kind) if kind == "NAME" else kind
            last = (value, line, col, line, col + len(value), kind)
            # Brackets must pair up; newlines inside them do not end the statement.
            if kind in BRACKETS:
                brackets.append(BRACKETS[kind])
            elif kind in ("RPAR", "RSQB", "RBRACE") and (not brackets or brackets.pop() != kind):
                raise ParseFailed
            append(last)
            continue
        # A newline (with blank and comment lines): track the position, then indent or dedent.
        newlines = value.count("\n")
        if newlines:
            line += newlines
            line_start = end - (len(value) - value.rindex("\n") - 1)
        last = (value, line - newlines, col, line, end - line_start + 1, "_NL")
        if brackets:
            continue
        append(last)
        indent = len(value) - value.rindex("\n") - 1 if newlines else len(value)
        if indent > indents[-1]:
            indents.append(indent)
            append(("", *last[1:5], "_INDENT"))
            continue
        while indent < indents[-1]:
            indents.pop()
            append(("", *last[1:5], "_DEDENT"))
        if indent != indents[-1]:
            raise ParseFailed
    # Close every block still open at the end of the text.
    for _ in indents[1:]:
        append(("", *last[1:5], "_DEDENT") if last else ("", 1, 1, 1, 1, "_DEDENT"))
    return out


# ---------------------------------------------------------------- rule builders


def _span(item: Item) -> Span:
    """The span an entry covers."""
    return Span(item[1], item[2], item[3], item[4])


def _whole(items: Sequence[Item]) -> Span:
    """The span of a rule: from its first symbol's start to its last symbol's end."""
    return Span(items[0][1], items[0][2], items[-1][3], items[-1][4])


def _join(first: Span, last: Span) -> Span:
    """The span from the start of `first` to the end of `last`."""
    return Span(first.line, first.col, last.end_line, last.end_col)


class _Fold:
    """Precedence climbing over a flat operator chain (a class, not closures: no reference cycle to free)."""

    def __init__(self, items: list[Any]) -> None:
        """Take the chain: syntax operands and `Op`s."""
        self.items = items  # the chain as parsed
        self.pos = 0  # index of the next item to read

    def climb(self, min_prec: int) -> s.Expr:
        """Read one operand with its prefixes, then every operator binding at least `min_prec`."""
        left = self.prefixed()
        items = self.items
        while self.pos < len(items):
            op = items[self.pos]
            prec = _PRECEDENCE[op.type]
            if prec < min_prec:
                break
            self.pos += 1
            right = self.climb(prec + 1)
            if op.type == "CROSSES":
                left = s.Cross(_join(left.span, right.span), op.direction, left, right)
            else:
                left = s.BinOp(_join(left.span, right.span), op.text, left, right)
        return left

    def prefixed(self) -> s.Expr:
        """An operand, or `not` / `-` / `+` applied to what follows at the prefix's strength."""
        item = self.items[self.pos]
        self.pos += 1
        if not isinstance(item, Op):
            return item  # type: ignore[no-any-return]
        operand = self.climb(_NOT_PRECEDENCE if item.type == "NOT" else _NEG_PRECEDENCE)
        if item.text == "+":
            return operand
        return s.Unary(_join(item.span, operand.span), "not" if item.type == "NOT" else "-", operand)


def _block(items: Sequence[Item], kind: str, name: Item | None) -> s.Stmt:
    """A block statement of `kind`; an error placeholder block becomes an ErrorStmt."""
    span, body = _whole(items), items[-1][0]
    if name is not None and name[0] == ERROR_NAME:
        return s.ErrorStmt(span, body)
    # A nameless block (`risk:`) points at its keyword.
    name_span = _span(name) if name is not None else Span(span.line, span.col, span.line, span.col + 4)
    return s.Block(span, kind, name[0] if name is not None else "", name_span, body)


def _call(items: Sequence[Item]) -> s.Call:
    """`f(args)`; positional and keyword arguments keep their order of kind."""
    rest = [items[2][0], *items[3][0]] if len(items) == 5 else [items[2][0]] if len(items) == 4 else []
    args = tuple(a for a in rest if not isinstance(a, s.Kwarg))
    kwargs = tuple(a for a in rest if isinstance(a, s.Kwarg))
    return s.Call(_whole(items), items[0][0], _span(items[0]), args, kwargs)


def _def(items: Sequence[Item]) -> s.Def:
    """`def f(a, b) = expr`."""
    params = (items[3][0], *items[4][0]) if len(items) == 8 else (items[3][0],) if len(items) == 7 else ()
    return s.Def(_whole(items), items[1][0], _span(items[1]), params, items[-1][0])


def _literal(kind: str, text: Callable[[str], str] = str) -> Builder:
    """A builder of a literal of `kind` from one token, its text passed through `text`."""
    return lambda i: s.Literal(_span(i[0]), kind, text(i[0][0]))


def _list(first: int | None, *more: int) -> Builder:
    """A builder of a repeated rule: the list so far (at `first`, None to start one) and the new items.

    Nested repetitions (the prefixes inside an operator chain) are spliced in, as lark inlines them.
    """

    def extend(i: Sequence[Item]) -> list[Any]:
        """Append the new items to the list built so far."""
        values: list[Any] = i[first][0] if first is not None else []
        for x in more:
            value = i[x][0]
            if isinstance(value, list):
                values.extend(value)
            else:
                values.append(value)
        return values

    return extend


def _opt(items: Sequence[Item], index: int) -> Any:
    """The value at `index`, or None when the optional part was left out."""
    return items[index][0] if len(items) > index else None


def _chain(i: Sequence[Item]) -> s.Expr:
    """`?chain`: one postfix passes through, prefixes and operators are folded."""
    flat: list[Any] = []
    for item in i:
        if isinstance(item[0], list):
            flat.extend(item[0])
        else:
            flat.append(item[0])
    return _Fold(flat).climb(0)


def _op(i: Sequence[Item]) -> Op:
    """A prefix or binary operator token (CROSSES with its direction)."""
    return Op(i[0][5], i[0][0], _span(i[0]), i[1][0] if len(i) > 1 else None)


def _risk_action(kind: str, cond: int | None, duration: int | None, metric: bool = False) -> Builder:
    """A builder of a risk action statement with its condition, duration or capped metric at given indices."""

    def build(i: Sequence[Item]) -> s.RiskAction:
        """The risk action."""
        return s.RiskAction(
            _whole(i),
            kind,
            i[cond][0] if cond is not None else None,
            i[duration][0] if duration is not None else None,
            i[1][0] if metric else None,
            _span(i[1]) if metric else None,
            i[3][0] if metric else None,
        )

    return build


# Builders by rule (alias or rule name); None passes the rule's only symbol on unchanged.
_BUILDERS: dict[str, Builder | None] = {
    "name": lambda i: s.Name(_span(i[0]), i[0][0]),
    "number": _literal("number"),
    "quantity": _literal("quantity"),
    "amount": _literal("amount", lambda t: _SPACES.sub(" ", t)),
    "date": _literal("date"),
    "string": _literal("string", lambda t: t[1:-1]),
    "true": _literal("bool"),
    "false": _literal("bool"),
    "na": _literal("na"),
    "call": _call,
    "kwarg": lambda i: s.Kwarg(_join(_span(i[0]), i[2][0].span), i[0][0], i[2][0]),
    "field": lambda i: s.Field(_whole(i), i[0][0], i[2][0], _span(i[2])),
    "offset": lambda i: s.Offset(_whole(i), i[0][0], i[2][0]),
    "chain": _chain,
    "if_else": lambda i: s.IfElse(_join(i[0][0].span, i[4][0].span), i[2][0], i[0][0], i[4][0]),
    "_prefix": _op,
    "_binop": _op,
    "long": lambda i: "long",
    "short": lambda i: "short",
    "above": lambda i: "above",
    "below": lambda i: "below",
    "version": lambda i: s.Version(_whole(i), i[1][0]),
    "use": lambda i: s.Use(_whole(i), i[1][0][1:-1]),
    "const": lambda i: s.Const(_whole(i), i[1][0], _span(i[1]), i[3][0]),
    "def": _def,
    "param": lambda i: s.Param(_whole(i), i[1][0], _span(i[1]), i[3][0], _opt(i, 4)),
    "range_domain": lambda i: s.Domain(_whole(i), i[1][0], i[3][0], _opt(i, 5), ()),
    "set_domain": lambda i: s.Domain(
        _whole(i), None, None, None, (i[2][0], *i[3][0]) if len(i) == 5 else (i[2][0],)
    ),
    "constraint": lambda i: s.Constraint(_whole(i), i[1][0]),
    "binding": lambda i: s.Binding(_whole(i), i[0][0], _span(i[0]), i[2][0]),
    "setting": lambda i: s.Setting(_whole(i), i[0][0], _span(i[0]), i[2][0]),
    "entry": lambda i: s.Rule(_whole(i), "entry", i[1][0], i[3][0]),
    "exit": lambda i: s.Rule(_whole(i), "exit", i[1][0], i[3][0]),
    "alert": lambda i: s.Alert(_whole(i), i[1][0][1:-1], i[3][0]),
    "sleeve": lambda i: s.Sleeve(_whole(i), i[1][0], _span(i[1]), i[3][0], _opt(i, 5)),
    "halt": _risk_action("halt", 2, None),
    "flatten": _risk_action("flatten", 2, None),
    "pause": _risk_action("pause", 3, 1),
    "cap": _risk_action("cap", None, None, metric=True),
    "risk_ref": lambda i: s.RiskRef(_whole(i), len(i) == 4, i[-1][0], _span(i[-1])),
    "block": lambda i: tuple(i[2][0]),
    "strategy": lambda i: _block(i, "strategy", i[1]),
    "portfolio": lambda i: _block(i, "portfolio", i[1]),
    "optimize": lambda i: _block(i, "optimize", i[1]),
    "risk_profile": lambda i: _block(i, "risk_profile", i[1]),
    "risk_block": lambda i: _block(i, "risk_sleeve" if len(i) == 4 else "risk", None),
    "setting_block": lambda i: _block(i, "setting", i[0]),
}


def _builder(rule: str, expansion: list[str]) -> Builder | None:
    """The builder of one grammar rule, given its name (or alias) and its symbols."""
    size = len(expansion)
    if rule == "start":
        # `_NL? stmt*`: the statements, if any.
        return (lambda i: i[-1][0]) if size and expansion[-1] != "_NL" else (lambda i: [])
    if rule in ("stmt", "simple_stmt", "expr", "arg", "postfix", "kwname") or (rule == "chain" and size == 1):
        if size == 1:
            return None
        # `(expr)` and `stmt _NL`: the inner value, spanning the brackets or the newline.
        inner = 1 if expansion[0] == "LPAR" else 0
        return lambda i: i[inner][0]
    if rule.startswith("__"):
        # Repetitions (`x*`, `("," x)*`): the symbols that carry a value, appended to the list so far.
        keep = [n for n, x in enumerate(expansion) if not x.isupper() or x == "NAME"]
        return _list(0, *keep[1:]) if expansion[0] == rule else _list(None, *keep)
    return _BUILDERS[rule]
