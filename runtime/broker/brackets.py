"""Brackets: stop / target / trailing levels of a position, the bar check, trailing and breakeven moves.

Nothing here fills: `bracket_hit` says whether and where a bar closes the position, and the fill model
(`fills.fill_bracket`) books that exit; an exchange broker would place the levels as orders instead.
All take one sleeve's config and state records.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from runtime.broker.state import O_DIST, O_NONE, O_PCT, O_R, R_STOP, R_TARGET, R_TRAIL, Record


@njit(cache=True, inline="always")
def open_levels(cfg: Record, sl: Record, side: int) -> None:
    """Set the bracket levels of a new position from its first fill price and the frozen distances."""
    price = sl.avg
    kind = cfg.stop_kind
    risk = price * cfg.stop if kind == O_PCT else (sl.pd_stop if kind == O_DIST else np.nan)
    sl.risk = risk
    sl.stop = price - side * risk
    kind = cfg.tp_kind
    if kind == O_PCT:
        sl.tp = price * (1.0 + side * cfg.tp)
    elif kind == O_DIST:
        sl.tp = price + side * sl.pd_tp
    elif kind == O_R:
        sl.tp = price + side * cfg.tp * risk
    else:
        sl.tp = np.nan
    sl.extreme = price
    sl.trail = cfg.trail if cfg.trail_kind == O_PCT else sl.pd_trail
    kind = cfg.trail_after_kind
    if kind == O_PCT:
        sl.trail_at = price * (1.0 + side * cfg.trail_after)
    elif kind == O_R:
        sl.trail_at = price + side * cfg.trail_after * risk
    sl.trail_on = 1 if cfg.trail_kind != O_NONE and kind == O_NONE else 0
    sl.be_at = price + side * cfg.breakeven * risk
    sl.be_done = 0


@njit(cache=True, inline="always")
def bracket_hit(cfg: Record, sl: Record, o: float, h: float, lo: float) -> tuple[bool, float, int]:
    """Whether a bar (open, high, low) hits the stop, trailing stop or target: (hit, price, reason).

    The price is the level (or the open when the bar gaps through it), before slippage.
    """
    side = sl.side
    # Work in "favourable direction" units: for a short, prices are negated so that one code path serves.
    sg = float(side)
    fo = sg * o
    best = sg * h if side > 0 else sg * lo
    worst = sg * lo if side > 0 else sg * h
    stop = sg * sl.stop
    reason = R_STOP
    if sl.trail_on == 1:
        ext = sl.extreme
        dist = ext * sl.trail if cfg.trail_kind == O_PCT else sl.trail
        trail = sg * (ext - sg * dist)
        if math.isnan(stop) or trail > stop:
            stop = trail
            reason = R_TRAIL
    target = sg * sl.tp
    has_stop = not math.isnan(stop)
    has_target = not math.isnan(target)
    price, hit, is_target = 0.0, False, False
    if has_stop and fo <= stop:
        price, hit = o, True
    elif has_target and fo >= target:
        price, hit, is_target = o, True, True
    else:
        hit_stop = has_stop and worst <= stop
        hit_target = has_target and best >= target
        # Both inside one bar: the ambiguity setting decides which came first.
        is_target = cfg.best_case == 1 if hit_stop and hit_target else hit_target
        if hit_stop or hit_target:
            hit = True
            price = sg * (target if is_target else stop)
    return hit, price, R_TARGET if is_target else reason


@njit(cache=True, inline="always")
def follow(cfg: Record, sl: Record, h: float, lo: float) -> None:
    """A bar that left the position open: its best price feeds the trailing stop and the breakeven move."""
    side = sl.side
    sg = float(side)
    best = sg * h if side > 0 else sg * lo
    if best > sg * sl.extreme:
        sl.extreme = sg * best
    if cfg.trail_kind != O_NONE and sl.trail_on == 0 and best >= sg * sl.trail_at:
        sl.trail_on = 1
    if sl.be_done == 0 and best >= sg * sl.be_at:
        sl.be_done = 1
        avg = sl.avg
        current = sl.stop
        if math.isnan(current) or sg * avg > sg * current:
            sl.stop = avg
