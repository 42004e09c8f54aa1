"""The simulated fill model: market orders at a bar's open or close, slippage, a volume cap, brackets.

This is one client of `accounting.book_fill`: it decides the quantity and the price a simulated order
fills at (sizing it at its first fill with `sizing.size_entry`, capping it with `risk.apply_caps`), then
books the fill. The exchange broker of a live run replaces this module, not the accounting.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from runtime.broker.accounting import Fill, book_fill
from runtime.broker.brackets import bracket_hit, follow
from runtime.broker.orders import clear_order, place_order
from runtime.broker.risk import apply_caps
from runtime.broker.sizing import fit_entry, size_entry
from runtime.broker.state import EPS, K_EXIT, K_NONE, R_TARGET, Config, Outputs, State


@njit(cache=True, inline="always")
def slipped(config: Config, s: int, ref: float, direction: int, qty: float, volume: float) -> float:
    """Market fill price: `ref` moved against the order by fixed slippage plus volume impact."""
    cfg = config.sleeves[s]
    slip = cfg.slip
    k = cfg.impact
    if k > 0.0:
        share = qty / volume if volume > 0.0 else 1.0
        slip += k * share
    return ref * (1.0 + direction * slip)


@njit(cache=True, inline="always")
def volume_cap(config: Config, s: int, volume: float) -> float:
    """Largest quantity sleeve s may fill on a bar of `volume` (inf without a participation cap)."""
    share = config.sleeves[s].max_volume
    return share * volume if share < np.inf else np.inf


@njit(cache=True, inline="always")
def fill_entry(
    config: Config,
    state: State,
    out: Outputs,
    s: int,
    j: int,
    time: int,
    close_time: int,
    ref: float,
    volume: float,
) -> None:
    """Fill (part of) sleeve s's pending entry at reference price `ref` on bar j (open time `time`)."""
    sl = state.sleeves[s]
    side = sl.ord_side
    kind = sl.ord_kind
    fee_rate = config.sleeves[s].fee_taker
    # Size the order once, at its first fill, with the fixed-slippage price.
    if math.isnan(sl.ord_req):
        req = size_entry(config, state, s, kind, ref * (1.0 + side * config.sleeves[s].slip))
        sl.ord_req = req
        sl.ord_rem = req
    qty = min(sl.ord_rem, volume_cap(config, s, volume))
    if qty <= 0.0 and sl.ord_rem > 0.0:
        # No volume this bar: wait for the next one.
        sl.ord_due = j + 1
        return
    qty = apply_caps(config, state, out, s, side, qty, ref, close_time)
    price = slipped(config, s, ref, side, qty, volume)
    qty = fit_entry(config, state, s, qty, price)
    if qty <= 0.0:
        clear_order(state, s)
        return
    cost = qty * price
    fill = Fill(
        j, time, side, kind, sl.ord_reason, sl.ord_req, qty, price, cost * fee_rate, sl.ord_filled == 0
    )
    book_fill(config, state, out, s, fill)
    sl.ord_filled = 1
    rest = sl.ord_rem - qty
    if rest <= EPS * sl.ord_req or volume_cap(config, s, volume) >= sl.ord_rem:
        # Filled, or shrunk by a cap or the cash: the order is done.
        clear_order(state, s)
    else:
        sl.ord_rem = rest
        sl.ord_due = j + 1


@njit(cache=True, inline="always")
def fill_pending(
    config: Config,
    state: State,
    out: Outputs,
    s: int,
    j: int,
    time: int,
    close_time: int,
    ref: float,
    volume: float,
) -> None:
    """Fill sleeve s's pending order if it is due on bar j, at reference price `ref`."""
    sl = state.sleeves[s]
    kind = sl.ord_kind
    if kind == K_NONE or sl.ord_due > j:
        return
    if kind != K_EXIT:
        fill_entry(config, state, out, s, j, time, close_time, ref, volume)
        return
    if sl.qty <= 0.0:
        clear_order(state, s)
        return
    if math.isnan(sl.ord_req):
        sl.ord_req = sl.qty
    qty = min(sl.qty, volume_cap(config, s, volume))
    if qty <= 0.0:
        sl.ord_due = j + 1
        return
    side = sl.side
    price = slipped(config, s, ref, -side, qty, volume)
    fee = qty * price * config.sleeves[s].fee_taker
    book_fill(
        config, state, out, s, Fill(j, time, side, K_EXIT, sl.ord_reason, sl.ord_req, qty, price, fee, True)
    )
    if sl.side == 0:
        clear_order(state, s)
    else:
        sl.ord_due = j + 1


@njit(cache=True)
def fill_bracket(
    config: Config,
    state: State,
    out: Outputs,
    s: int,
    j: int,
    time: int,
    o: float,
    h: float,
    lo: float,
    v: float,
) -> None:
    """Check sleeve s's brackets against bar j and fill a hit; else move the trailing stop and breakeven."""
    hit, price, reason = bracket_hit(config, state, s, o, h, lo)
    if not hit:
        follow(config, state, s, h, lo)
        return
    sl = state.sleeves[s]
    cfg = config.sleeves[s]
    side = sl.side
    req = sl.qty
    qty = min(req, volume_cap(config, s, v))
    if reason == R_TARGET:
        # The target is a resting limit order: maker fee, no slippage.
        fee_rate = cfg.fee_maker
    else:
        fee_rate = cfg.fee_taker
        price = slipped(config, s, price, -side, qty, v)
    if qty > 0.0:
        book_fill(
            config,
            state,
            out,
            s,
            Fill(j, time, side, K_EXIT, reason, req, qty, price, qty * price * fee_rate, True),
        )
    if sl.side != 0:
        # The participation cap left a rest: it goes out as a market order on the next bar.
        place_order(state, s, K_EXIT, side, j + 1, reason)
        sl.ord_req = req if qty > 0.0 else sl.qty
