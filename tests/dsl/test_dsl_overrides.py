"""`--set` on a portfolio: `sleeve.param=v` and `param=v` (every sleeve that has it) apply, checked.

Every name must be taken by some strategy or sleeve of the file (E051 otherwise, with a did-you-mean),
every value lies in its param's domain (E040) and is readable in its unit (E005); `run` and `series`
read the values through the checked program, so a value that checks is a value that runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from dsl_helpers import ROOT

from dsl.checker import check_file
from runtime.cli import main

# The demo portfolio: btc_trend = ma_cross(fast=10, slow=40), eth_revert = rsi_reversion, sol_break.
DEMO = ROOT / "specs" / "portfolio.strat"
# A short synthetic run with no saved state.
RUN = ["--data", "synthetic", "--from", "2024-01-01", "--to", "2024-04-01", "--no-save", "--no-report"]


def _problems(**sets: str) -> list[tuple[str, int, int, str, str | None]]:
    """The diagnostics of the demo portfolio checked with `--set` values."""
    found = check_file(DEMO, overrides=sets).diagnostics
    return [(d.code, d.line, d.col, d.message, d.hint) for d in found]


def _sleeve_values(**sets: str) -> dict[str, dict[str, float]]:
    """Each sleeve's param overrides after the `--set` values."""
    program = check_file(DEMO, overrides=sets).program
    assert program is not None
    return {sl.name: dict(sl.overrides) for sl in program.portfolios[0].sleeves}


def test_a_bare_param_applies_to_every_sleeve_that_has_it_over_its_own_value() -> None:
    assert _sleeve_values()["btc_trend"] == {"fast": 10.0, "slow": 40.0}
    values = _sleeve_values(fast="30", trend="100")
    assert values["btc_trend"] == {"fast": 30.0, "slow": 40.0}
    assert values["eth_revert"] == {"trend": 100.0}
    assert values["sol_break"] == {"entry_len": 40.0}


def test_a_sleeve_param_applies_to_that_sleeve_only() -> None:
    values = _sleeve_values(**{"btc_trend.slow": "50", "sol_break.entry_len": "30"})
    assert values["btc_trend"] == {"fast": 10.0, "slow": 50.0}
    assert values["sol_break"] == {"entry_len": 30.0}


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (
            {"nonesuch": "3"},
            (
                "E051",
                13,
                11,
                "--set nonesuch: no strategy or sleeve of this file has a param 'nonesuch'",
                None,
            ),
        ),
        (
            {"fst": "10"},
            (
                "E051",
                13,
                11,
                "--set fst: no strategy or sleeve of this file has a param 'fst'",
                "did you mean 'fast'?",
            ),
        ),
        (
            {"btc.fast": "30"},
            (
                "E051",
                13,
                11,
                "--set btc.fast: this file has no sleeve 'btc'",
                "sleeves: btc_trend, eth_revert, sol_break",
            ),
        ),
        (
            {"btc_trend.fsat": "30"},
            (
                "E051",
                19,
                12,
                "--set btc_trend.fsat: sleeve 'btc_trend' (ma_cross) has no param 'fsat'",
                "did you mean 'fast'?",
            ),
        ),
        (
            {"symbol": "BINANCE:ETH/USDT"},
            (
                "E051",
                13,
                11,
                "--set symbol: no strategy or sleeve of this file has a param 'symbol'",
                "--set changes params; write the symbol in the spec (or a sleeve's symbol=...)",
            ),
        ),
        ({"fast": "999"}, ("E040", 19, 12, "--set fast=999: fast = 999 is outside 5..50", None)),
        (
            {"btc_trend.fast": "7"},
            ("E040", 19, 12, "--set btc_trend.fast=7: fast = 7 is not on the grid 5..50 step 5", None),
        ),
        (
            {"fast": "inf"},
            ("E005", 19, 12, "--set fast=inf: 'inf' is not a valid value for fast (number)", None),
        ),
    ],
)
def test_a_wrong_name_or_value_is_an_error(sets: dict[str, str], expected: tuple[object, ...]) -> None:
    assert _problems(**sets) == [expected]


@pytest.mark.parametrize("command", ["run", "series"])
def test_every_command_taking_set_refuses_an_unknown_name(command: str, tmp_path: Path, capsys) -> None:
    out = ["--out", str(tmp_path / "o.csv")] if command == "series" else ["--out", str(tmp_path)]
    extra = ["--strategy", "ma_cross"] if command == "series" else []
    spec = ROOT / "library" / "ma_cross.strat" if command == "series" else DEMO
    assert main([command, str(spec), *RUN[:6], *out, *extra, "--set", "nonesuch=3"]) == 1
    assert "E051" in capsys.readouterr().err


def test_a_portfolio_run_with_a_sleeve_param_set_changes_that_sleeves_trades(tmp_path: Path) -> None:
    def trades(*sets: str) -> list[str]:
        out = tmp_path / str(len(list(tmp_path.iterdir())))
        assert main(["run", str(DEMO), *RUN, "--out", str(out), *sets]) == 0
        rows = (out / "trades.csv").read_text(encoding="utf-8").splitlines()
        return [row for row in rows[1:] if row.split(",")[0] == "btc_trend"] or rows[:1]

    before = trades()
    assert len(before) > 1
    assert trades("--set", "btc_trend.fast=30") != before
    assert trades("--set", "fast=30") == trades("--set", "btc_trend.fast=30")
