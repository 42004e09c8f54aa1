"""The private parts of lark and pydantic the language reads, as of the versions pinned in pyproject.toml.

`dsl.lalr` drives its own loop with lark's compiled scanner and LALR table, `dsl.parser`'s indenter
overrides lark's private `_process`, and `dsl.ir.Expr.make` builds pydantic models the way
`model_construct` does, without it. None of that is public API: a new lark or pydantic may move it. Each
test here touches one such internal and fails with a message naming it and the pinned version, so an
upgrade says what to port instead of failing somewhere in a parse.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import lark
import pydantic
import pytest
from lark import Lark, Token
from lark.indenter import Indenter
from lark.parsers.lalr_analysis import Shift

from dsl import lalr
from dsl.ir import Expr
from dsl.parser import _parser, _StratIndenter, grammar

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def pinned(package: str) -> str:
    """The requirement of `package` in pyproject.toml's [project] dependencies, e.g. "lark[...]>=1.3,<1.4"."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (spec,) = [d for d in project["dependencies"] if re.match(rf"{package}\b", d)]
    return str(spec)


def moved(package: str, internal: str, reader: str, detail: str) -> str:
    """The failure message: which internal moved, who reads it, the pin and the installed version."""
    installed = {"lark": lark.__version__, "pydantic": pydantic.VERSION}[package]
    return (
        f"{package} internal `{internal}` moved or changed ({detail}); {reader} reads it. Tested with "
        f"{pinned(package)} (pyproject.toml); installed {package} {installed}. Port {reader} before "
        f"widening the pin."
    )


def reach(package: str, internal: str, read: Callable[[], T], reader: str) -> T:
    """Read one internal, failing loudly (naming it and the pin) when it is not there any more."""
    try:
        return read()
    except Exception as error:  # any failure to reach it means it moved
        pytest.fail(moved(package, internal, reader, repr(error)), pytrace=False)


def lark_internal(internal: str, read: Callable[[], T], reader: str = "dsl/lalr.py") -> T:
    """Read one lark internal (see `reach`)."""
    return reach("lark", internal, read, reader)


def expect(ok: bool, package: str, internal: str, detail: str, reader: str = "dsl/lalr.py") -> None:
    """Fail loudly, naming the internal and the pin, unless `ok`."""
    if not ok:
        pytest.fail(moved(package, internal, reader, detail), pytrace=False)


@pytest.fixture(scope="module")
def parser() -> Lark:
    """The language's lark parser (built with cache=True, as `dsl.parser` uses it)."""
    return _parser().lark


def test_pins_are_minor_version_ranges_holding_the_installed_versions() -> None:
    assert re.fullmatch(r"lark\[interegular\]>=1\.3\.1,<1\.4", pinned("lark"))
    assert re.fullmatch(r"pydantic>=2\.14\.4,<2\.15", pinned("pydantic"))
    expect(lark.__version__.startswith("1.3."), "lark", "__version__", f"lark {lark.__version__} is not 1.3")
    expect(
        pydantic.VERSION.startswith("2.14."),
        "pydantic",
        "VERSION",
        f"{pydantic.VERSION} is not 2.14",
        "dsl/ir.py",
    )


def test_basic_lexer_behind_the_post_lexer(parser: Lark) -> None:
    lexer = lark_internal("Lark.parser.lexer.lexer", lambda: parser.parser.lexer.lexer)  # type: ignore[attr-defined]
    expect(
        type(lexer).__name__ == "BasicLexer",
        "lark",
        "Lark.parser.lexer.lexer",
        f"is a {type(lexer).__name__}",
    )
    ignore = lark_internal("BasicLexer.ignore_types", lambda: lexer.ignore_types)
    expect(
        all(isinstance(name, str) for name in ignore) and len(ignore) == 1,
        "lark",
        "BasicLexer.ignore_types",
        f"{ignore!r} is not the one ignored terminal's name",
    )


def test_scanner_is_one_master_regex_with_a_group_per_terminal(parser: Lark) -> None:
    lexer = parser.parser.lexer.lexer  # type: ignore[attr-defined]
    mres = lark_internal("BasicLexer.scanner._mres", lambda: lexer.scanner._mres)
    expect(
        isinstance(mres, list) and len(mres) == 1 and isinstance(mres[0], re.Pattern),
        "lark",
        "Scanner._mres",
        f"{type(mres).__name__} of {[type(m).__name__ for m in mres]}, not a list of one compiled re.Pattern",
    )
    groups = set(mres[0].groupindex)
    names = {t.name for t in parser.terminals}
    expect(
        groups <= names and {"NAME", "_NL", *lexer.ignore_types} <= groups,
        "lark",
        "Scanner._mres[0].groupindex",
        f"named groups {sorted(groups)} are not terminal names",
    )


def test_terminal_definitions(parser: Lark) -> None:
    terminals = lark_internal("Lark.terminals", lambda: parser.terminals)
    kinds = {t.pattern.type for t in terminals}
    expect(kinds == {"str", "re"}, "lark", "TerminalDef.pattern.type", f"pattern types {sorted(kinds)}")
    by_name = {t.name: t for t in terminals}
    name = lark_internal("TerminalDef.pattern.to_regexp()", lambda: by_name["NAME"].pattern.to_regexp())
    expect(re.fullmatch(name, "close") is not None, "lark", "PatternRE.to_regexp()", f"NAME is {name!r}")
    keyword = next(t for t in terminals if t.pattern.type == "str" and t.pattern.value == "strategy")
    expect(
        keyword.pattern.to_regexp() == "strategy" and keyword.name.isupper(),
        "lark",
        "PatternStr.value",
        f"the 'strategy' keyword is terminal {keyword.name!r} with pattern {keyword.pattern!r}",
    )


def test_lalr_parse_table_layout(parser: Lark) -> None:
    table = lark_internal(
        "Lark.parser.parser.parser.parse_table",
        lambda: parser.parser.parser.parser.parse_table,  # type: ignore[attr-defined]
    )
    states = lark_internal("ParseTable.states", lambda: table.states)
    expect(
        isinstance(states, dict) and sorted(states) == list(range(len(states))),
        "lark",
        "IntParseTable.states",
        "states are not keyed 0..n-1",
    )
    start = lark_internal("ParseTable.start_states['start']", lambda: table.start_states["start"])
    end = lark_internal("ParseTable.end_states['start']", lambda: table.end_states["start"])
    expect(start in states and end in states, "lark", "ParseTable.start_states/end_states", f"{start}, {end}")
    rules = set(map(id, parser.rules))
    for state in states.values():
        for symbol, entry in state.items():
            expect(
                isinstance(symbol, str) and isinstance(entry, tuple) and len(entry) == 2,
                "lark",
                "ParseTable.states[state][symbol]",
                f"{symbol!r}: {entry!r} is not an (action, argument) pair",
            )
            action, arg = entry
            if action is Shift:
                # A shift on a terminal (upper case) or a goto after reducing to a rule (lower case).
                expect(isinstance(arg, int) and arg in states, "lark", "Shift", f"shift to {arg!r}")
            else:
                expect(
                    action.name == "Reduce" and id(arg) in rules,
                    "lark",
                    "Reduce",
                    f"{action!r} with {arg!r} is neither a Shift nor a Reduce of one of Lark.rules",
                )


def test_rules(parser: Lark) -> None:
    rules = lark_internal("Lark.rules", lambda: parser.rules)
    start = [r for r in rules if r.origin.name == "start"]
    expect(len(start) >= 1, "lark", "Rule.origin.name", "no rule has the origin 'start'")
    for rule in rules:
        expect(
            isinstance(rule.expansion, list | tuple)
            and all(isinstance(x.name, str) for x in rule.expansion)
            and (rule.alias is None or isinstance(rule.alias, str)),
            "lark",
            "Rule.expansion / Rule.alias",
            f"rule {rule!r}",
        )
        # Terminals are upper case and rules lower case: `dsl.lalr` tells shifts from gotos by the case.
        expect(
            all(x.name.isupper() == x.is_term for x in rule.expansion),
            "lark",
            "Symbol.is_term",
            f"a symbol of {rule!r} has a name whose case does not say whether it is a terminal",
        )


def test_cached_and_fresh_parsers_drive_the_fast_path_alike(parser: Lark) -> None:
    """Lark's cache (a pickled parser) and a fresh build give tables that read a spec to the same nodes."""
    text = (ROOT / "specs" / "portfolio.strat").read_text(encoding="utf-8")
    cached, fresh = lalr.tables(parser), lalr.tables(grammar())
    assert lalr.parse(text, cached) == lalr.parse(text, fresh)
    assert len(lalr.parse(text, cached)) > 3


def test_indenter_process_delegates_to_the_private_process() -> None:
    """`dsl.parser._StratIndenter` overrides `Indenter._process` and reads `indent_level`."""
    reader = "dsl/parser.py (_StratIndenter)"
    expect(hasattr(Indenter, "_process"), "lark", "Indenter._process", "no such method", reader)
    seen: list[str] = []

    class Probe(_StratIndenter):
        """The language's indenter, recording the call of `_process`."""

        def _process(self, stream: Iterator[Token]) -> Iterator[Token]:
            """Record the call, then process as the language does."""
            seen.append("_process")
            return super()._process(stream)

    probe = Probe()
    tokens = list(probe.process(iter([Token("NAME", "x"), Token("_NL", "\n    "), Token("NAME", "y")])))
    expect(seen == ["_process"], "lark", "Indenter.process → self._process", "not called", reader)
    expect(
        lark_internal("Indenter.indent_level", lambda: probe.indent_level, reader) == [0],
        "lark",
        "Indenter.indent_level",
        f"{probe.indent_level!r} after closing every block",
        reader,
    )
    assert [t.type for t in tokens] == ["NAME", "_NL", "_INDENT", "NAME", "_DEDENT"]


# The instance slots pydantic's BaseModel has and `Expr.make` sets by hand (besides the field values).
PYDANTIC_SLOTS = ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")


def test_pydantic_model_slots_are_those_expr_make_sets() -> None:
    slots = reach("pydantic", "BaseModel.__slots__", lambda: pydantic.BaseModel.__slots__, "dsl/ir.py")
    expect(
        tuple(slots) == PYDANTIC_SLOTS,
        "pydantic",
        "BaseModel.__slots__",
        f"{slots!r}, not {PYDANTIC_SLOTS!r}",
        "dsl/ir.py (Expr.make)",
    )


def test_expr_make_builds_what_model_construct_and_validation_build() -> None:
    """A node from `Expr.make` is the model pydantic itself builds: same state, equality, hash, copy."""
    child = Expr.make("source", "close", kind="price", qual=2)
    made = Expr.make("call", "sma", (child, Expr.make("const", 3, integer=True)), kind="price", qual=2)
    fields = {name: getattr(made, name) for name in Expr.model_fields}
    constructed = Expr.model_construct(**fields)
    validated = Expr(**fields)
    reader = "dsl/ir.py (Expr.make)"
    for slot in PYDANTIC_SLOTS:
        for other in (constructed, validated):
            expect(
                getattr(made, slot) == getattr(other, slot),
                "pydantic",
                f"BaseModel.{slot}",
                f"Expr.make sets {getattr(made, slot)!r}, pydantic {getattr(other, slot)!r}",
                reader,
            )
    assert made == constructed == validated
    assert hash(made) == hash(validated)
    assert made.model_dump() == validated.model_dump()
    assert made.model_copy(update={"kind": "number"}).kind == "number"
    with pytest.raises(pydantic.ValidationError):
        made.kind = "number"  # type: ignore[misc]
