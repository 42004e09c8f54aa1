"""Helpers shared by the language tests: the repository root, test headers and a compact diagnostic view."""

from __future__ import annotations

from pathlib import Path

from dsl.checker import CheckResult, check_source

# The repository root (the folder holding grammar.lark, library/ and specs/).
ROOT = Path(__file__).resolve().parents[2]
# Where test sources pretend to live: `use "ma_cross.strat"` then resolves in library/.
SPEC_PATH = str(ROOT / "specs" / "t.strat")
# The strategy header most negative tests start from (lines 1-4); the line under test is line 5.
HEAD = 'strat 1\nstrategy s:\n    symbol: "BINANCE:BTC/USDT"\n    timeframe: 1h\n'
# A portfolio header over the library's ma_cross (lines 1-3); the line under test is line 4.
PORTFOLIO = 'strat 1\nuse "ma_cross.strat"\nportfolio p:\n'


def check(text: str) -> CheckResult:
    """Check `text` as if it were specs/t.strat."""
    return check_source(text, SPEC_PATH)


def diags(text: str) -> list[tuple[str, int, int, str, str | None]]:
    """The diagnostics of `text` as (code, line, col, message, hint) tuples, in order."""
    return [(d.code, d.line, d.col, d.message, d.hint) for d in check(text).diagnostics]
