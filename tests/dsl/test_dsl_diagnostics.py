"""Negative tests of the diagnostics.

One test per diagnostic code (code, line, column, exact message and hint), several errors at once, and the
typos a new user makes (each must give exactly one clear, located message).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from dsl_helpers import HEAD, PORTFOLIO, ROOT, check, diags

from dsl.builtins import KEYWORDS
from dsl.checker import check_file

# The hint of an unknown import names both places that were searched.
_LOOKED = f"looked in {ROOT / 'specs'} and in the standard library"
# The hint listing the available timeframes.
_TIMEFRAMES = "available: 1s, 1m, 3m, 5m, 15m, 30m, 1h, 2h, 4h, 6h, 8h, 12h, 1d, 3d, 1w"

# (source, code, line, col, message, hint): the only diagnostic each source must produce.
CASES = {
    "E001": (
        'strat 1\nstrategy breakout\n    symbol: "BINANCE:BTC/USDT"\n',
        "E001",
        2,
        18,
        "expected ':' after strategy name",
        None,
    ),
    "E002": (HEAD + "    x = sma(close, 10\n", "E002", 5, 12, "'(' opened at 5:12 is never closed", None),
    "E003": (
        HEAD + "    x = sma(close, 10)\n  y = 1\n",
        "E003",
        6,
        1,
        "indentation of 2 spaces matches no enclosing block",
        "use 4 spaces to stay in the block above, or 0 to end it",
    ),
    "E003-tab": (HEAD + "\tx = 1\n", "E003", 5, 1, "tab character; indent with spaces only", None),
    "E004": ("strat 2\n", "E004", 1, 1, "unsupported language version 2; supported: 1", None),
    "E004-missing": ("", "E004", 1, 1, "missing language version", "start the file with 'strat 1'"),
    "E005": (
        HEAD + "    x = close * 7x\n",
        "E005",
        5,
        17,
        "'7x' is not a number, percentage or duration",
        "units: %, bps, R, ms, s, m, h, d, w",
    ),
    "E010": (HEAD + "    x = clsoe > 1\n", "E010", 5, 9, "undefined name 'clsoe'", "did you mean 'close'?"),
    "E011": (
        HEAD + "    x = smaa(close, 3)\n",
        "E011",
        5,
        9,
        "unknown function 'smaa'",
        "did you mean 'sma'?",
    ),
    "E012": (
        HEAD + "    fast_ma = sma(close, 3)\n    fast_ma = sma(close, 4)\n",
        "E012",
        6,
        5,
        "'fast_ma' is already defined at line 5",
        None,
    ),
    "E013": (
        HEAD + "    close = sma(open, 3)\n",
        "E013",
        5,
        5,
        "'close' is a built-in series and cannot be redefined",
        None,
    ),
    "E014": (HEAD + "    a = b + 1\n    b = a + 1\n", "E014", 5, 5, "circular definition: a → b → a", None),
    "E015": ('strat 1\nuse "nope.strat"\n', "E015", 2, 1, "cannot find 'nope.strat'", _LOOKED),
    "E016": (
        HEAD + "    stoploss: 2%\n",
        "E016",
        5,
        5,
        "unknown setting 'stoploss' in a strategy",
        "did you mean 'stop_loss'?",
    ),
    "E017": (
        HEAD + "    halt when drawdown > 10%\n",
        "E017",
        5,
        5,
        "'halt' rules are only allowed inside a risk block",
        None,
    ),
    "E017-setting": (
        HEAD + "    fee: 0.1%\n",
        "E017",
        5,
        5,
        "'fee' belongs in an execution block, not in a strategy",
        "put it inside the strategy's 'execution:' block",
    ),
    "E020": (
        HEAD + "    x = sma(close)\n",
        "E020",
        5,
        9,
        "sma() takes 2 arguments (source, length); got 1",
        None,
    ),
    "E021": (
        HEAD + "    x = rsi(close, len=3)\n",
        "E021",
        5,
        20,
        "rsi() has no parameter 'len'",
        "did you mean 'length'?",
    ),
    "E022": (
        HEAD + "    entry long when close\n    exit long when close < 1\n",
        "E022",
        5,
        21,
        "entry condition must be bool; got series<price>",
        None,
    ),
    "E023": (HEAD + "    x = close > 2%\n", "E023", 5, 9, "cannot compare price with percent", None),
    "E024": (
        HEAD + "    x = sma(close, close)\n",
        "E024",
        5,
        20,
        "length of sma() must be fixed for the run",
        None,
    ),
    "E025": (
        PORTFOLIO + "    sleeve a = ma_cross() weight 110%\n",
        "E025",
        4,
        34,
        "weight must be <= 100%",
        None,
    ),
    "E025-length": (HEAD + "    x = sma(close, 0)\n", "E025", 5, 20, "length of sma() must be >= 1", None),
    "E025-division": (
        HEAD + "    param x = 20 in 10..50 step 1/0\n",
        "E025",
        5,
        35,
        "division by zero",
        None,
    ),
    "E026": (
        HEAD + "    size: 1%\n",
        "E026",
        5,
        11,
        "size expects a sizing rule such as risk_per_trade(1%)",
        None,
    ),
    "E030": (
        HEAD + "    x = close[-1]\n",
        "E030",
        5,
        9,
        "close[-1] would read the next bar; offsets must be >= 0",
        None,
    ),
    "E034": (
        'strat 1\nstrategy s:\n    symbol: "BINANCE:BTC/USDT"\n    timeframe: 5m\n    h = bars(1m)\n',
        "E034",
        5,
        14,
        "bars(1m) is faster than the strategy timeframe 5m",
        None,
    ),
    "E035": (
        'strat 1\nstrategy s:\n    symbol: "BINANCE:BTC/USDT"\n    timeframe: 8h\n    h = bars(12h)\n',
        "E035",
        5,
        14,
        "12h is not a whole multiple of 8h",
        None,
    ),
    "E036": (
        'strat 1\nstrategy s:\n    symbol: "BINANCE:BTC/USDT"\n    timeframe: 90s\n',
        "E036",
        4,
        16,
        "timeframe 90s is not available",
        _TIMEFRAMES,
    ),
    "E037": (
        'strat 1\nstrategy s:\n    symbol: "BTCUSDT"\n',
        "E037",
        3,
        13,
        "'BTCUSDT' is not of the form \"EXCHANGE:BASE/QUOTE\"",
        'for example "BINANCE:BTC/USDT"',
    ),
    "E040": (HEAD + "    param fast = 60 in 10..50\n", "E040", 5, 18, "default 60 is outside 10..50", None),
    "E040-set": (
        HEAD + "    param fast = 6 in {5, 7}\n",
        "E040",
        5,
        18,
        "default 6 is not one of {5, 7}",
        None,
    ),
    "E041": (
        HEAD + "    param fast = 12 in 10..50 step 5\n",
        "E041",
        5,
        18,
        "default 12 is not on the grid 10..50 step 5",
        None,
    ),
    "E042": (
        HEAD + "    param fast = 12 in 50..10\n",
        "E042",
        5,
        21,
        "empty range 50..10: the start is above the end",
        None,
    ),
    "E043": (
        HEAD + "    param fast = 12\n    param slow = 10\n    constraint fast < slow\n",
        "E043",
        7,
        16,
        "constraint is false at the defaults (fast=12, slow=10)",
        None,
    ),
    "E044": (
        HEAD + "    param rp = 1% in 1..2\n",
        "E044",
        5,
        22,
        "domain value has unit number but the default of rp is percent",
        None,
    ),
    "E050": (
        PORTFOLIO + "    sleeve a = ma_cross() weight 60%\n    sleeve b = ma_cross() weight 50%\n",
        "E050",
        3,
        11,
        "sleeve weights sum to 110%",
        None,
    ),
    "E051": (
        PORTFOLIO + "    sleeve a = ma_cross(fsat=3) weight 60%\n",
        "E051",
        4,
        25,
        "strategy 'ma_cross' has no param 'fsat'",
        "did you mean 'fast'?",
    ),
    "E051-template": (
        PORTFOLIO + "    sleeve a = ma_cros() weight 60%\n",
        "E051",
        4,
        16,
        "unknown strategy 'ma_cros'",
        "did you mean 'ma_cross'?",
    ),
    "E052": (
        PORTFOLIO + "    sleeve a = ma_cross()\n    risk:\n        pause 12h when consecutive_losses >= 3\n",
        "E052",
        6,
        24,
        "'consecutive_losses' is a per-sleeve metric",
        "use it inside 'risk per sleeve:'",
    ),
    "E060": (
        'strat 1\nuse "ma_cross.strat"\noptimize o:\n    target: ma_cross\n    objective: maximize(sharp)\n',
        "E060",
        5,
        25,
        "unknown metric 'sharp'",
        "did you mean 'sharpe'?",
    ),
    "E081": (
        HEAD + "    entry long when close > 1\n    exit long when close < 1\n    size: risk_per_trade(1%)\n",
        "E081",
        7,
        11,
        "risk_per_trade() needs stop_loss",
        "the risk per trade is measured to the stop: add stop_loss: 2% (or 2 * atr(14))",
    ),
    "W054": (
        HEAD + "    entry long when close > 1\n",
        "W054",
        2,
        10,
        "entry long has no exit: no exit rule, stop, target or max_hold ever closes the position",
        None,
    ),
}


@pytest.mark.parametrize("case", CASES, ids=str)
def test_each_code_is_reported_alone_with_position_message_and_hint(case: str) -> None:
    """The source gives exactly the one expected diagnostic."""
    source, *expected = CASES[case]
    assert diags(source) == [tuple(expected)]


def test_every_code_the_checker_emits_has_a_case() -> None:
    """The table above covers the codes the brief lists (E070 and E080 belong to the runtime)."""
    wanted = sorted(
        {*(f"E0{n:02d}" for n in (1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15, 16, 17, 20, 21, 22, 23, 24, 25, 26))}
        | {*(f"E0{n}" for n in (30, 34, 35, 36, 37, 40, 41, 42, 43, 44, 50, 51, 52, 60, 81))}
        | {"W054"}
    )
    assert sorted({c[1] for c in CASES.values()}) == wanted


def test_a_warning_alone_still_gives_a_program() -> None:
    """W054 does not block the run; any error does."""
    assert check(CASES["W054"][0]).program is not None
    assert check(CASES["E010"][0]).program is None


def test_the_rendering_shows_location_source_line_caret_and_hint() -> None:
    """`file:line:col: error CODE: message`, the line with a caret underline, then the hint."""
    result = check(HEAD + "    x = clsoe > 1\n")
    assert result.render() == (
        f"{ROOT / 'specs' / 't.strat'}:5:9: error E010: undefined name 'clsoe'\n"
        "    5 |     x = clsoe > 1\n"
        "      |         ^^^^^\n"
        "      = hint: did you mean 'close'?"
    )


def test_every_error_of_a_file_is_reported_at_once() -> None:
    """Syntax and semantic errors all over a file come out together, in source order."""
    source = (
        "strat 1\n"
        "strategy s:\n"
        '    symbol: "BINANCE:BTC/USDT"\n'
        "    x = sma(close, 10\n"  # E002
        "    y = clsoe + 1\n"  # E010
        "    stoploss: 2%\n"  # E016
        "    z = rsii(close)\n"  # E011
        "    entry long when close > 2%\n"  # E023
        "    exit long when y > 1\n"
        "portfolio p:\n"
        "    sleeve a = s(fsat=1) weight 120%\n"  # E051 and E025
    )
    assert [(c, ln, col) for c, ln, col, _, _ in diags(source)] == [
        ("E002", 4, 12),
        ("E010", 5, 9),
        ("E016", 6, 5),
        ("E011", 7, 9),
        ("E023", 8, 21),
        ("E051", 11, 18),
        ("E025", 11, 33),
    ]


def test_errors_in_an_imported_file_are_reported_in_that_file(tmp_path: Path) -> None:
    """A broken library file is reported under its own name, the importer under its own."""
    (tmp_path / "lib.strat").write_text(HEAD + "    x = clsoe\n")
    (tmp_path / "main.strat").write_text('strat 1\nuse "lib.strat"\nconst k = undefined_thing\n')
    result = check_file(tmp_path / "main.strat")
    assert [(d.file.rsplit("/", 1)[-1], d.line, d.code) for d in result.diagnostics] == [
        ("lib.strat", 5, "E010"),
        ("main.strat", 3, "E010"),
    ]


def test_import_cycle(tmp_path: Path) -> None:
    """File a uses b, b uses a: E015 names the whole chain, at the `use` that closes it."""
    (tmp_path / "a.strat").write_text('strat 1\nuse "b.strat"\n')
    (tmp_path / "b.strat").write_text('strat 1\nuse "a.strat"\n')
    result = check_file(tmp_path / "a.strat")
    assert [(d.code, d.line, d.col, d.message) for d in result.diagnostics] == [
        ("E015", 2, 1, "import cycle: a.strat → b.strat → a.strat")
    ]


# ---------------------------------------------------------------- typos a new user makes

# The LANGUAGE.md example the typos are made in.
EXAMPLE = (ROOT / "tests" / "dsl" / "examples" / "sma_rsi.strat").read_text(encoding="utf-8")

# (old text, typo, code, line, col, message, hint): each typo gives exactly one diagnostic.
TYPOS = {
    "name": (
        "uptrend = fast_ma > slow_ma",
        "uptrend = fast_ma > slwo_ma",
        "E010",
        18,
        25,
        "undefined name 'slwo_ma'",
        "did you mean 'slow_ma'?",
    ),
    "setting": (
        "stop_loss:   2.5%",
        "stoploss:    2.5%",
        "E016",
        24,
        5,
        "unknown setting 'stoploss' in a strategy",
        "did you mean 'stop_loss'?",
    ),
    "indicator": (
        "r       = rsi(close",
        "r       = rsii(close",
        "E011",
        17,
        15,
        "unknown function 'rsii'",
        "did you mean 'rsi'?",
    ),
    "unit": (
        "fee:      0.1%",
        "fee:      0.1pc",
        "E005",
        31,
        19,
        "'0.1pc' is not a number, percentage or duration",
        "units: %, bps, R, ms, s, m, h, d, w",
    ),
    "unit-mismatch": (
        "r > 75",
        "r > 75%",
        "E023",
        22,
        54,
        "cannot compare points with percent",
        "r is on a 0–100 scale: write `r > 75`",
    ),
    "indentation-deeper": (
        "    exit  long",
        "     exit  long",
        "E003",
        22,
        1,
        "unexpected indentation: 5 spaces where the line above has 4",
        "only the line after a block header ending in ':' may be indented deeper",
    ),
    "indentation-between": (
        "    exit  long",
        "   exit  long",
        "E003",
        22,
        1,
        "indentation of 3 spaces matches no enclosing block",
        "use 4 spaces to stay in the block above, or 0 to end it",
    ),
    "missing-colon": (
        "strategy sma_rsi:",
        "strategy sma_rsi",
        "E001",
        4,
        17,
        "expected ':' after strategy name",
        None,
    ),
    "unclosed-paren": (
        "sma(close, fast)",
        "sma(close, fast",
        "E002",
        15,
        18,
        "'(' opened at 15:18 is never closed",
        None,
    ),
    "missing-equals": (
        "slow_ma = sma(close, slow)",
        "slow_ma   sma(close, slow)",
        "E001",
        16,
        15,
        "unexpected 'sma'; expected ':' or '='",
        None,
    ),
    "side": (
        "entry long when",
        "entry lng when",
        "E001",
        21,
        11,
        "unexpected 'lng'; expected 'long' or 'short'",
        None,
    ),
    "keyword-argument": (
        "rsi(close, rsi_len)",
        "rsi(close, len=rsi_len)",
        "E021",
        17,
        26,
        "rsi() has no parameter 'len'",
        "did you mean 'length'?",
    ),
}


@pytest.mark.parametrize("typo", TYPOS, ids=str)
def test_a_typo_gives_exactly_one_located_message(typo: str) -> None:
    """One typo in a clean spec: one diagnostic, at the typo, in plain words."""
    old, new, *expected = TYPOS[typo]
    assert EXAMPLE.count(old) == 1
    assert diags(EXAMPLE.replace(old, new)) == [tuple(expected)]


def test_a_broken_line_does_not_hide_the_rest_of_its_block() -> None:
    """After a missing colon the strategy body is still checked; after an unclosed bracket, the next lines."""
    source = EXAMPLE.replace("strategy sma_rsi:", "strategy sma_rsi").replace("r > 75", "r > 75%")
    assert [(c, ln) for c, ln, *_ in diags(source)] == [("E001", 4), ("E023", 22)]


def test_every_keyword_may_name_a_keyword_argument() -> None:
    # The grammar lists the keywords a keyword argument's name may be: exactly the language's keywords.
    grammar = (ROOT / "grammar.lark").read_text(encoding="utf-8")
    rule = re.search(r"^\?kwname: NAME (.*?)\n(?!\s+\|)", grammar, re.S | re.M)
    assert rule is not None
    assert set(re.findall(r'"(\w+)"', rule.group(1))) == KEYWORDS
    # Each parses as a name there (and is then an unknown keyword argument of sma, not a syntax error).
    for word in sorted(KEYWORDS):
        assert [d[:2] for d in diags(HEAD + f"    x = sma(close, 5, {word}=1)\n")] == [("E021", 5)], word


def test_every_error_of_a_five_error_file_is_reported_e081_included() -> None:
    text = HEAD.replace("1h", "7h") + (
        "    x = sma(close, fast)\n"
        "    y = undefined_thing + 1\n"
        "    size: risk_per_trade(1%)\n"
        "    entry long when foo(close) > 1\n"
        "    exit long when close > 2%\n"
    )
    assert [d[:3] for d in diags(text)] == [
        ("E036", 4, 16),
        ("E010", 5, 20),
        ("E010", 6, 9),
        ("E081", 7, 11),
        ("E011", 8, 21),
        ("E023", 9, 20),
    ]


@pytest.mark.parametrize("stop", ["    stoploss: 2%\n", "    stop_loss: 2 * undefined_atr\n"])
def test_e081_stays_silent_when_a_broken_stop_may_be_its_cause(stop: str) -> None:
    text = HEAD + stop + "    size: risk_per_trade(1%)\n    entry long when close > open\n"
    assert "E081" not in [d[0] for d in diags(text)]
