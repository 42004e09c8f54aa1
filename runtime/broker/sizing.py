"""Sizing: the quantity an entry asks for before an order exists, and what the cash and precision allow.

`size_entry` is what a broker calls before it submits an entry (the simulated fill model at an order's
first fill, the exchange broker before sending it); `fit_entry` shrinks a quantity to the cash the sleeve
and the account can pay and rounds it to the market's precision. Caps are in `risk.apply_caps`. The
record-level functions (`entry_size`, ...) take one sleeve's records, as the step's hot path does.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from runtime.broker.state import EPS, K_SCALE, O_PCT, Z_EQUITY, Z_KELLY, Z_RISK, Config, Record, State


@njit(cache=True, inline="always")
def position_value(sl: Record, price: float) -> float:
    """Value of a sleeve's position at `price` (collateral model: a short locks its entry value)."""
    qty = sl.qty
    if qty <= 0.0:
        return 0.0
    avg = sl.avg
    return qty * avg + sl.side * qty * (price - avg)


@njit(cache=True)
def kelly_fraction(cfg: Record, sl: Record, ring: np.ndarray, s: int) -> float:
    """Equity fraction Kelly bets for sleeve s, from its closed trade returns in `ring` (see model.Sizing)."""
    look = cfg.kelly_lookback
    floor = cfg.kelly_min
    n = sl.kelly_n
    if n < look:
        return floor
    # The ring holds the latest returns in write order; the last `look` of them are the window.
    size = ring.shape[1]
    wins, win_sum, loss_sum = 0, 0.0, 0.0
    for i in range(n - look, n):
        r = ring[s, i % size]
        if r > 0.0:
            wins += 1
            win_sum += r
        else:
            loss_sum -= r
    w = wins / look
    if wins == 0:
        return floor
    if loss_sum <= 0.0:
        return cfg.kelly_cap
    ratio = (win_sum / wins) / (loss_sum / (look - wins))
    f = cfg.kelly_fraction * (w - (1.0 - w) / ratio)
    return min(max(f, floor), cfg.kelly_cap)


@njit(cache=True, inline="always")
def entry_size(
    cfg: Record, sl: Record, book: Record, ring: np.ndarray, s: int, kind: int, price: float
) -> float:
    """`size_entry` on sleeve s's records (`ring`: the Kelly rings)."""
    risk = sl.risk if kind == K_SCALE else sl.pd_stop
    if kind != K_SCALE and cfg.stop_kind == O_PCT:
        risk = price * cfg.stop
    scale = cfg.scale_in if kind == K_SCALE else 1.0
    free = min(sl.cash, book.cash)
    if free <= 0.0:
        return 0.0
    unit = price * (1.0 + cfg.fee_taker)
    equity = sl.cash + position_value(sl, price)
    z = cfg.size_kind
    value = cfg.size
    if z == Z_EQUITY:
        qty = min(value * equity, free) / unit
    elif z == Z_KELLY:
        qty = min(kelly_fraction(cfg, sl, ring, s) * equity, free) / unit
    elif z == Z_RISK:
        qty = min(value * equity / risk, free / unit) if risk > 0.0 else 0.0
    else:
        qty = min(value, free / unit)
    return qty * scale


@njit(cache=True)
def size_entry(config: Config, state: State, s: int, kind: int, price: float) -> float:
    """Quantity an entry (kind K_ENTRY) or scale-in (K_SCALE) of sleeve s asks for at expected `price`.

    The fee is inside the budget (see model.Sizing); a risk-based size reads the stop distance: the
    position's R unit for a scale-in, else the frozen distance of the pending entry (or the percent stop
    at `price`).
    """
    return entry_size(config.sleeves[s], state.sleeves[s], state.book[0], state.kelly, s, kind, price)


@njit(cache=True, inline="always")
def fit_entry(cfg: Record, sl: Record, book: Record, qty: float, price: float) -> float:
    """The part of an entry of `qty` at `price` the cash allows, on the amount step; 0 below the minimums."""
    fee_rate = cfg.fee_taker
    # Cash never goes negative: shrink to what the account and the sleeve can pay.
    free = min(sl.cash, book.cash)
    if qty * price * (1.0 + fee_rate) > free:
        qty = max(free, 0.0) / (price * (1.0 + fee_rate))
    step = cfg.amount_step
    if step > 0.0:
        qty = math.floor(qty / step + 1e-9) * step
    if qty <= EPS or qty < cfg.min_qty or qty * price < cfg.min_notional:
        return 0.0
    return qty
