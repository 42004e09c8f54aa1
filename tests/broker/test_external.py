"""The broker with an exchange filling its orders (`Simulator(external=True)`, live trading).

The step fills nothing itself: a decision leaves a pending order that `pending()` sizes for the exchange,
`book()` books what the exchange reports through the shared accounting, and a bracket hit on a closed bar
leaves a market exit instead of a fill at the level.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from sim_builders import HOUR, T0, sleeve, solo

from runtime.broker.simulator import BarUpdate, Simulator
from runtime.plan.model import Bracket, PortfolioInput


def bar(i: int, o: float, h: float, lo: float, c: float, **decisions: bool) -> BarUpdate:
    """Bar i of the sleeve "main" (hourly from T0)."""
    return BarUpdate("main", T0 + i * HOUR, o, h, lo, c, 1e9, **decisions)


def test_a_decision_waits_for_the_exchange_and_books_its_fills() -> None:
    """Entry decided at a close: sized for the exchange, filled in two parts, then exited with a fee."""
    sim = Simulator(solo(sleeve([100.0] * 4), capital=1000.0), external=True)
    sim.step(bar(0, 100, 100, 100, 100, entry_long=True))
    (order,) = sim.pending()
    # All-in at the close with the 0.5% price margin: 1000 / (100 * 1.005).
    assert (order.sleeve, order.intent, order.side, order.buy) == ("main", "entry", 1, True)
    assert order.qty == pytest.approx(1000 / 100.5, rel=1e-12)
    sim.step(bar(1, 101, 101, 101, 101))  # the next bar: nothing fills by itself
    assert sim.position("main") == 0.0 and len(sim.pending()) == 1
    sim.book(order, 4.0, 101.0, 0.0, order.qty)
    sim.book(order, 5.0, 102.0, 0.0, order.qty)
    sim.drop("main")
    assert sim.position("main") == 9.0 and sim.pending() == []
    (view,) = sim.views()
    assert view.avg_entry == pytest.approx((4 * 101 + 5 * 102) / 9)
    assert sim.cash == pytest.approx(1000 - 4 * 101 - 5 * 102)
    sim.step(bar(2, 103, 103, 103, 103, exit_long=True))
    (exit_order,) = sim.pending()
    assert (exit_order.intent, exit_order.qty, exit_order.buy, exit_order.reason) == (
        "exit",
        9.0,
        False,
        "signal",
    )
    sim.book(exit_order, 9.0, 104.0, 0.9, 9.0)  # the whole position: the order ends by itself
    assert sim.pending() == [] and sim.position("main") == 0.0
    result = sim.finish()
    (trade,) = result.trades
    assert (trade.qty, trade.exit_price, trade.fees) == (9.0, 104.0, 0.9)
    assert trade.pnl == pytest.approx(9 * 104 - (4 * 101 + 5 * 102) - 0.9)
    assert list(result.order_table.filled_qty) == [4.0, 5.0, 9.0]


def test_a_bracket_hit_sends_a_market_exit_instead_of_filling_at_the_level() -> None:
    """A 5% stop crossed on a closed bar: a pending exit (stop_loss), booked at the exchange's price."""
    s = replace(sleeve([100.0] * 4), bracket=Bracket(stop=("percent", 0.05)))
    sim = Simulator(solo(s, capital=1000.0), external=True)
    sim.step(bar(0, 100, 100, 100, 100, entry_long=True))
    (order,) = sim.pending()
    sim.book(order, 5.0, 100.0, 0.0, order.qty)
    sim.drop("main")
    sim.step(bar(1, 99, 99, 90, 91))  # through the 95 stop
    assert sim.position("main") == 5.0  # nothing filled at the level
    (exit_order,) = sim.pending()
    assert (exit_order.intent, exit_order.reason, exit_order.qty) == ("exit", "stop_loss", 5.0)
    sim.book(exit_order, 5.0, 90.5, 0.0, 5.0)
    (trade,) = sim.finish().trades
    assert (trade.exit_reason, trade.exit_price) == ("stop_loss", 90.5)


def test_the_simulated_broker_is_unchanged() -> None:
    """Without an exchange the same bars fill at the next open by the fill model (no pending left)."""
    sim = Simulator(solo(sleeve([100.0] * 3), capital=1000.0))
    sim.step(bar(0, 100, 100, 100, 100, entry_long=True))
    sim.step(bar(1, 101, 101, 101, 101))
    assert sim.pending() == [] and sim.position("main") == pytest.approx(1000 / 101)
    assert not math.isnan(sim.views()[0].avg_entry)


def test_a_reload_keeps_the_halt_the_account_and_the_positions() -> None:
    """`Simulator.migrated`: other settings and rules, same sleeves: the state carries over.

    A drawdown halt fired under the old version stays in force under the new one (an edit never clears a
    halt), the open position and the cash carry over, the new stop applies, and a rule that ran before
    keeps its state while a new one starts fresh.
    """
    from runtime.plan.model import Compare, RiskRule

    halt = RiskRule("portfolio", "halt", "halt when drawdown > 5%", Compare("drawdown", ">", 0.05))
    old = solo(sleeve([100.0] * 4), capital=1000.0, risk=(halt,))
    sim = Simulator(old)
    sim.step(bar(0, 100, 100, 100, 100, entry_long=True))
    sim.step(bar(1, 100, 100, 100, 100))  # filled at 100: 10 units
    sim.step(bar(2, 90, 90, 90, 90))  # -10%: halted, and flattened at the next fill
    assert sim.halted
    pause = RiskRule(
        "portfolio", "pause", "pause 1h when drawdown > 50%", Compare("drawdown", ">", 0.5), pause_ms=HOUR
    )
    edited = solo(
        replace(sleeve([100.0] * 4), bracket=Bracket(stop=("percent", 0.02))),
        capital=1000.0,
        risk=(halt, pause),
    )
    moved = sim.migrated(edited)
    assert moved.halted and moved.position("main") == sim.position("main") == 10.0
    assert moved.cash == sim.cash
    moved.step(bar(3, 95, 95, 95, 95, entry_long=True))  # the halt's flatten fills; no new entry
    assert moved.position("main") == 0.0 and moved.pending() == []
    with pytest.raises(ValueError, match="other risk rules"):
        Simulator.restore(edited, sim.snapshot())  # a snapshot is not a reload: refused as before


def test_a_reload_adds_and_drops_flat_sleeves_and_keeps_their_history() -> None:
    """Sleeve b is dropped (flat) and c added: a keeps its position, budgets go to the new weights.

    b's past trade stays in the outputs under its name; a sleeve that holds a position cannot go.
    """
    a = sleeve([100.0] * 6, name="a", weight=0.5)
    b = sleeve([100.0] * 6, name="b", weight=0.5, symbol="ETH/USDT")
    sim = Simulator(PortfolioInput(capital=1000.0, quote="USDT", sleeves=(a, b)))
    sim.step(
        replace(bar(0, 100, 100, 100, 100, entry_long=True), sleeve="a"),
        replace(bar(0, 50, 50, 50, 50), sleeve="b", entry_long=True),
    )
    sim.step(
        replace(bar(1, 100, 100, 100, 100), sleeve="a"),
        replace(bar(1, 50, 50, 50, 50), sleeve="b", exit_long=True),
    )
    sim.step(replace(bar(2, 110, 110, 110, 110), sleeve="a"), replace(bar(2, 60, 60, 60, 60), sleeve="b"))
    assert sim.position("a") == 5.0 and sim.position("b") == 0.0
    c = sleeve([100.0] * 6, name="c", weight=0.5, symbol="SOL/USDT")
    with pytest.raises(ValueError, match="sleeve a holds a position"):
        sim.migrated(PortfolioInput(capital=1000.0, quote="USDT", sleeves=(b, c)))
    moved = sim.migrated(PortfolioInput(capital=1000.0, quote="USDT", sleeves=(a, c)))
    assert moved.position("a") == 5.0 and moved.equity == sim.equity
    views = {v.sleeve: v for v in moved.views()}
    assert views["a"].equity == pytest.approx(0.5 * sim.equity) and views["c"].equity == pytest.approx(
        0.5 * sim.equity
    )
    trades = moved.finish().trades
    assert [(t.sleeve, t.symbol, t.exit_reason) for t in trades] == [
        ("a", "BTC/USDT", "end"),
        ("b", "ETH/USDT", "signal"),
    ]
