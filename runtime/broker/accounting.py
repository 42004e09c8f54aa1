"""Accounting: book any fill (simulated or reported by an exchange, partial or whole), mark, roll, rebalance.

`book_fill` is the one place a fill changes the account: cash, the position's size and average price, its
trade record, the order rows, and on a close the trade row, the losing streak and the Kelly ring. The
simulated fill model (`fills`) calls it (through `apply_fill`, on the records it already holds); the
exchange broker will call it when the exchange reports a fill.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from runtime.broker.brackets import open_levels
from runtime.broker.orders import cancel_entry
from runtime.broker.sizing import position_value
from runtime.broker.state import DAY_MS, EPS, K_EXIT, R_END, Config, Outputs, Record, State


class Fill(NamedTuple):
    """One fill of a sleeve's order, as a broker reports it."""

    bar: int  # index of the fill bar on the sleeve's clock
    time: int  # open time of the fill bar, UTC ms
    side: int  # side of the position the order opens, adds to (+1 long, -1 short) or, for an exit, closes
    intent: int  # K_ENTRY, K_SCALE or K_EXIT
    reason: int  # why the order exists (R_*)
    requested: float  # quantity the order asked for, base units
    qty: float  # quantity filled, base units (> 0)
    price: float  # fill price, slippage included
    fee: float  # fee paid, quote currency
    first: bool  # True for the order's first fill (an entry counts once however many fills it takes)


@njit(cache=True, inline="always")
def record_order(book: Record, orders: np.ndarray, s: int, direction: int, fill: Fill) -> None:
    """Append one fill of sleeve s to the order rows (counted by the account record `book`)."""
    n = book.n_orders
    row = orders[n]
    row.time = fill.time
    row.sleeve = s
    row.direction = direction
    row.intent = fill.intent
    row.reason = fill.reason
    row.requested = fill.requested
    row.filled = fill.qty
    row.price = fill.price
    row.fee = fill.fee
    book.n_orders = n + 1


@njit(cache=True, inline="always")
def widen(sl: Record, low: float, high: float) -> None:
    """Widen the range of prices the position has seen by a fill price (low = high) or a bar held through.

    A bar counts when the position was open over all of it: from its open (filled before or at it, and no
    bracket hit on it) to its close. A bar that closes the position at a level counts by its fill price
    only, since where the bar went before the level was hit is unknown.
    """
    # Stored unconditionally: no branch to mispredict on the hot path.
    sl.seen_low = min(sl.seen_low, low)
    sl.seen_high = max(sl.seen_high, high)


@njit(cache=True, inline="always")
def close_trade(
    book: Record,
    trades: np.ndarray,
    sl: Record,
    s: int,
    closed: bool,
    exit_time: int,
    exit_price: float,
    exit_bar: int,
    reason: int,
    last_price: float,
) -> float:
    """Write sleeve s's position as a trade row (closed, or open and marked at `last_price`); return pnl."""
    side = sl.side
    qty = sl.qty
    gross = sl.realized + side * qty * (last_price - sl.avg)
    pnl = gross - sl.fees
    n = book.n_trades
    row = trades[n]
    row.sleeve = s
    row.side = side
    row.entry_time = sl.entry_time
    row.entry_price = sl.notional / sl.entered
    row.closed = 1 if closed else 0
    row.exit_time = exit_time if closed else 0
    row.exit_price = exit_price
    row.qty = sl.entered
    row.pnl = pnl
    row.ret = pnl / sl.notional
    row.fees = sl.fees
    row.reason = reason
    row.entry_bar = sl.entry_bar
    row.exit_bar = exit_bar
    # Excursions: the worst and best price seen (the mark included), as returns on the entry price, with
    # the entry itself as the zero (a position never below its entry has no adverse excursion).
    entry = row.entry_price
    low = min(sl.seen_low, exit_price) / entry - 1.0
    high = max(sl.seen_high, exit_price) / entry - 1.0
    row.mae = min(low if side > 0 else -high, 0.0)
    row.mfe = max(high if side > 0 else -low, 0.0)
    book.n_trades = n + 1
    return pnl


@njit(cache=True, inline="always")
def book_entry(cfg: Record, sl: Record, book: Record, out: Outputs, s: int, fill: Fill) -> None:
    """Book an entry or scale-in fill: pay for it, grow the position, set brackets on a new one."""
    qty, price, fee, side = fill.qty, fill.price, fill.fee, fill.side
    cost = qty * price
    book.cash = max(book.cash - cost - fee, 0.0)
    sl.cash -= cost + fee
    opening = sl.qty <= 0.0
    if opening:
        # A new position: reset the trade record.
        sl.side = side
        sl.entry_bar = fill.bar
        sl.entry_time = fill.time
        sl.entries = 0
        sl.entered = 0.0
        sl.notional = 0.0
        sl.fees = 0.0
        sl.realized = 0.0
        sl.exit_qty = 0.0
        sl.exit_value = 0.0
        sl.seen_low = price
        sl.seen_high = price
    widen(sl, price, price)
    if fill.first:
        sl.entries += 1
        sl.today += 1
        book.today += 1
    total = sl.qty + qty
    sl.avg = (sl.qty * sl.avg + cost) / total
    sl.qty = total
    sl.entered += qty
    sl.notional += cost
    sl.fees += fee
    if opening:
        open_levels(cfg, sl, side)
    record_order(book, out.orders, s, side, fill)


@njit(cache=True, inline="always")
def book_exit(
    cfg: Record, sl: Record, book: Record, out: Outputs, ring: np.ndarray, s: int, fill: Fill
) -> None:
    """Book an exit fill: release the collateral and profit; when all is closed, write the trade row."""
    qty, price, fee = fill.qty, fill.price, fill.fee
    side = sl.side
    avg = sl.avg
    gross = side * qty * (price - avg)
    # The released collateral plus the profit comes back to the sleeve's and the account's cash.
    proceeds = qty * avg + gross - fee
    book.cash += proceeds
    sl.cash += proceeds
    sl.realized += gross
    sl.fees += fee
    sl.exit_qty += qty
    sl.exit_value += qty * price
    widen(sl, price, price)
    rest = sl.qty - qty
    record_order(book, out.orders, s, -side, fill)
    if rest > EPS * sl.entered:
        sl.qty = rest
        return
    sl.qty = 0.0
    exit_price = sl.exit_value / sl.exit_qty
    pnl = close_trade(book, out.trades, sl, s, True, fill.time, exit_price, fill.bar, fill.reason, avg)
    # Bookkeeping read by risk metrics and Kelly sizing.
    if pnl < 0.0:
        sl.consec += 1
        book.consec += 1
    else:
        sl.consec = 0
        book.consec = 0
    ring[s, sl.kelly_n % ring.shape[1]] = pnl / sl.notional
    sl.kelly_n += 1
    sl.side = 0
    sl.cool_until = fill.bar + cfg.cooldown
    cancel_entry(sl)


@njit(cache=True, inline="always")
def apply_fill(
    cfg: Record, sl: Record, book: Record, out: Outputs, ring: np.ndarray, s: int, fill: Fill
) -> None:
    """`book_fill` on sleeve s's records (`ring`: the Kelly rings)."""
    if fill.intent == K_EXIT:
        book_exit(cfg, sl, book, out, ring, s, fill)
    else:
        book_entry(cfg, sl, book, out, s, fill)


@njit(cache=True)
def book_fill(config: Config, state: State, out: Outputs, s: int, fill: Fill) -> None:
    """Book one fill of sleeve s (entry, scale-in or exit; partial or whole) into the account."""
    apply_fill(config.sleeves[s], state.sleeves[s], state.book[0], out, state.kelly, s, fill)


@njit(cache=True, inline="always")
def mark(sleeves: np.ndarray, book: Record) -> float:
    """Mark every sleeve at its latest close; update equities and peaks; return the gross position value."""
    total, gross = book.cash, 0.0
    for s in range(sleeves.shape[0]):
        sl = sleeves[s]
        value = position_value(sl, sl.last)
        total += value
        gross += abs(sl.qty * sl.last)
        sleeve_equity = sl.cash + value
        sl.equity = sleeve_equity
        if sleeve_equity > sl.peak:
            sl.peak = sleeve_equity
    book.equity = total
    if total > book.peak:
        book.peak = total
    return gross


@njit(cache=True)
def roll_calendar(sleeves: np.ndarray, book: Record, time: int) -> None:
    """At the first point of a new UTC day / week, remember the equities the day / week starts from."""
    day = (time - 1) // DAY_MS  # a bar closing at 00:00 still belongs to the day before
    if day == book.day:
        return
    book.day = day
    book.day0 = book.equity
    book.today = 0
    week = (day + 3) // 7  # weeks start on Monday (1970-01-01 was a Thursday)
    new_week = week != book.week
    if new_week:
        book.week = week
        book.week0 = book.equity
    for s in range(sleeves.shape[0]):
        sl = sleeves[s]
        sl.day0 = sl.equity
        sl.today = 0
        if new_week:
            sl.week0 = sl.equity


@njit(cache=True)
def rebalance(config: Config, sleeves: np.ndarray, book: Record, time: int) -> None:
    """Reset every sleeve's budget to its target weight of equity when a rebalancing period has ended."""
    period = config.rebalance_ms
    if period <= 0.0 or time < book.next_rebalance:
        return
    book.next_rebalance = (math.floor(time / period) + 1.0) * period
    budgets(config, sleeves, book)


@njit(cache=True, inline="always")
def budgets(config: Config, sleeves: np.ndarray, book: Record) -> None:
    """Reset every sleeve's budget to its target weight of the account's equity."""
    equity = book.equity
    for s in range(sleeves.shape[0]):
        sl = sleeves[s]
        # Moving cash between sleeves shifts the sleeve's equity references by the same amount.
        delta = config.sleeves[s].weight * equity - sl.equity
        sl.cash += delta
        sl.equity += delta
        sl.peak += delta
        sl.day0 += delta
        sl.week0 += delta


@njit(cache=True)
def reset_budgets(config: Config, state: State) -> None:
    """`budgets` now, whatever the rebalancing period (a reload that added or dropped sleeves)."""
    budgets(config, state.sleeves, state.book[0])


@njit(cache=True)
def finish_open(state: State, out: Outputs) -> None:
    """Write every position still open as a trade marked at the sleeve's last close (no exit fee)."""
    sleeves, book = state.sleeves, state.book[0]
    for s in range(sleeves.shape[0]):
        sl = sleeves[s]
        if sl.qty > 0.0:
            last = sl.last
            close_trade(book, out.trades, sl, s, False, 0, last, sl.last_bar, R_END, last)
