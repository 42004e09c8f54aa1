"""Hand-computed trades of one sleeve: fills, fees, brackets, time limits, partial fills, sizing."""

from __future__ import annotations

import numpy as np
import pytest
from sim_builders import HOUR, T0, sleeve, solo

from runtime.broker.result import Trade
from runtime.broker.simulator import simulate
from runtime.plan.model import Bracket, Execution, Precision, Sizing

FLAT = [100.0] * 6  # six bars at 100
FEES = Execution(fee_maker=0.0005, fee_taker=0.001)  # maker 0.05%, taker 0.1%


def only_trade(**kw: object) -> Trade:
    """Simulate a one-sleeve portfolio and return its single trade."""
    result = simulate(solo(sleeve(**kw)))  # type: ignore[arg-type]
    assert len(result.trades) == 1
    return result.trades[0]


def test_entry_fills_at_next_open_and_stays_open_at_the_end() -> None:
    result = simulate(solo(sleeve([100, 100, 110, 120, 130], el=(1,))))
    (t,) = result.trades
    assert (t.entry_bar, t.entry_time, t.entry_price, t.exit_time, t.exit_bar) == (
        2,
        T0 + 2 * HOUR,
        110.0,
        None,
        4,
    )
    assert (t.exit_reason, t.exit_price, t.fees) == ("end", 130.0, 0.0)
    assert t.qty == pytest.approx(1000 / 110, rel=1e-15)
    assert t.pnl == pytest.approx(1000 / 110 * 20, rel=1e-12)
    assert result.equity.tolist() == pytest.approx([1000, 1000, 1000, 1000 * 120 / 110, 1000 * 130 / 110])
    assert result.time[0] == T0 + HOUR  # the time line holds bar close times


def test_fees_are_inside_the_budget_and_charged_per_side() -> None:
    result = simulate(solo(sleeve([100, 100, 110, 120, 130, 130], el=(1,), xl=(3,), execution=FEES)))
    (t,) = result.trades
    qty = 1000 / (110 * 1.001)
    assert t.qty == pytest.approx(qty, rel=1e-15)
    assert t.fees == pytest.approx(qty * 110 * 0.001 + qty * 130 * 0.001, rel=1e-12)
    assert (t.exit_reason, t.exit_price, t.exit_bar) == ("signal", 130.0, 4)
    assert result.cash[-1] == pytest.approx(qty * 130 * 0.999, rel=1e-12)
    assert [(o.side, o.intent, o.price) for o in result.orders] == [
        ("buy", "entry", 110.0),
        ("sell", "exit", 130.0),
    ]


def test_an_order_decided_on_the_last_bar_never_fills() -> None:
    result = simulate(solo(sleeve(FLAT, el=(5,))))
    assert (result.trades, result.orders) == ((), ())


def test_exit_wins_over_entry_on_the_same_bar() -> None:
    assert simulate(solo(sleeve(FLAT, el=(1,), xl=(1,)))).trades == ()


def test_stop_loss_is_checked_on_the_fill_bar_after_its_open() -> None:
    # The entry fills at bar 1's open (100); the rest of bar 1 dips to 90: stopped out at 95 on bar 1.
    t = only_trade(
        o=[100, 100, 100, 100], h=[100, 100, 101, 100], lo=[100, 90, 94, 100], c=[100, 100, 96, 100], el=(0,),
        bracket=Bracket(stop=("percent", 0.05)),
    )  # fmt: skip
    assert (t.exit_reason, t.entry_bar, t.exit_bar, t.exit_price, t.pnl) == ("stop_loss", 1, 1, 95.0, -50.0)


def test_short_target_is_checked_on_the_fill_bar() -> None:
    t = only_trade(
        o=[100, 100, 100, 100], h=[100, 101, 100, 100], lo=[100, 89, 100, 100], es=(0,),
        bracket=Bracket(stop=("percent", 0.05), take_profit=("percent", 0.10)),
    )  # fmt: skip
    assert (t.side, t.exit_reason, t.exit_bar, t.exit_price, t.pnl) == (
        "short",
        "take_profit",
        1,
        90.0,
        100.0,
    )


@pytest.mark.parametrize(
    ("ambiguity", "reason", "price"), [("worst_case", "stop_loss", 95.0), ("best_case", "take_profit", 110.0)]
)
def test_ambiguity_decides_on_the_fill_bar_too(ambiguity: str, reason: str, price: float) -> None:
    t = only_trade(
        o=[100, 100, 100], h=[100, 112, 100], lo=[100, 94, 100], el=(0,),
        execution=Execution(fee_maker=0.0, fee_taker=0.0, ambiguity=ambiguity),  # type: ignore[arg-type]
        bracket=Bracket(stop=("percent", 0.05), take_profit=("percent", 0.10)),
    )  # fmt: skip
    assert (t.exit_reason, t.exit_bar, t.exit_price) == (reason, 1, pytest.approx(price, rel=1e-15))


def test_fill_bar_high_moves_the_trailing_stop_from_the_next_bar_only() -> None:
    # Bar 1 (the fill bar) runs to 120 and dips to 95: whether the dip came after the high is unknown, so
    # the trail stays at 90 (10% under the entry) on bar 1; from bar 2 on it is 108 (10% under 120).
    t = only_trade(
        o=[100, 100, 110, 110], h=[100, 120, 112, 110], lo=[100, 95, 107, 110], c=[100, 110, 110, 110],
        el=(0,), bracket=Bracket(trailing_stop=("percent", 0.10)),
    )  # fmt: skip
    assert (t.exit_reason, t.exit_bar, t.exit_price) == ("trailing_stop", 2, 108.0)


def test_fill_bar_reaching_breakeven_moves_the_stop_from_the_next_bar_only() -> None:
    # Bar 1 reaches 1R (105) and dips to 99: the stop is still at 95 there; on bar 2 it is at the entry.
    t = only_trade(
        o=[100, 100, 101, 101], h=[100, 106, 102, 101], lo=[100, 99, 99.5, 101], el=(0,),
        bracket=Bracket(stop=("percent", 0.05), breakeven_after=1.0),
    )  # fmt: skip
    assert (t.exit_reason, t.exit_bar, t.exit_price, t.pnl) == ("stop_loss", 2, 100.0, 0.0)


def test_with_fill_at_the_close_the_brackets_start_on_the_next_bar() -> None:
    # Bar 0 decides and fills at its close (100): its low of 90 came before the fill. Bar 1 stops out.
    t = only_trade(
        o=[100, 100, 100], h=[100, 100, 100], lo=[90, 94, 100], el=(0,),
        execution=Execution(fill="close", fee_maker=0.0, fee_taker=0.0),
        bracket=Bracket(stop=("percent", 0.05)),
    )  # fmt: skip
    assert (t.entry_bar, t.exit_bar, t.exit_price) == (0, 1, 95.0)


def test_excursions_count_the_bars_held_through_and_the_fills() -> None:
    # Long from 100 (bar 1's open): bars 1 and 2 are held through (lows 97 / 96, highs 104 / 103); bar 3
    # is the exit bar at its open, 102, whose range is after the exit.
    t = only_trade(
        o=[100, 100, 101, 102, 102], h=[100, 104, 103, 120, 100], lo=[100, 97, 96, 80, 100], el=(0,), xl=(2,),
    )  # fmt: skip
    assert (t.exit_bar, t.exit_price) == (3, 102.0)
    assert (t.mae, t.mfe) == (pytest.approx(-0.04, rel=1e-12), pytest.approx(0.04, rel=1e-12))


def test_excursions_of_a_stopped_short_end_at_the_stop() -> None:
    # Short from 100: the fill bar is held through (low 98, high 101); bar 2 hits the 5% stop at 105 with
    # a high of 110, which counts only as far as the fill.
    t = only_trade(
        o=[100, 100, 100, 100], h=[100, 101, 110, 100], lo=[100, 98, 99, 100], es=(0,),
        bracket=Bracket(stop=("percent", 0.05)),
    )  # fmt: skip
    assert (t.exit_reason, t.exit_bar, t.exit_price) == ("stop_loss", 2, 105.0)
    assert (t.mae, t.mfe) == (pytest.approx(-0.05, rel=1e-12), pytest.approx(0.02, rel=1e-12))


def test_excursions_never_change_sign() -> None:
    # A long that only rose: no adverse excursion; the open one is marked at the last close.
    t = only_trade(o=[100, 100, 105, 110], h=[100, 106, 108, 112], lo=[100, 100, 104, 109], el=(0,))
    assert (t.exit_reason, t.mae, t.mfe) == ("end", 0.0, pytest.approx(0.12, rel=1e-12))


def test_a_gap_through_the_stop_fills_at_the_open() -> None:
    t = only_trade(o=[100, 100, 90, 90], el=(0,), bracket=Bracket(stop=("percent", 0.05)))
    assert (t.exit_reason, t.exit_price, t.pnl) == ("stop_loss", 90.0, -100.0)


def test_take_profit_is_a_maker_fill_at_the_target() -> None:
    t = only_trade(
        o=[100, 100, 100, 100], h=[100, 100, 112, 100], c=[100, 100, 105, 100], el=(0,), execution=FEES,
        bracket=Bracket(stop=("percent", 0.05), take_profit=("R", 2.0)),
    )  # fmt: skip
    qty = 1000 / 100.1
    assert (t.exit_reason, t.exit_price) == ("take_profit", 110.0)
    assert t.pnl == pytest.approx(qty * 10 - qty * 100 * 0.001 - qty * 110 * 0.0005, rel=1e-12)


@pytest.mark.parametrize(
    ("ambiguity", "reason", "price"), [("worst_case", "stop_loss", 95.0), ("best_case", "take_profit", 110.0)]
)
def test_ambiguity_decides_when_stop_and_target_share_a_bar(
    ambiguity: str, reason: str, price: float
) -> None:
    t = only_trade(
        o=[100, 100, 100, 100], h=[100, 100, 112, 100], lo=[100, 100, 94, 100], el=(0,),
        execution=Execution(fee_maker=0.0, fee_taker=0.0, ambiguity=ambiguity),  # type: ignore[arg-type]
        bracket=Bracket(stop=("percent", 0.05), take_profit=("percent", 0.10)),
    )  # fmt: skip
    assert (t.exit_reason, t.exit_price) == (reason, pytest.approx(price, rel=1e-15))


def test_short_stop_and_collateral_accounting() -> None:
    result = simulate(
        solo(
            sleeve(
                [100, 100, 100, 100], h=[100, 100, 106, 100], es=(0,), bracket=Bracket(stop=("percent", 0.05))
            )
        )
    )
    (t,) = result.trades
    assert (t.side, t.exit_reason, t.exit_price, t.qty, t.pnl) == ("short", "stop_loss", 105.0, 10.0, -50.0)
    assert result.equity[-1] == 950.0
    assert [o.side for o in result.orders] == ["sell", "buy"]


def test_trailing_stop_follows_the_best_price_of_earlier_bars() -> None:
    t = only_trade(
        o=[100, 100, 118, 118], h=[100, 100, 120, 119], lo=[100, 100, 115, 107], c=[100, 100, 118, 110],
        el=(0,), bracket=Bracket(trailing_stop=("percent", 0.10)),
    )  # fmt: skip
    assert (t.exit_reason, t.exit_bar, t.exit_price, t.pnl) == ("trailing_stop", 3, 108.0, 80.0)


def test_trailing_starts_only_after_the_profit_threshold() -> None:
    # Without trail_after the 5% trail (from 104) would stop at 98.8 on bar 3; with 1R of 5% it waits.
    kw = {"o": [100, 100, 100, 100], "h": [100, 100, 104, 100], "lo": [100, 100, 100, 98], "el": (0,)}
    trail = Bracket(stop=("percent", 0.05), trailing_stop=("percent", 0.05))
    assert only_trade(**kw, bracket=trail).exit_reason == "trailing_stop"
    waiting = Bracket(stop=("percent", 0.05), trailing_stop=("percent", 0.05), trail_after=("R", 1.0))
    assert only_trade(**kw, bracket=waiting).exit_reason == "end"


def test_breakeven_moves_the_stop_to_the_entry_price() -> None:
    t = only_trade(
        o=[100, 100, 103, 103], h=[100, 100, 106, 103], lo=[100, 100, 101, 99], el=(0,),
        bracket=Bracket(stop=("percent", 0.05), breakeven_after=1.0),
    )  # fmt: skip
    assert (t.exit_reason, t.exit_bar, t.exit_price, t.pnl) == ("stop_loss", 3, 100.0, 0.0)


def test_distance_stop_is_read_at_the_decision_bar_and_frozen() -> None:
    dist = np.array([3.0, 50.0, 50.0, 50.0])
    t = only_trade(
        o=[100, 100, 100, 100], lo=[100, 100, 96, 100], el=(0,), bracket=Bracket(stop=("distance", dist))
    )
    assert (t.exit_reason, t.exit_price) == ("stop_loss", 97.0)


def test_max_hold_and_cooldown() -> None:
    result = simulate(
        solo(sleeve([100.0] * 9, el=(0, 3, 5), bracket=Bracket(max_hold_bars=2, cooldown_bars=2)))
    )
    assert [(t.entry_bar, t.exit_bar, t.exit_reason) for t in result.trades] == [
        (1, 3, "max_hold"),
        (6, 8, "max_hold"),
    ]


def test_participation_cap_fills_entries_and_exits_over_several_bars() -> None:
    result = simulate(
        solo(
            sleeve(
                [100.0] * 12,
                el=(0,),
                xl=(6,),
                volume=[4.0] * 12,
                execution=Execution(fee_maker=0.0, fee_taker=0.0, max_volume=0.5),
            )
        )
    )
    (t,) = result.trades
    assert (t.entry_bar, t.entry_price, t.qty, t.exit_bar, t.exit_time) == (
        1,
        100.0,
        10.0,
        11,
        T0 + 11 * HOUR,
    )
    assert [(o.time, o.intent, o.requested_qty, o.filled_qty) for o in result.orders] == [
        (T0 + b * HOUR, "entry" if b < 6 else "exit", 10.0, 2.0) for b in (1, 2, 3, 4, 5, 7, 8, 9, 10, 11)
    ]


def test_latency_and_fill_at_close() -> None:
    o, c = [100, 101, 102, 103, 104], [100.5, 101.5, 102.5, 103.5, 104.5]
    late = only_trade(o=o, c=c, el=(0,), execution=Execution(fee_maker=0.0, fee_taker=0.0, latency_bars=1))
    assert (late.entry_bar, late.entry_price) == (2, 102.0)
    now = only_trade(o=o, c=c, el=(0,), execution=Execution(fee_maker=0.0, fee_taker=0.0, fill="close"))
    assert (now.entry_bar, now.entry_price) == (0, 100.5)


def test_precision_floors_to_the_step_and_refuses_small_orders() -> None:
    t = only_trade(o=[30.0] * 3, el=(0,), precision=Precision(amount_step=0.01))
    assert t.qty == pytest.approx(33.33, abs=1e-9)
    refused = simulate(solo(sleeve([30.0] * 3, el=(0,), precision=Precision(min_notional=2000.0))))
    assert (refused.trades, refused.orders) == ((), ())


def test_volume_impact_slippage_and_cash_shrink() -> None:
    # 10 units of a 100-unit bar: slippage 0.1 * 10% = 1%, so 101; 10 * 101 > 1000 cash, so qty shrinks.
    t = only_trade(
        o=[100.0] * 3,
        el=(0,),
        volume=[100.0] * 3,
        execution=Execution(fee_maker=0.0, fee_taker=0.0, volume_impact_k=0.1),
    )
    assert (t.entry_price, t.qty) == (101.0, pytest.approx(1000 / 101, rel=1e-15))


@pytest.mark.parametrize(
    ("sizing", "qty"),
    [
        (Sizing("equity_pct", 0.25), 2.5),
        (Sizing("risk_per_trade", 0.01), 2.0),
        (Sizing("fixed", 3.0), 3.0),
        (Sizing("kelly", kelly_lookback=5, kelly_min=0.1), 1.0),
    ],
)
def test_sizing_rules(sizing: Sizing, qty: float) -> None:
    t = only_trade(o=[100.0] * 3, el=(0,), sizing=sizing, bracket=Bracket(stop=("percent", 0.05)))
    assert t.qty == pytest.approx(qty, rel=1e-12)


def test_kelly_bets_its_fraction_once_enough_trades_closed() -> None:
    # Two wins of +10% and one loss of -5% (at 0.1 of equity each, the floor) -> W = 2/3, win/loss ratio 2,
    # full Kelly 2/3 - (1/3) / 2 = 0.5, half Kelly 0.25 of the equity for the fourth entry.
    o = [100, 100, 110, 100, 110, 100, 95, 100, 100]
    kelly = Sizing("kelly", kelly_fraction=0.5, kelly_lookback=3, kelly_cap=0.5, kelly_min=0.1)
    result = simulate(solo(sleeve(o, el=(0, 2, 4, 6), xl=(1, 3, 5), sizing=kelly)))
    first, *_, last = result.trades
    assert first.qty == pytest.approx(1.0, rel=1e-12)
    assert [round(t.ret, 12) for t in result.trades[:3]] == [0.1, 0.1, -0.05]
    assert last.qty == pytest.approx(0.25 * result.equity[6] / 100, rel=1e-12)


def test_pyramiding_adds_scaled_entries_to_one_trade() -> None:
    result = simulate(
        solo(sleeve(FLAT, el=(0, 2), sizing=Sizing("equity_pct", 0.5), max_entries=2, scale_in=0.5))
    )
    (t,) = result.trades
    assert (t.qty, t.entry_price) == (7.5, 100.0)
    assert [(o.intent, o.filled_qty) for o in result.orders] == [("entry", 5.0), ("scale_in", 2.5)]


def test_inconsistent_input_is_refused() -> None:
    with pytest.raises(ValueError, match="sleeve main: size: risk_per_trade needs a stop_loss"):
        simulate(solo(sleeve(FLAT, sizing=Sizing("risk_per_trade", 0.01))))
