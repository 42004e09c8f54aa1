"""The simulated fill model: market orders at a bar's open or close, slippage, a volume cap, brackets.

This is one client of the accounting (`accounting.apply_fill`, the record-level `book_fill`): it decides
the quantity and the price a simulated order fills at (sizing it at its first fill with
`sizing.entry_size`, capping it with `risk.apply_caps`), then books the fill. A live run's exchange
fills its orders instead: `order_qty` sizes a pending order for the exchange and `book_external` books
what the exchange reports, through the same accounting. The step hands its sleeve records in (see orders.py).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from runtime.broker.accounting import Fill, apply_fill, book_entry, mark
from runtime.broker.orders import clear_order, place_order
from runtime.broker.risk import apply_caps
from runtime.broker.sizing import entry_size, fit_entry
from runtime.broker.state import EPS, K_EXIT, K_NONE, R_TARGET, Config, Outputs, Record, State

# How much worse than the deciding close a live market entry may fill and still be paid for, fraction.
LIVE_PRICE_MARGIN = 0.005


class At(NamedTuple):
    """Where a simulated order may fill: a bar of its sleeve and the reference price on it."""

    bar: int  # bar index on the sleeve's clock
    time: int  # bar open time, UTC ms
    close_time: int  # close time of the time-line point, UTC ms (stamps risk events)
    price: float  # reference price: the bar's open, or its close for fill: close
    volume: float  # the bar's volume, base units


@njit(cache=True, inline="always")
def slipped(cfg: Record, ref: float, direction: int, qty: float, volume: float) -> float:
    """Market fill price: `ref` moved against the order by fixed slippage plus volume impact."""
    slip = cfg.slip
    k = cfg.impact
    if k > 0.0:
        share = qty / volume if volume > 0.0 else 1.0
        slip += k * share
    return ref * (1.0 + direction * slip)


@njit(cache=True, inline="always")
def volume_cap(cfg: Record, volume: float) -> float:
    """Largest quantity a sleeve may fill on a bar of `volume` (inf without a participation cap)."""
    share = cfg.max_volume
    return share * volume if share < np.inf else np.inf


@njit(cache=True, inline="always")
def fill_entry(
    config: Config, state: State, out: Outputs, cfg: Record, sl: Record, book: Record, s: int, at: At
) -> None:
    """Fill (part of) sleeve s's pending entry (records `cfg`, `sl`; account `book`) on bar `at`."""
    side = sl.ord_side
    kind = sl.ord_kind
    ref, volume = at.price, at.volume
    fee_rate = cfg.fee_taker
    # Size the order once, at its first fill, with the fixed-slippage price.
    if math.isnan(sl.ord_req):
        req = entry_size(cfg, sl, book, state.kelly, s, kind, ref * (1.0 + side * cfg.slip))
        sl.ord_req = req
        sl.ord_rem = req
    qty = min(sl.ord_rem, volume_cap(cfg, volume))
    if qty <= 0.0 and sl.ord_rem > 0.0:
        # No volume this bar: wait for the next one.
        sl.ord_due = at.bar + 1
        return
    if config.rules.shape[0] > 0:
        qty = apply_caps(config, state, out, s, side, qty, ref, at.close_time)
    price = slipped(cfg, ref, side, qty, volume)
    qty = fit_entry(cfg, sl, book, qty, price)
    if qty <= 0.0:
        clear_order(sl)
        return
    fee = qty * price * fee_rate
    first = sl.ord_filled == 0
    book_entry(
        cfg,
        sl,
        book,
        out,
        s,
        Fill(at.bar, at.time, side, kind, sl.ord_reason, sl.ord_req, qty, price, fee, first),
    )
    sl.ord_filled = 1
    rest = sl.ord_rem - qty
    if rest <= EPS * sl.ord_req or volume_cap(cfg, volume) >= sl.ord_rem:
        # Filled, or shrunk by a cap or the cash: the order is done.
        clear_order(sl)
    else:
        sl.ord_rem = rest
        sl.ord_due = at.bar + 1


@njit(cache=True, inline="always")
def fill_pending(
    config: Config, state: State, out: Outputs, cfg: Record, sl: Record, book: Record, s: int, at: At
) -> None:
    """Fill sleeve s's pending order (records `cfg`, `sl`; account `book`) if it is due on bar `at`."""
    kind = sl.ord_kind
    j = at.bar
    if kind == K_NONE or sl.ord_due > j:
        return
    if kind != K_EXIT:
        fill_entry(config, state, out, cfg, sl, book, s, at)
        return
    if sl.qty <= 0.0:
        clear_order(sl)
        return
    if math.isnan(sl.ord_req):
        sl.ord_req = sl.qty
    volume = at.volume
    qty = min(sl.qty, volume_cap(cfg, volume))
    if qty <= 0.0:
        sl.ord_due = j + 1
        return
    side = sl.side
    price = slipped(cfg, at.price, -side, qty, volume)
    fill = Fill(
        j, at.time, side, K_EXIT, sl.ord_reason, sl.ord_req, qty, price, qty * price * cfg.fee_taker, True
    )
    apply_fill(cfg, sl, book, out, state.kelly, s, fill)
    if sl.side == 0:
        clear_order(sl)
    else:
        sl.ord_due = j + 1


@njit(cache=True)
def fill_bracket(
    cfg: Record,
    sl: Record,
    book: Record,
    out: Outputs,
    ring: np.ndarray,
    s: int,
    at: At,
    price: float,
    reason: int,
) -> None:
    """Close sleeve s's position on bar `at` where `brackets.bracket_hit` found a level at `price`.

    `reason` says which level (a target fills as a resting limit order, the stops as market orders);
    `ring`: the Kelly rings.
    """
    side = sl.side
    req = sl.qty
    qty = min(req, volume_cap(cfg, at.volume))
    if reason == R_TARGET:
        # The target is a resting limit order: maker fee, no slippage.
        fee_rate = cfg.fee_maker
    else:
        fee_rate = cfg.fee_taker
        price = slipped(cfg, price, -side, qty, at.volume)
    if qty > 0.0:
        fill = Fill(at.bar, at.time, side, K_EXIT, reason, req, qty, price, qty * price * fee_rate, True)
        apply_fill(cfg, sl, book, out, ring, s, fill)
    if sl.side != 0:
        # The participation cap left a rest: it goes out as a market order on the next bar.
        place_order(sl, K_EXIT, side, at.bar + 1, reason)
        sl.ord_req = req if qty > 0.0 else sl.qty


@njit(cache=True)
def order_qty(config: Config, state: State, out: Outputs, s: int, price: float, close_time: int) -> float:
    """Quantity sleeve s's pending order should ask an exchange for, at expected `price` (live).

    An exit asks for the whole position; an entry is sized like a simulated one (`entry_size`, then the
    cap rules and the cash, on the amount step) at `price`, the close it was decided at plus the fixed
    slippage. 0 when nothing can be asked for (the order is then dropped by the caller).
    """
    cfg, sl, book = config.sleeves[s], state.sleeves[s], state.book[0]
    side, kind = sl.ord_side, sl.ord_kind
    if kind == K_NONE:
        return 0.0
    if kind == K_EXIT:
        return sl.qty
    expected = price * (1.0 + side * cfg.slip)
    qty = entry_size(cfg, sl, book, state.kelly, s, kind, expected)
    if config.rules.shape[0] > 0:
        qty = apply_caps(config, state, out, s, side, qty, expected, close_time)
    # The fill price is not known yet: the cash must cover a price LIVE_PRICE_MARGIN worse.
    return fit_entry(cfg, sl, book, qty, expected * (1.0 + LIVE_PRICE_MARGIN))


@njit(cache=True)
def book_external(config: Config, state: State, out: Outputs, s: int, fill: Fill, done: bool) -> None:
    """Book one exchange fill of sleeve s's pending order; `done` empties the slot (the order is over)."""
    cfg, sl, book = config.sleeves[s], state.sleeves[s], state.book[0]
    if fill.qty > 0.0:
        apply_fill(cfg, sl, book, out, state.kelly, s, fill)
        sl.ord_filled = 1
        # The account's equity reflects the fill at once (not only at the next bar's mark).
        mark(state.sleeves, book)
    if done or (fill.intent == K_EXIT and sl.side == 0):
        clear_order(sl)
