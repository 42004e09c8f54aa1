"""The per-point step shared by the batch backtest and the bar-by-bar `Simulator`: decide, fill, mark."""

from __future__ import annotations

import numpy as np
from numba import njit

from runtime.broker.accounting import finish_open, mark, rebalance, roll_calendar, widen
from runtime.broker.brackets import bracket_hit, follow
from runtime.broker.fills import At, fill_bracket, fill_pending
from runtime.broker.orders import clear_order, place_order
from runtime.broker.risk import apply_rules
from runtime.broker.state import (
    DAY_MS,
    K_ENTRY,
    K_EXIT,
    K_NONE,
    K_SCALE,
    O_DIST,
    PHASE_ALL,
    PHASE_CLOSE,
    PHASE_OPEN,
    R_MAXHOLD,
    R_SIGNAL,
    Bars,
    Config,
    Outputs,
    Points,
    Record,
    State,
)


@njit(cache=True, inline="always")
def decide(
    cfg: Record,
    sl: Record,
    book: Record,
    flags: tuple[bool, bool, bool, bool],
    dist: np.ndarray,
    s: int,
    j: int,
    c: int,
    close_time: int,
) -> None:
    """Turn a sleeve's decisions at the close of bar j into a pending order (exits win over entries).

    `flags` are the bar's (entry_long, exit_long, entry_short, exit_short); the bar is column c of
    `dist` (the distance series, read for a distance bracket).
    """
    el, xl, es, xs = flags
    side = sl.side
    kind = sl.ord_kind
    due = j + cfg.latency + (0 if cfg.close_fill == 1 else 1)
    # Exits: a signal for the held side, or the holding-time limit.
    exit_reason = -1
    if side != 0 and kind != K_EXIT:
        if (side > 0 and xl) or (side < 0 and xs):
            exit_reason = R_SIGNAL
        elif cfg.max_hold > 0 and j - sl.entry_bar + 1 >= cfg.max_hold:
            exit_reason = R_MAXHOLD
    if exit_reason >= 0:
        place_order(sl, K_EXIT, side, due, exit_reason)
        return
    if kind != K_NONE:
        # An exit of the pending entry's side cancels it; otherwise a pending order blocks new ones.
        if kind != K_EXIT and ((sl.ord_side > 0 and xl) or (sl.ord_side < 0 and xs)):
            clear_order(sl)
        return
    # Entries: one unambiguous direction, no exit of that side on the same bar, not blocked.
    want = 0
    if el and not es and not xl:
        want = 1
    elif es and not el and not xs:
        want = -1
    if want == 0 or j < cfg.warmup or j < sl.cool_until:
        return
    if sl.halted == 1 or book.halted == 1:
        return
    if close_time < sl.pause or close_time < book.pause:
        return
    if side == 0:
        place_order(sl, K_ENTRY, want, due, R_SIGNAL)
    elif side == want and sl.entries < cfg.max_entries:
        place_order(sl, K_SCALE, want, due, R_SIGNAL)
    else:
        return
    # Distances are read at the decision bar and frozen for the entry.
    sl.pd_stop = dist[s, c, 0] if cfg.stop_kind == O_DIST else np.nan
    sl.pd_tp = dist[s, c, 1] if cfg.tp_kind == O_DIST else np.nan
    sl.pd_trail = dist[s, c, 2] if cfg.trail_kind == O_DIST else np.nan


@njit(cache=True)
def step_points(
    points: Points, p0: int, p1: int, bars: Bars, config: Config, state: State, out: Outputs, phase: int
) -> int:
    """Advance the portfolio over points p0..p1-1 of its time line; return the next point to run.

    See `Points` for which bars a point has (a dense time line builds and reads no event arrays). Each
    point runs in two halves: every bar's open (due orders fill, brackets), then every bar's close
    (decisions, fill: close orders), then the account is marked and the risk rules act; so a decision
    sees the trade state at its close. The batch backtest runs all points in one call (PHASE_ALL); the
    `Simulator` runs one point per call, or one half (PHASE_OPEN, PHASE_CLOSE). Point p's outputs go to
    index p. The loop stops early (returning the point it stopped at) when an output buffer could
    overflow, so the caller can grow it and call again.
    """
    return advance(points, points, p0, p1, bars, config, state, out, phase)


@njit(cache=True)
def advance(
    points: Points,
    bar_events: Points | None,
    p0: int,
    p1: int,
    bars: Bars,
    config: Config,
    state: State,
    out: Outputs,
    phase: int,
) -> int:
    """`step_points`, with `bar_events` None for a time line known to be dense (one sleeve, point p is bar p).

    numba compiles a None `bar_events` apart and drops the event lookups from that version: the sleeve is
    the constant 0, so its records are found once, not per bar (a quarter off a one-sleeve run).
    Otherwise `bar_events` is `points` and a dense line is told by its empty event arrays (see `Points`).
    """
    # Every array is taken out of its bundle once, here: inside the loop, records (which carry no
    # reference count) go to the helpers, and arrays only to the rarer paths that write rows.
    times, starts, ev_s, ev_j, ev_c = points
    bt, bo, bh, bl, bc, bv, el, xl, es, xs, dist = bars
    cfgs, sleeves, book, ring = config.sleeves, state.sleeves, state.book[0], state.kelly
    trades, orders, events = out.trades, out.orders, out.events
    eq, cash, expo = out.equity, out.cash, out.exposure
    margin_rows, margin_events = config.margin_rows, config.margin_events
    dense = ev_s.shape[0] == 0  # a dense time line (see Points)
    has_rules = config.rules.shape[0] > 0
    for p in range(p0, p1):
        if (
            book.n_trades + margin_rows > trades.shape[0]
            or book.n_orders + margin_rows > orders.shape[0]
            or book.n_events + margin_events > events.shape[0]
        ):
            return p
        time = times[p - p0]
        # `bar_events is None` is decided when compiling (numba prunes the branch not taken).
        if bar_events is None:
            k0, k1 = p, p + 1
        else:
            k0, k1 = (p, p + 1) if dense else (starts[p - p0], starts[p - p0 + 1])
        # Hot loops: helpers that do real work are only called when they have some, because such a call
        # costs more than a whole quiet bar.
        if phase != PHASE_CLOSE:
            if (time - 1) // DAY_MS != book.day:
                roll_calendar(sleeves, book, time)
            for k in range(k0, k1):
                if bar_events is None:
                    s, j, c = 0, k, k
                else:
                    s, j, c = (0, k, k) if dense else (ev_s[k], ev_j[k], ev_c[k])
                cfg, sl = cfgs[s], sleeves[s]
                # 1. Orders due on this bar fill at its open (fill: next_open).
                if cfg.close_fill != 1 and sl.ord_kind != K_NONE and sl.ord_due <= j and cfg.external == 0:
                    at = At(j, bt[s, c], time, bo[s, c], bv[s, c])
                    fill_pending(config, state, out, cfg, sl, book, s, at)
                # 2. Brackets of the open position, unless an exit is already on its way. The bar an entry
                # filled on at its open counts too: all of its range comes after the fill.
                if sl.side == 0:
                    continue
                has_bracket = cfg.stop_kind + cfg.tp_kind + cfg.trail_kind > 0
                if has_bracket and sl.ord_kind != K_EXIT:
                    hit, price, reason = bracket_hit(cfg, sl, bo[s, c], bh[s, c], bl[s, c])
                    if hit and cfg.external == 1:
                        # Live: the level was crossed on this closed bar; a market exit goes out now.
                        place_order(sl, K_EXIT, sl.side, j, reason)
                    elif hit:
                        at = At(j, bt[s, c], time, bo[s, c], bv[s, c])
                        fill_bracket(cfg, sl, book, out, ring, s, at, price, reason)
                    else:
                        # Still open: the bar feeds the trailing stop and the breakeven move (from the
                        # next bar on: the order of high and low inside a bar is unknown).
                        follow(cfg, sl, bh[s, c], bl[s, c])
                # 3. A position still open after the open is held through the bar (to its close).
                if sl.side != 0:
                    widen(sl, bl[s, c], bh[s, c])
        if phase == PHASE_OPEN:
            continue
        for k in range(k0, k1):
            if bar_events is None:
                s, j, c = 0, k, k
            else:
                s, j, c = (0, k, k) if dense else (ev_s[k], ev_j[k], ev_c[k])
            cfg, sl = cfgs[s], sleeves[s]
            # 4. Decisions at the close; with fill: close, due orders fill right away at this close.
            # Bitwise, not `or`: one test instead of four branches on the common quiet bar.
            if el[s, c] | xl[s, c] | es[s, c] | xs[s, c] or (sl.side != 0 and cfg.max_hold > 0):
                decide(cfg, sl, book, (el[s, c], xl[s, c], es[s, c], xs[s, c]), dist, s, j, c, time)
            if cfg.close_fill == 1 and sl.ord_kind != K_NONE and sl.ord_due <= j and cfg.external == 0:
                at = At(j, bt[s, c], time, bc[s, c], bv[s, c])
                fill_pending(config, state, out, cfg, sl, book, s, at)
            sl.last = bc[s, c]
            sl.last_bar = j
        # 5. Mark the account, reset budgets when due, then let the risk rules act on what they see.
        gross = mark(sleeves, book)
        if time >= book.next_rebalance:
            rebalance(config, sleeves, book, time)
        if has_rules:
            apply_rules(config, state, out, time)
        equity = book.equity
        eq[p] = equity
        cash[p] = book.cash
        expo[p] = gross / equity if equity > 0.0 else 0.0
    return p1


@njit(cache=True, nogil=True)
def step_members(points: Points, bars: Bars, config: Config, state: State, out: Outputs) -> np.ndarray:
    """Run many one-sleeve accounts (the members of a sweep) over one dense time line, one after another.

    Every bundle holds all members along its first axis: member m decides by row m of the decision and
    distance arrays of `bars` (the price rows are one row all members read), is set up by
    `config.sleeves[m]`, keeps its state in row m of `state.sleeves`, `state.book` and `state.kelly`, and
    writes row m of `out.equity`, `out.cash`, `out.exposure`, `out.trades` and `out.orders`. Risk rules,
    their state and `out.events` are the empty ones of an account without rules, shared by all. Each
    member runs through the step (its dense version, `advance` without bar events) exactly as its own batch
    backtest would, then its open position is
    written as a trade (`finish_open`). Returns the point each member stopped at: every point, or fewer
    when its trade or order rows ran out (the caller then runs that member on its own, with room to grow).
    It runs without the GIL: other Python threads go on meanwhile.
    """
    members = config.sleeves.shape[0]
    end = points.times.shape[0]
    stopped = np.empty(members, dtype=np.int64)
    for m in range(members):
        # Member m's views of the bundles (no copies): its rows, with a leading axis of one sleeve.
        own_bars = Bars(
            bars.time, bars.open, bars.high, bars.low, bars.close, bars.volume,
            bars.entry_long[m : m + 1], bars.exit_long[m : m + 1], bars.entry_short[m : m + 1],
            bars.exit_short[m : m + 1], bars.distance[m : m + 1],
        )  # fmt: skip
        own_config = Config(
            config.sleeves[m : m + 1], config.rules, config.program, config.rebalance_ms,
            config.margin_rows, config.margin_events,
        )  # fmt: skip
        own_state = State(
            state.sleeves[m : m + 1], state.book[m : m + 1], state.rule_latch, state.rule_held,
            state.kelly[m : m + 1], state.work,
        )  # fmt: skip
        own_out = Outputs(
            out.equity[m], out.cash[m], out.exposure[m], out.trades[m], out.orders[m], out.events
        )
        p = advance(points, None, 0, end, own_bars, own_config, own_state, own_out, PHASE_ALL)
        # The open position's trade row needs one more row; without it the member is not finished either.
        if p == end and own_state.book[0].n_trades < own_out.trades.shape[0]:
            finish_open(own_state, own_out)
        else:
            p = min(p, end - 1)
        stopped[m] = p
    return stopped
