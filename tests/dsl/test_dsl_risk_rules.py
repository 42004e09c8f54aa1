"""Every risk rule and setting the broker refuses is a located diagnostic of `strat check`."""

from __future__ import annotations

import pytest
from dsl_helpers import PORTFOLIO, check, diags

from dsl.builtins import CAPPABLE
from runtime.broker import simulator
from runtime.plan.inputs import risk_rule
from runtime.plan.model import Any, Compare

# A portfolio over ma_cross with one sleeve; the rule under test is line 6 (inside `risk:` or
# `risk per sleeve:` on line 5).
SLEEVE = PORTFOLIO + "    sleeve a = ma_cross()\n"


def _rule(rule: str, block: str = "risk") -> list[tuple[str, int, int, str]]:
    """The diagnostics (code, line, col, message) of a portfolio whose one risk rule is `rule`."""
    return [d[:4] for d in diags(SLEEVE + f"    {block}:\n        {rule}\n")]


@pytest.mark.parametrize(
    ("rule", "block"),
    [
        ("cap drawdown at 10%", "risk"),
        ("cap day_pnl at 10%", "risk"),
        ("cap week_pnl at 10%", "risk"),
        ("cap equity at 1000", "risk"),
        ("cap consecutive_losses at 3", "risk per sleeve"),
        ("cap trades_today at 3", "risk per sleeve"),
    ],
)
def test_a_metric_no_entry_makes_bigger_cannot_be_capped(rule: str, block: str) -> None:
    metric = rule.split()[1]
    assert _rule(rule, block) == [("E052", 6, 13, f"cannot cap {metric}: a cap limits what an entry adds")]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("cap gross_exposure at 99999999999999%", "cap gross_exposure must be <= 1000%"),
        ("cap gross_exposure at 1000.5%", "cap gross_exposure must be <= 1000%"),
        ("cap net_exposure at 0%", "cap net_exposure must be > 0%"),
        ("cap position at -5%", "cap position must be > 0%"),
        ("cap open_positions at 2.5", "cap open_positions must be a whole number >= 0"),
        ("cap open_positions at -1", "cap open_positions must be a whole number >= 0"),
    ],
)
def test_a_cap_limit_outside_its_domain_is_e025_at_the_value(rule: str, message: str) -> None:
    col = 9 + rule.index(" at ") + 4
    assert _rule(rule) == [("E025", 6, col, message)]


@pytest.mark.parametrize(
    "rule",
    [
        "cap gross_exposure at 1000%",
        "cap position at 0.5%",
        "cap open_positions at 0",
        "cap open_positions at 3",
    ],
)
def test_a_cap_limit_inside_its_domain_checks_clean(rule: str) -> None:
    assert _rule(rule) == []


@pytest.mark.parametrize(
    ("rule", "col"),
    [
        ("halt when drawdown > day_pnl", 19),
        ("halt when true", 19),
        ("flatten when drawdown * 2 > 15%", 22),
        ("halt when day_pnl < -4% and (drawdown > 1% if true else false)", 38),
        ("pause 1d when not (drawdown crosses above 5%)", 28),
    ],
)
def test_a_risk_condition_the_broker_cannot_evaluate_is_e052_at_its_part(rule: str, col: int) -> None:
    message = "a risk condition compares a metric with a fixed value"
    assert _rule(rule) == [("E052", 6, col, message)]


def test_risk_conditions_the_broker_evaluates_check_clean() -> None:
    rule = "halt when day_pnl < -4% - 1% or not (15% < drawdown and open_positions >= 2)"
    assert _rule(rule) == []


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("take_profit: 2R", "take_profit in R needs stop_loss"),
        ("trail_after: 1R", "trail_after in R needs stop_loss"),
        ("breakeven_after: 1R", "breakeven_after needs stop_loss"),
        ("size: risk_per_trade(1%)", "risk_per_trade() needs stop_loss"),
    ],
)
def test_a_setting_measured_to_the_stop_needs_a_stop(setting: str, message: str) -> None:
    head = 'strat 1\nstrategy s:\n    symbol: "BINANCE:BTC/USDT"\n    trailing_stop: 2%\n'
    found = diags(head + f"    {setting}\n    entry long when close > open\n")
    assert [d[:2] + d[3:4] for d in found] == [("E081", 5, message)]


def test_the_broker_reads_the_cappable_metrics_from_the_language() -> None:
    assert simulator.CAPPABLE is CAPPABLE
    assert list(CAPPABLE) == ["gross_exposure", "net_exposure", "position", "open_positions", "exposure"]


def test_a_fixed_expression_before_the_metric_reads_the_other_way_round_in_check_and_run() -> None:
    rule = "halt when -4% - 1% > day_pnl or 15% < drawdown"
    assert _rule(rule) == []
    program = check(SLEEVE + f"    risk:\n        {rule}\n").program
    assert program is not None
    built = risk_rule(program.portfolios[0].risk[0])
    assert built.condition == Any((Compare("day_pnl", "<", -0.05), Compare("drawdown", ">", 0.15)))
