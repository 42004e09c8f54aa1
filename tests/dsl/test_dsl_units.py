"""Unit rules of comparisons: a ratio of like units meets a percentage, a 0–100 oscillator never does."""

from __future__ import annotations

import pytest
from dsl_helpers import HEAD, diags

from dsl.types import Type, divide, multiply, unify


def _line(cond: str, defs: str = "") -> str:
    """A strategy whose line 5 (or the line after `defs`) is an entry on `cond`."""
    return HEAD + defs + f"    entry long when {cond}\n    exit long when close < open\n"


@pytest.mark.parametrize(
    "cond",
    [
        "(close - entry_price) / entry_price > 2%",
        "(close - open) / open > 2%",
        "close / open - 1 > 2%",
        "volume / sma(volume, 20) > 150%",
        "-2% > (close - open) / open",
        "(high - low) / close crosses above 1.5%",
        "close / open > 1.02",
        "rsi(close, 14) > 75",
        "rsi(close, 14) - 50 > 10",
        "stoch().k crosses above 80",
        "adx(14) > sma(adx(14), 5)",
        "rsi(close, 14) > cci(20)",
    ],
)
def test_a_comparison_traders_write_checks_clean(cond: str) -> None:
    assert diags(_line(cond)) == []


def test_a_def_dividing_like_units_compares_with_a_percentage() -> None:
    text = "strat 1\ndef spread(f, s) = (f - s) / s\n" + HEAD[len("strat 1\n") :]
    rules = "    entry long when spread(close, open) > 1%\n    exit long when close < open\n"
    assert diags(text + rules) == []


@pytest.mark.parametrize(
    ("cond", "hint"),
    [
        ("rsi(close, 14) > 75%", "rsi(close, 14) is on a 0–100 scale: write `rsi(close, 14) > 75`"),
        ("30% > rsi(close, 14)", "rsi(close, 14) is on a 0–100 scale: write `30 > rsi(close, 14)`"),
        ("stoch().d crosses below 20%", "stoch().d is on a 0–100 scale: write `stoch().d crosses below 20`"),
        ("adx(14) >= 25%", "adx(14) is on a 0–100 scale: write `adx(14) >= 25`"),
    ],
)
def test_an_oscillator_with_a_percentage_is_an_error_with_the_number_it_means(cond: str, hint: str) -> None:
    kinds = "percent with points" if cond.startswith("30%") else "points with percent"
    assert diags(_line(cond)) == [("E023", 5, 21, f"cannot compare {kinds}", hint)]


@pytest.mark.parametrize(
    ("cond", "message"),
    [
        ("cci(20) > 75%", "cannot compare number with percent"),
        ("roc(close, 10) > 2%", "cannot compare number with percent"),
        ("close > 2%", "cannot compare price with percent"),
        ("rsi(close, 14) > close / open", "cannot compare points with ratio"),
    ],
)
def test_other_plain_numbers_and_prices_do_not_compare_with_a_percentage(cond: str, message: str) -> None:
    assert [d[:4] for d in diags(_line(cond))] == [("E023", 5, 21, message)]


def test_kind_algebra_of_the_plain_numbers() -> None:
    assert divide("price", "price") == divide("qty", "qty") == divide("number", "number") == "ratio"
    assert divide("points", "number") == "points" and divide("price", "ratio") == "price"
    assert multiply("ratio", "price") == "price" and multiply("ratio", "number") == "number"
    assert multiply("points", "number") == "points" and multiply("ratio", "percent") == "percent"
    assert unify(Type("ratio"), Type("percent"), compare=True) == "ratio"
    assert unify(Type("points"), Type("percent")) is None
    assert unify(Type("points"), Type("number"), compare=True) == "points"
    assert unify(Type("number"), Type("percent"), compare=True) is None
    assert unify(Type("number"), Type("percent")) == "number"


def test_an_oscillator_expression_with_a_percentage_gets_the_rule_in_words() -> None:
    hint = "rsi, stoch and adx are on a 0–100 scale: compare them with a number such as 75, not 75%"
    found = diags(_line("(rsi(close, 14) - 50) / 2 > 10%"))
    assert found == [("E023", 5, 22, "cannot compare points with percent", hint)]


def test_valuewhen_has_its_sources_unit_not_its_conditions() -> None:
    assert diags(_line("valuewhen(close > open, close, 0) > open")) == []
    assert [d[3] for d in diags(_line("valuewhen(close > open, close, 0) > 2%"))] == [
        "cannot compare price with percent"
    ]
