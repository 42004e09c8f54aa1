"""Hints for the mistakes a new user makes first (issue 9 §2): each names the form that was meant."""

from __future__ import annotations

import pytest
from dsl_helpers import HEAD, diags

from dsl.diagnostics import did_you_mean


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ("    x = RSI(close, 14)\n", ("E011", 5, 9, "unknown function 'RSI'", "did you mean 'rsi'?")),
        (
            "    x = sma(close, 20) - 2%\n",
            (
                "E023",
                5,
                9,
                "cannot subtract price and percent",
                "to move a price by a percentage write sma(close, 20) * (1 - 2%)",
            ),
        ),
        (
            "    r = rsi(close, 14)\n    entry long when 30 < r < 70\n",
            ("E022", 6, 21, "'<' needs numbers; got series<bool>", "write 30 < r and r < 70"),
        ),
        ("    stop_loss: 3\n", ("E025", 5, 16, "stop_loss must be <= 1", "write 3% for a percentage")),
    ],
)
def test_first_hour_mistakes_get_a_hint(lines: str, expected: tuple) -> None:
    assert diags(HEAD + lines) == [expected]


def test_did_you_mean_skips_huge_names_and_prefers_case() -> None:
    names = [f"name_{i}_" + "x" * 200 for i in range(500)] + ["rsi", "Rsi2"]
    assert did_you_mean("y" * 5000, names) is None  # difflib on it would take seconds
    assert did_you_mean("RSI", names) == "did you mean 'rsi'?"
    assert did_you_mean("name_7_" + "x" * 60, names) is None  # beyond the length limit
