"""Shared account, time line, rebalancing and risk rules, with hand-computed numbers."""

from __future__ import annotations

import numpy as np
import pytest
from sim_builders import HOUR, T0, sleeve

from runtime.broker.result import RiskEvent
from runtime.broker.simulator import simulate
from runtime.plan.model import Compare, PortfolioInput, RiskRule


def portfolio(*sleeves: object, **kw: object) -> PortfolioInput:
    """A portfolio of the given sleeves with 1,000 USDT."""
    return PortfolioInput(capital=1000.0, quote="USDT", sleeves=tuple(sleeves), **kw)  # type: ignore[arg-type]


def test_sleeves_on_different_timeframes_share_one_account() -> None:
    a = sleeve([100.0] * 8, el=(0,), name="a", weight=0.5)
    b = sleeve([50.0, 50.0], c=[50.0, 60.0], el=(0,), name="b", weight=0.5, timeframe="4h", symbol="ETH/USDT")
    result = simulate(portfolio(a, b))
    assert result.time.tolist() == [T0 + h * HOUR for h in range(1, 9)]
    assert [(t.sleeve, t.entry_time, t.qty) for t in result.trades] == [
        ("a", T0 + HOUR, 5.0),
        ("b", T0 + 4 * HOUR, 10.0),
    ]
    # a fills at 01:00 (booked at its bar's close, 02:00). The 4h bar opening at 04:00 fills b at 50; like
    # every bar it is processed when it closes (08:00), where b is also marked at its close of 60.
    assert result.equity.tolist() == [1000.0] * 7 + [500.0 + 600.0]
    assert result.cash.tolist() == [1000.0] + [500.0] * 6 + [0.0]
    assert result.exposure[-1] == pytest.approx(1.0)


@pytest.mark.parametrize(("rebalance_ms", "qty"), [(None, 5.0), (2 * HOUR, 7.5)])
def test_rebalancing_resets_budgets_to_target_weights(rebalance_ms: int | None, qty: float) -> None:
    # Sleeve a doubles its 500 to 1,000; after the 04:00 rebalance b owns 750 and buys 7.5 at 100.
    a = sleeve([100.0, 100.0, 200.0, 200.0, 200.0, 200.0], el=(0,), xl=(2,), name="a", weight=0.5)
    b = sleeve([100.0] * 6, el=(3,), name="b", weight=0.5)
    result = simulate(portfolio(a, b, rebalance_ms=rebalance_ms))
    assert [t.qty for t in result.trades if t.sleeve == "b"] == [qty]
    assert result.equity[-1] == 1500.0


def test_halt_flattens_and_blocks_later_entries() -> None:
    rule = RiskRule("portfolio", "halt", "halt when drawdown > 10%", Compare("drawdown", ">", 0.10))
    s = sleeve([100, 100, 100, 80, 80, 80, 80], el=(0, 5))
    result = simulate(portfolio(s, risk=(rule,)))
    (t,) = result.trades
    assert (t.exit_reason, t.exit_bar, t.exit_price, t.pnl) == ("risk", 4, 80.0, -200.0)
    assert result.risk_events == (
        RiskEvent(T0 + 4 * HOUR, "portfolio", "halt when drawdown > 10%", "halt", (("drawdown", 0.2),)),
    )


def test_sleeve_pause_blocks_entry_decisions_for_its_duration() -> None:
    rule = RiskRule(
        "sleeve", "pause", "pause 3h when consecutive_losses >= 1", Compare("consecutive_losses", ">=", 1.0),
        pause_ms=3 * HOUR,
    )  # fmt: skip
    # The loss closes at bar 2's open; the rule fires at bar 2's close (03:00) until 06:00: the entry
    # decided at bar 3 (closing 04:00) is ignored, the one at bar 5 (closing 06:00) is taken.
    s = sleeve([100, 100, 90, 90, 90, 90, 90, 90], el=(0, 3, 5), xl=(1,))
    result = simulate(portfolio(s, risk=(rule,)))
    assert [(t.entry_bar, t.exit_reason) for t in result.trades] == [(1, "signal"), (6, "end")]
    assert [(e.time, e.scope, e.action, e.values) for e in result.risk_events] == [
        (T0 + 3 * HOUR, "main", "pause", (("consecutive_losses", 1.0),))
    ]


def test_sleeve_flatten_closes_only_that_sleeve() -> None:
    rule = RiskRule("sleeve", "flatten", "flatten when drawdown > 10%", Compare("drawdown", ">", 0.10))
    a = sleeve([100, 100, 85, 85, 85], el=(0,), name="a", weight=0.5)
    b = sleeve([100, 100, 100, 100, 100], el=(0,), name="b", weight=0.5)
    result = simulate(portfolio(a, b, risk=(rule,)))
    assert [(t.sleeve, t.exit_reason, t.exit_bar) for t in result.trades] == [
        ("a", "risk", 3),
        ("b", "end", 4),
    ]
    assert [(e.scope, e.action) for e in result.risk_events] == [("a", "flatten")]


def test_cap_shrinks_an_entry_and_records_it() -> None:
    rule = RiskRule(
        "portfolio", "cap", "cap gross_exposure at 50%", cap_metric="gross_exposure", cap_limit=0.5
    )
    result = simulate(portfolio(sleeve([100.0] * 4, el=(0,)), risk=(rule,)))
    assert [t.qty for t in result.trades] == [5.0]
    assert result.risk_events == (
        RiskEvent(
            T0 + 2 * HOUR, "portfolio", "cap gross_exposure at 50%", "cap",
            (("gross_exposure", 1.0), ("limit", 0.5), ("requested_qty", 10.0), ("allowed_qty", 5.0)),
        ),
    )  # fmt: skip


def test_cap_on_open_positions_vetoes_the_second_position() -> None:
    rule = RiskRule("portfolio", "cap", "cap open_positions at 1", cap_metric="open_positions", cap_limit=1.0)
    a = sleeve([100.0] * 4, el=(0,), name="a", weight=0.5)
    b = sleeve([100.0] * 4, el=(0,), name="b", weight=0.5, symbol="ETH/USDT")
    result = simulate(portfolio(a, b, risk=(rule,)))
    assert [t.sleeve for t in result.trades] == ["a"]
    assert [(e.scope, e.values) for e in result.risk_events] == [
        ("portfolio", (("open_positions", 2.0), ("limit", 1.0), ("requested_qty", 5.0), ("allowed_qty", 0.0)))
    ]
    assert np.all(result.cash >= 0.0)


def test_unknown_cap_metric_is_refused() -> None:
    rule = RiskRule("portfolio", "cap", "cap drawdown at 5%", cap_metric="drawdown", cap_limit=0.05)
    with pytest.raises(ValueError, match="risk rule 'cap drawdown at 5%': cannot cap drawdown"):
        simulate(portfolio(sleeve([100.0] * 3), risk=(rule,)))
