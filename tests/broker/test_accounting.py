"""`size_entry` and `book_fill` on their own, as an exchange broker calls them (no simulated fills)."""

from __future__ import annotations

import numpy as np
import pytest
from sim_builders import T0, sleeve, solo

from runtime.broker.accounting import Fill, book_fill
from runtime.broker.simulator import pack_config
from runtime.broker.sizing import size_entry
from runtime.broker.state import K_ENTRY, K_EXIT, K_SCALE, R_SIGNAL, R_STOP, new_outputs, new_state
from runtime.plan.model import Execution, Sizing


def test_size_then_book_partial_fills_and_a_close() -> None:
    fee = 0.001
    pf = solo(
        sleeve([100.0], sizing=Sizing("equity_pct", 0.5), execution=Execution(fee_maker=fee, fee_taker=fee)),
        capital=1000.0,
    )
    config = pack_config(pf)
    state = new_state(config, pf.capital, 1)
    out = new_outputs(4, 4)
    # Half the equity at 100 with the fee inside the budget.
    qty = size_entry(config, state, 0, K_ENTRY, 100.0)
    assert qty == 500.0 / (100.0 * (1.0 + fee))
    # The exchange fills the order in two parts; the entry counts once.
    for part, price, first in ((0.25 * qty, 100.0, True), (0.75 * qty, 102.0, False)):
        fill = Fill(0, T0, 1, K_ENTRY, R_SIGNAL, qty, part, price, part * price * fee, first)
        book_fill(config, state, out, 0, fill)
    sl, book = state.sleeves[0], state.book[0]
    cost = 0.25 * qty * 100.0 + 0.75 * qty * 102.0
    assert (sl["side"], sl["entries"], sl["qty"]) == (1, 1, qty)
    assert sl["avg"] == pytest.approx(cost / qty)
    assert book["cash"] == pytest.approx(1000.0 - cost * (1.0 + fee))
    assert book["n_orders"] == 2 and book["n_trades"] == 0
    assert out.orders["filled"][:2].tolist() == [0.25 * qty, 0.75 * qty]
    # A scale-in asks for its multiple of an entry at the current equity (scale_in defaults to 1).
    assert size_entry(config, state, 0, K_SCALE, 104.0) > 0.0
    # The whole position goes out at 110: one closed trade row with every fee.
    fill = Fill(3, T0 + 3, 1, K_EXIT, R_STOP, qty, qty, 110.0, qty * 110.0 * fee, True)
    book_fill(config, state, out, 0, fill)
    trade = out.trades[0]
    assert (sl["side"], sl["qty"], book["n_trades"], trade["closed"], trade["exit_bar"]) == (0, 0.0, 1, 1, 3)
    expected = qty * 110.0 - cost - cost * fee - qty * 110.0 * fee
    assert trade["pnl"] == pytest.approx(expected)
    assert book["cash"] == pytest.approx(1000.0 + expected)
    assert out.orders["direction"][:3].tolist() == [1, 1, -1]
    assert np.isnan(sl["ord_req"])
