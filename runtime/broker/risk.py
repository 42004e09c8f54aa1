"""Risk: the metrics rules read, condition programs, caps on entries, and halt / pause / flatten rules."""

from __future__ import annotations

import numpy as np
from numba import njit

from runtime.broker.orders import busy, cancel_entry, flatten_sleeve
from runtime.broker.state import (
    A_CAP,
    A_HALT,
    A_PAUSE,
    EPS,
    M_CONSEC,
    M_DAY,
    M_DRAWDOWN,
    M_EQUITY,
    M_EXPOSURE,
    M_GROSS,
    M_NET,
    M_OPEN,
    M_POSITION,
    M_TODAY,
    M_WEEK,
    N_METRICS,
    OP_EQ,
    OP_GE,
    OP_GT,
    OP_LE,
    OP_LT,
    P_AND,
    P_CMP,
    P_NOT,
    Config,
    Outputs,
    Record,
    State,
)


@njit(cache=True)
def portfolio_metrics(cfg: np.ndarray, sleeves: np.ndarray, book: Record, out: np.ndarray) -> None:
    """Fill `out` with the portfolio metrics at the latest mark (fractions of equity, counts).

    `cfg` and `sleeves` are the sleeves' config and state records, `book` the account record.
    """
    equity = book.equity
    base = equity if equity > EPS else EPS
    gross, net, biggest, count = 0.0, 0.0, 0.0, 0
    n = sleeves.shape[0]
    for s in range(n):
        value = sleeves[s].qty * sleeves[s].last
        if value <= 0.0:
            continue
        count += 1
        gross += value
        net += sleeves[s].side * value
        # The largest single symbol sums every sleeve trading it (gross).
        sym_value = 0.0
        for q in range(n):
            if cfg[q].symbol == cfg[s].symbol:
                sym_value += sleeves[q].qty * sleeves[q].last
        biggest = max(biggest, sym_value)
    out[M_DRAWDOWN] = (book.peak - equity) / book.peak if book.peak > 0.0 else 0.0
    out[M_DAY] = (equity - book.day0) / book.day0 if book.day0 > 0.0 else 0.0
    out[M_WEEK] = (equity - book.week0) / book.week0 if book.week0 > 0.0 else 0.0
    out[M_GROSS] = gross / base
    out[M_NET] = net / base
    out[M_POSITION] = biggest / base
    out[M_OPEN] = count
    out[M_EQUITY] = equity
    out[M_CONSEC] = book.consec
    out[M_EXPOSURE] = gross / base
    out[M_TODAY] = book.today


@njit(cache=True)
def sleeve_metrics(sl: Record, out: np.ndarray) -> None:
    """Fill `out` with a sleeve's metrics (record `sl`), relative to the sleeve's own equity."""
    equity = sl.equity
    base = equity if equity > EPS else EPS
    value = sl.qty * sl.last
    peak, day0, week0 = sl.peak, sl.day0, sl.week0
    out[M_DRAWDOWN] = (peak - equity) / peak if peak > 0.0 else 0.0
    out[M_DAY] = (equity - day0) / day0 if day0 > 0.0 else 0.0
    out[M_WEEK] = (equity - week0) / week0 if week0 > 0.0 else 0.0
    out[M_GROSS] = value / base
    out[M_NET] = sl.side * value / base
    out[M_POSITION] = value / base
    out[M_OPEN] = 1.0 if value > 0.0 else 0.0
    out[M_EQUITY] = equity
    out[M_CONSEC] = sl.consec
    out[M_EXPOSURE] = value / base
    out[M_TODAY] = sl.today


@njit(cache=True)
def eval_condition(program: np.ndarray, start: int, length: int, metrics: np.ndarray) -> bool:
    """Evaluate a condition program (reverse Polish: leaves push, and/or pop n, not pops one)."""
    stack = np.zeros(length + 1, dtype=np.bool_)
    top = 0
    for k in range(start, start + length):
        item = program[k]
        kind = item.kind
        if kind == P_CMP:
            x = metrics[item.arg]
            v = item.value
            op = item.op
            if op == OP_GT:
                r = x > v
            elif op == OP_GE:
                r = x >= v
            elif op == OP_LT:
                r = x < v
            elif op == OP_LE:
                r = x <= v
            elif op == OP_EQ:
                r = x == v
            else:
                r = x != v
            stack[top] = r
            top += 1
        elif kind == P_NOT:
            stack[top - 1] = not stack[top - 1]
        else:
            # n-ary and / or over the top n entries.
            n = item.arg
            acc = kind == P_AND
            for i in range(top - n, top):
                acc = (acc and stack[i]) if kind == P_AND else (acc or stack[i])
            top -= n
            stack[top] = acc
            top += 1
    return bool(stack[0])


@njit(cache=True)
def record_event(book: Record, events: np.ndarray, time: int, scope: int, rule: int, action: int) -> int:
    """Append a risk event row (values NaN, filled by the caller; counted by `book`); return its index."""
    n = book.n_events
    row = events[n]
    row.values[:] = np.nan
    row.time = time
    row.scope = scope
    row.rule = rule
    row.action = action
    book.n_events = n + 1
    return n


@njit(cache=True, inline="always")
def apply_caps(
    config: Config, state: State, out: Outputs, s: int, side: int, qty: float, price: float, time: int
) -> float:
    """Shrink (or veto) an entry of `qty` at `price` so that no cap rule is exceeded; record each cap."""
    rules, sleeves, cfg, book = config.rules, state.sleeves, config.sleeves, state.book[0]
    for r in range(rules.shape[0]):
        rule = rules[r]
        if rule.action != A_CAP:
            continue
        metric = rule.cap_metric
        limit = rule.cap_limit
        sleeve_scope = rule.scope == 1
        # `held` is the capped quantity's current value (or count), `equity` its denominator.
        equity = sleeves[s].equity if sleeve_scope else book.equity
        held = 0.0
        for q in range(sleeves.shape[0]):
            if sleeve_scope and q != s:
                continue
            value = sleeves[q].qty * sleeves[q].last
            if metric == M_OPEN:
                held += 1.0 if value > 0.0 else 0.0
            elif metric == M_NET and not sleeve_scope:
                held += side * sleeves[q].side * value
            elif metric != M_POSITION or cfg[q].symbol == cfg[s].symbol:
                held += value
        if metric == M_OPEN:
            # A count cap vetoes only orders that open a new position.
            opens = sleeves[s].qty <= 0.0
            after = held + (1.0 if opens else 0.0)
            allowed = 0.0 if opens and after > limit else qty
        else:
            after = (held + qty * price) / equity if equity > 0.0 else np.inf
            allowed = max(0.0, (limit * equity - held) / price)
        if allowed < qty * (1.0 - 1e-12):
            row = out.events[record_event(book, out.events, time, s if sleeve_scope else -1, r, A_CAP)]
            row.values[0] = after
            row.values[1] = limit
            row.values[2] = qty
            row.values[3] = allowed
            qty = allowed
    return qty


@njit(cache=True, inline="always")
def apply_rules(config: Config, state: State, out: Outputs, time: int) -> None:
    """Evaluate every halt / pause / flatten rule on its scope's metrics at time-line point `time`."""
    sleeves, cfgs, book = state.sleeves, config.sleeves, state.book[0]
    n = sleeves.shape[0]
    metrics = state.work[:N_METRICS]
    rules = config.rules
    latch, held_at = state.rule_latch, state.rule_held
    for r in range(rules.shape[0]):
        rule = rules[r]
        action = rule.action
        if action == A_CAP:
            continue
        sleeve_scope = rule.scope == 1
        for target in range(n if sleeve_scope else 1):
            # target: the sleeve index, or 0 for the portfolio (its rule-state column is 0).
            col = target + 1 if sleeve_scope else 0
            if sleeve_scope:
                sleeve_metrics(sleeves[target], metrics)
            else:
                portfolio_metrics(cfgs, sleeves, book, metrics)
            # Rules act on the rising edge of their condition.
            holds = eval_condition(config.program, rule.prog_start, rule.prog_len, metrics)
            held_before = held_at[r, col] == 1.0
            held_at[r, col] = 1.0 if holds else 0.0
            if not holds or held_before:
                continue
            acted = False
            lo, hi = (target, target + 1) if sleeve_scope else (0, n)
            if action == A_HALT:
                if latch[r, col] == 0.0:
                    latch[r, col] = 1.0
                    acted = True
                    if sleeve_scope:
                        sleeves[target].halted = 1
                    else:
                        book.halted = 1
                    for q in range(lo, hi):
                        flatten_sleeve(cfgs[q], sleeves[q])
            elif action == A_PAUSE:
                until = time + rule.pause_ms
                latch[r, col] = until
                acted = True
                if sleeve_scope:
                    sl = sleeves[target]
                    sl.pause = max(sl.pause, until)
                else:
                    book.pause = max(book.pause, until)
                for q in range(lo, hi):
                    cancel_entry(sleeves[q])
            else:
                for q in range(lo, hi):
                    if busy(sleeves[q]):
                        acted = flatten_sleeve(cfgs[q], sleeves[q]) or acted
            if acted:
                e = record_event(book, out.events, time, target if sleeve_scope else -1, r, action)
                out.events[e].values[:] = metrics
