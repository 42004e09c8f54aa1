"""Property tests: no input, however malformed, produces an exception, and checking is deterministic.

Programs are generated from the grammar itself (`hypothesis.extra.lark.from_lark`) and by mutating the
valid specs of the repository (tokens and lines deleted, duplicated, swapped; random characters inserted;
truncation); a few hand-made extremes (binary garbage, huge and deeply nested input) complete the set.
"""

from __future__ import annotations

import random
import re

from dsl_helpers import ROOT, SPEC_PATH
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark

from dsl.checker import CheckResult, check_source
from dsl.lalr import ERROR_NAME
from dsl.parser import MAX_SYNTAX_ERRORS, grammar

# Every valid spec of the repository: the seeds of the mutation tests.
SEEDS = sorted(
    p.read_text(encoding="utf-8")
    for folder in ("library", "specs", "tests/dsl/examples")
    for p in (ROOT / folder).glob("*.strat")
)
# Hypothesis settings shared by the property tests: bounded, derandomized (reproducible in CI), quick.
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
# Printable ASCII: the generated names, numbers and strings stay readable when a test fails.
_ASCII = st.characters(min_codepoint=32, max_codepoint=126)
# Markers standing for the indenter's tokens in generated text, turned into real indentation by `_layout`.
_INDENT, _DEDENT = "\x01", "\x02"


def _grammar_programs() -> st.SearchStrategy[str]:
    """Programs from the grammar: every terminal padded by spaces, indentation rebuilt from the markers."""
    lark = grammar()
    explicit: dict[str, st.SearchStrategy[str]] = {
        "_INDENT": st.just(_INDENT),
        "_DEDENT": st.just(_DEDENT),
        "_NL": st.sampled_from(["\n", "  # a comment\n"]),
    }
    for term in lark.terminals:
        if not term.name.startswith("__") and term.name not in explicit:
            pattern = st.from_regex(term.pattern.to_regexp(), fullmatch=True, alphabet=_ASCII)
            explicit[term.name] = pattern.map(lambda text: f" {text} ")
    return from_lark(lark, start="start", explicit=explicit).map(_layout)


def _layout(raw: str) -> str:
    """Turn indent/dedent markers at the start of each line into four spaces per level."""
    out, depth = [], 0
    for line in raw.split("\n"):
        head = len(line) - len(line.lstrip(f" {_INDENT}{_DEDENT}"))
        depth = max(depth + line[:head].count(_INDENT) - line[:head].count(_DEDENT), 0)
        body = line[head:].replace(_INDENT, "").replace(_DEDENT, "").strip()
        out.append("    " * depth + body if body else "")
    return "\n".join(out)


def _outcome(text: str) -> CheckResult:
    """Check `text` and assert the contract: an IR exactly when there is no error, else diagnostics."""
    result = check_source(text, SPEC_PATH)
    if result.ok:
        assert result.program is not None
    else:
        assert result.program is None
        assert all(d.line >= 1 and d.col >= 1 and d.message for d in result.diagnostics)
        assert result.render()  # rendering never fails either
        _no_false_diagnostic(text, result)
    return result


def _no_false_diagnostic(text: str, result: CheckResult) -> None:
    """No diagnostic is an artefact of error recovery.

    Neither the placeholder's name, nor an invented missing version, nor a give-up on a small file.
    """
    for d in result.diagnostics:
        assert ERROR_NAME not in f"{d.message} {d.hint or ''}", d
        assert not (
            d.code == "E004" and d.message == "missing language version" and text.startswith("strat 1\n")
        ), d
        assert "syntax errors; stopped reading" not in d.message or text.count("\n") > MAX_SYNTAX_ERRORS, d


def _same_twice(text: str) -> None:
    """Two checks of one text give the same diagnostics in the same order, and the same IR."""
    first, second = _outcome(text), _outcome(text)
    assert first.diagnostics == second.diagnostics
    assert (first.program and first.program.model_dump_json()) == (
        second.program and second.program.model_dump_json()
    )


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(_grammar_programs())
def test_programs_from_the_grammar_end_in_ir_or_diagnostics(text: str) -> None:
    """Whatever the grammar can produce, the checker answers without raising, deterministically."""
    _same_twice(text)


def test_the_grammar_generator_produces_parseable_programs() -> None:
    """The generator is useful: most of its programs get past the parser (no E001/E002/E003)."""
    parsed = []

    @settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(_grammar_programs())
    def collect(text: str) -> None:
        """Record whether the program parsed."""
        codes = {d.code for d in check_source(text, SPEC_PATH).diagnostics}
        parsed.append(not codes & {"E001", "E002", "E003"})

    collect()
    assert sum(parsed) > len(parsed) // 2


def _tokens(text: str) -> list[str]:
    """Split text into words, punctuation and whitespace runs (joining them gives the text back)."""
    return re.findall(r"\s+|\w+|[^\w\s]", text)


# The edits a mutant is made of: token and line deletions, duplications and swaps, a number token grown huge,
# stray characters, truncation.
MUTATIONS = ("del_tok", "dup_tok", "swap_tok", "num_tok", "del_line", "dup_line", "swap_line", "chars", "cut")


# Characters a slip of the keyboard inserts into a spec: brackets, punctuation, indentation, newlines.
_STRAY = (
    "(",
    ")",
    "[",
    ":",
    "=",
    "  ",
    "\n",
    "\n    ",
    "x",
    "1",
    "%",
    "'",
    '"',
    "@",
    ",",
    ".",
    "é",
    "\ufffd",
    "\x00",
)


def _mutate(text: str, rng: random.Random) -> str:
    """One to three random edits of `text` (the MUTATIONS, with syntax characters as the stray ones)."""
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(MUTATIONS)
        unit = _tokens(text) if kind.endswith("tok") else text.split("\n")
        if not unit:
            break
        i, j = rng.randrange(len(unit)), rng.randrange(len(unit))
        if kind.startswith("del"):
            del unit[i]
        elif kind.startswith("dup"):
            unit.insert(i, unit[i])
        elif kind.startswith("swap"):
            unit[i], unit[j] = unit[j], unit[i]
        elif kind == "num_tok":
            digits = [n for n, tok in enumerate(unit) if tok.isdigit()]
            if digits:
                unit[rng.choice(digits)] = "9" * 400
        if kind == "chars":
            pos = rng.randrange(len(text) + 1)
            text = text[:pos] + rng.choice(_STRAY) + text[pos:]
        elif kind == "cut":
            text = text[: rng.randrange(len(text) + 1)]
        else:
            text = ("" if kind.endswith("tok") else "\n").join(unit)
    return text


@st.composite
def _mutants(draw: st.DrawFn) -> str:
    """A valid spec with one to three random edits (`_mutate`, seeded by hypothesis)."""
    return _mutate(draw(st.sampled_from(SEEDS)), random.Random(draw(st.integers(0, 2**32))))


@FUZZ
@given(_mutants())
def test_mutated_specs_end_in_ir_or_diagnostics(text: str) -> None:
    """Deleted, duplicated, swapped tokens and lines, stray characters, truncation: never an exception."""
    _same_twice(text)


def test_seeded_mutants_end_in_ir_or_true_diagnostics() -> None:
    """1,500 mutants from a fixed seed (ten times hypothesis' budget): no exception, no recovery artefact."""
    rng = random.Random(20261201)
    for _ in range(1_500):
        _outcome(_mutate(rng.choice(SEEDS), rng))


def test_extreme_inputs_end_in_diagnostics() -> None:
    """Binary garbage, huge and deeply nested input: located diagnostics, no traceback."""
    head = 'strat 1\nstrategy s:\n    symbol: "BINANCE:BTC/USDT"\n'
    cases = {
        "binary": "\x00\x01\xff\ufffd" * 50,
        "brackets": head + "    x = " + "(" * 5_000 + "close" + ")" * 5_000 + "\n",
        "unclosed": head + "    x = " + "(" * 5_000 + "\n",
        "long sum": head + "    x = " + " + ".join(["close"] * 3_000) + "\n",
        "blocks": "strat 1\n"
        + "".join("    " * i + f"b{i}:\n" for i in range(300))
        + "    " * 300
        + "x: 1\n",
        "lines": head + "".join(f"    x{i} = sma(close, {i + 1})\n" for i in range(5_000)),
        "one line": head + "    x = " + "a" * 200_000 + "\n",
        "garbage": "".join(chr(c) for c in range(1, 2_000)),
    }
    for name, text in cases.items():
        result = _outcome(text)
        assert result.diagnostics or name == "lines", name


def test_empty_and_whitespace_only_files() -> None:
    """An empty file lacks only its version line."""
    for text in ("", "\n", "   \n\n", "# only a comment\n"):
        assert [(d.code, d.line, d.col) for d in _outcome(text).diagnostics] == [("E004", 1, 1)]
