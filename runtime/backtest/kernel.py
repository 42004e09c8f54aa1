"""The compiled per-bar core of the simulated broker: fills, brackets, sizing, account, rebalancing, risk.

Everything here is numba-compiled (lazily, cached on disk) and works on plain arrays so that one function,
`step_points`, advances the whole portfolio over points of its time line. The batch backtest calls it once
for all points; the incremental driver (`sim.Simulator.step`, the live path with history) calls the same
compiled function for one point at a time, so both give bit-identical results.

Array layouts (column indices are the module constants below):
- bars: `bt` int64 open times and `bars` = (open, high, low, close, volume), each (sleeves, bars) float64;
  `sigs` = (entry_long, exit_long, entry_short, exit_short) bool (sleeves, bars); `dist` (sleeves, bars, 3)
  float64 stop / target / trailing distances (NaN = none).
- config: `ci` int64 and `cf` float64 (sleeves, columns); risk rules `ri`/`rf` and their condition
  programs `pi`/`pf` in reverse Polish notation.
- state: `si`/`sf` per sleeve, `ps` portfolio floats, `pc` output counters, `rs` rule state (rules,
  2 * (1 + sleeves): halt flag or pause end per scope, then the condition's previous value per scope),
  `kr` ring of each sleeve's latest closed trade returns (Kelly), `work` scratch floats.
- output: `eq`/`cash`/`expo` per point, and rows of trades `tr`, orders `od`, risk events `ev`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# Codes shared with sim.py -----------------------------------------------------------------------------
# Exit / order reasons (index into sim.REASONS).
R_SIGNAL, R_STOP, R_TARGET, R_TRAIL, R_MAXHOLD, R_RISK, R_END = 0, 1, 2, 3, 4, 5, 6
# Order kinds of a sleeve's single pending-order slot, also the order intent written to `od`.
K_NONE, K_ENTRY, K_EXIT, K_SCALE = -1, 0, 1, 2
# Offset kinds: none, percent of the fill price, frozen price distance, R multiple of the stop distance.
O_NONE, O_PCT, O_DIST, O_R = 0, 1, 2, 3
# Sizing kinds.
Z_EQUITY, Z_RISK, Z_FIXED, Z_KELLY = 0, 1, 2, 3
# Risk actions and metric ids (index into sim.ACTIONS / sim.METRICS).
A_HALT, A_PAUSE, A_FLATTEN, A_CAP = 0, 1, 2, 3
M_DRAWDOWN, M_DAY, M_WEEK, M_GROSS, M_NET, M_POSITION, M_OPEN, M_EQUITY, M_CONSEC, M_EXPOSURE, M_TODAY = (
    range(11)
)
N_METRICS = 11
# Condition program items: compare leaf, n-ary and, n-ary or, not; comparison operators.
P_CMP, P_AND, P_OR, P_NOT = 0, 1, 2, 3
OP_GT, OP_GE, OP_LT, OP_LE, OP_EQ, OP_NE = 0, 1, 2, 3, 4, 5

# Sleeve config, int columns.
CI_CLOSE_FILL = 0  # 1 when orders fill at the close of their due bar, 0 at its open
CI_LATENCY = 1  # extra bars between the decision and the fill
CI_BEST_CASE = 2  # 1 when a bar touching stop and target takes the target first
CI_STOP_K = 3  # stop offset kind
CI_TP_K = 4  # take-profit offset kind
CI_TRAIL_K = 5  # trailing-stop offset kind
CI_TRAIL_AFTER_K = 6  # trail_after kind (O_NONE, O_PCT, O_R)
CI_MAX_HOLD = 7  # bars after which a position is closed; 0 = no limit
CI_COOLDOWN = 8  # bars after an exit fill with no entry decision
CI_SIZE_K = 9  # sizing kind
CI_KELLY_LOOKBACK = 10  # closed trades Kelly needs
CI_MAX_ENTRIES = 11  # entries per position
CI_WARMUP = 12  # first bar index that may decide
CI_SYMBOL = 13  # symbol id (sleeves on one symbol share it)
CI_TF_MS = 14  # timeframe length, ms (close time = open time + this)
N_CI = 15
# Sleeve config, float columns.
CF_FEE_MAKER = 0  # maker fee, fraction
CF_FEE_TAKER = 1  # taker fee, fraction
CF_SLIP = 2  # fixed slippage, fraction
CF_IMPACT = 3  # volume impact k (0 = none)
CF_MAX_VOLUME = 4  # participation cap, fraction of bar volume (inf = none)
CF_STOP = 5  # stop percent (O_PCT)
CF_TP = 6  # take-profit percent or R multiple
CF_TRAIL = 7  # trailing percent (O_PCT)
CF_TRAIL_AFTER = 8  # trail_after percent or R multiple
CF_BREAKEVEN = 9  # breakeven R multiple (NaN = none)
CF_SIZE = 10  # sizing value
CF_KELLY_FRACTION = 11  # Kelly fraction
CF_KELLY_CAP = 12  # Kelly cap
CF_KELLY_MIN = 13  # Kelly floor / fallback
CF_SCALE_IN = 14  # added entry size multiple
CF_STEP = 15  # amount step (0 = none)
CF_MIN_QTY = 16  # minimum order quantity
CF_MIN_NOTIONAL = 17  # minimum order value
CF_WEIGHT = 18  # target weight
N_CF = 19

# Sleeve state, int columns.
SI_SIDE = 0  # +1 long, -1 short, 0 flat
SI_ENTRY_BAR = 1  # bar index of the first entry fill
SI_ENTRIES = 2  # entries filled in the current position
SI_ORD_KIND = 3  # pending order kind (K_*)
SI_ORD_SIDE = 4  # side of the position the pending order opens or closes
SI_ORD_DUE = 5  # first bar index on which the pending order may fill
SI_ORD_REASON = 6  # reason code of the pending order
SI_COOL_UNTIL = 7  # first bar index allowed to decide an entry
SI_LAST_BAR = 8  # index of the sleeve's latest bar
SI_TRAIL_ON = 9  # 1 when the trailing stop is active
SI_BE_DONE = 10  # 1 when the stop was moved to breakeven
SI_CONSEC = 11  # consecutive losing closed trades
SI_TODAY = 12  # entries since the start of the UTC day
SI_KELLY_N = 13  # closed trade returns stored in the Kelly ring
SI_HALTED = 14  # 1 when a sleeve halt is in force
SI_ENTRY_TIME = 15  # open time of the first entry fill bar, ms
SI_ORD_FILLED = 16  # 1 when the pending order has filled in part
N_SI = 17
# Sleeve state, float columns.
SF_QTY = 0  # position size, base units (>= 0)
SF_AVG = 1  # average entry price
SF_ENTERED = 2  # total quantity entered in this position
SF_NOTIONAL = 3  # total entry value (sum of qty * price)
SF_FEES = 4  # fees paid by this position so far
SF_REALIZED = 5  # gross profit of the parts already closed
SF_EXIT_QTY = 6  # quantity closed so far
SF_EXIT_VALUE = 7  # value closed so far (sum of qty * price)
SF_STOP = 8  # stop level (NaN = none)
SF_TP = 9  # target level (NaN = none)
SF_EXTREME = 10  # best price since entry (highest high long, lowest low short)
SF_TRAIL = 11  # trailing distance, or percent when the kind is O_PCT
SF_TRAIL_AT = 12  # price at which trailing starts
SF_BE_AT = 13  # price at which the stop moves to breakeven (NaN = never)
SF_RISK = 14  # initial stop distance (the R unit), NaN without a stop
SF_ORD_REQ = 15  # requested quantity of the pending order (NaN = not sized yet)
SF_ORD_REM = 16  # quantity still to fill
SF_PD_STOP = 17  # frozen stop distance of the pending entry
SF_PD_TP = 18  # frozen target distance of the pending entry
SF_PD_TRAIL = 19  # frozen trailing distance of the pending entry
SF_CASH = 20  # the sleeve's share of the account cash
SF_LAST = 21  # latest close
SF_PEAK = 22  # highest sleeve equity
SF_DAY0 = 23  # sleeve equity at the start of the UTC day
SF_WEEK0 = 24  # sleeve equity at the start of the UTC week
SF_EQUITY = 25  # sleeve equity at the latest mark
SF_PAUSE = 26  # entries paused until this time, ms
N_SF = 27
# Portfolio state (floats).
PS_CASH = 0  # account cash
PS_PEAK = 1  # highest equity
PS_DAY0 = 2  # equity at the start of the UTC day
PS_WEEK0 = 3  # equity at the start of the UTC week (Monday)
PS_EQUITY = 4  # equity at the latest mark
PS_NEXT_REBALANCE = 5  # time of the next budget reset, ms (inf = never)
PS_PAUSE = 6  # entries paused until this time, ms
PS_HALTED = 7  # 1 when a portfolio halt is in force
PS_DAY = 8  # current UTC day number
PS_WEEK = 9  # current UTC week number
PS_CONSEC = 10  # consecutive losing closed trades, all sleeves
PS_TODAY = 11  # entries since the start of the UTC day, all sleeves
PS_REBALANCE_MS = 12  # rebalancing period, ms (0 = never)
N_PS = 13
# Output counters.
PC_TRADES, PC_ORDERS, PC_EVENTS = 0, 1, 2
# Risk rule columns: int (scope 0 portfolio / 1 sleeve, action, cap metric, program start, program length)
# and float (pause ms, cap limit).
RI_SCOPE, RI_ACTION, RI_CAP_METRIC, RI_PROG_START, RI_PROG_LEN = 0, 1, 2, 3, 4
N_RI = 5
RF_PAUSE_MS, RF_CAP_LIMIT = 0, 1
N_RF = 2
# Trade rows.
T_SLEEVE, T_SIDE, T_ENTRY_TIME, T_ENTRY_PRICE, T_EXIT_TIME, T_EXIT_PRICE, T_QTY = 0, 1, 2, 3, 4, 5, 6
T_PNL, T_RET, T_FEES, T_REASON, T_ENTRY_BAR, T_EXIT_BAR = 7, 8, 9, 10, 11, 12
N_T = 13
# Order rows.
O_TIME, O_SLEEVE, O_DIR, O_INTENT, O_REASON, O_REQ, O_FILLED, O_PRICE, O_FEE = range(9)
N_O = 9
# Risk event rows: time, scope (-1 portfolio, else sleeve), rule, action, then the scope's metrics (for a
# cap: metric after the order, limit, requested qty, allowed qty).
E_TIME, E_SCOPE, E_RULE, E_ACTION, E_VALUES = 0, 1, 2, 3, 4
N_E = E_VALUES + N_METRICS

DAY_MS = 86_400_000  # one day, ms
WEEK_MS = 7 * DAY_MS  # one week, ms
EPS = 1e-12  # quantities below this count as zero


@njit(cache=True, inline="always")
def position_value(sf: np.ndarray, si: np.ndarray, s: int, price: float) -> float:
    """Value of sleeve s's position at `price` (collateral model: a short locks its entry value)."""
    qty = sf[s, SF_QTY]
    if qty <= 0.0:
        return 0.0
    avg = sf[s, SF_AVG]
    return qty * avg + si[s, SI_SIDE] * qty * (price - avg)


@njit(cache=True, inline="always")
def record_order(
    od: np.ndarray,
    pc: np.ndarray,
    time: int,
    s: int,
    direction: int,
    intent: int,
    reason: int,
    req: float,
    qty: float,
    price: float,
    fee: float,
) -> None:
    """Append one fill to the order rows."""
    n = pc[PC_ORDERS]
    od[n, O_TIME] = time
    od[n, O_SLEEVE] = s
    od[n, O_DIR] = direction
    od[n, O_INTENT] = intent
    od[n, O_REASON] = reason
    od[n, O_REQ] = req
    od[n, O_FILLED] = qty
    od[n, O_PRICE] = price
    od[n, O_FEE] = fee
    pc[PC_ORDERS] = n + 1


@njit(cache=True, inline="always")
def slipped(cf: np.ndarray, s: int, ref: float, direction: int, qty: float, volume: float) -> float:
    """Market fill price: `ref` moved against the order by fixed slippage plus volume impact."""
    slip = cf[s, CF_SLIP]
    k = cf[s, CF_IMPACT]
    if k > 0.0:
        share = qty / volume if volume > 0.0 else 1.0
        slip += k * share
    return ref * (1.0 + direction * slip)


@njit(cache=True, inline="always")
def volume_cap(cf: np.ndarray, s: int, volume: float) -> float:
    """Largest quantity sleeve s may fill on a bar of `volume` (inf without a participation cap)."""
    share = cf[s, CF_MAX_VOLUME]
    return share * volume if share < np.inf else np.inf


@njit(cache=True, inline="always")
def clear_order(si: np.ndarray, sf: np.ndarray, s: int) -> None:
    """Empty sleeve s's pending-order slot."""
    si[s, SI_ORD_KIND] = K_NONE
    si[s, SI_ORD_FILLED] = 0
    sf[s, SF_ORD_REQ] = np.nan
    sf[s, SF_ORD_REM] = np.nan


@njit(cache=True, inline="always")
def place_order(si: np.ndarray, sf: np.ndarray, s: int, kind: int, side: int, due: int, reason: int) -> None:
    """Put an order (sized at its fill) into sleeve s's pending slot."""
    clear_order(si, sf, s)
    si[s, SI_ORD_KIND] = kind
    si[s, SI_ORD_SIDE] = side
    si[s, SI_ORD_DUE] = due
    si[s, SI_ORD_REASON] = reason


@njit(cache=True, inline="always")
def cancel_entry(si: np.ndarray, sf: np.ndarray, s: int) -> bool:
    """Drop a pending entry or scale-in (its filled part stays); return whether one was pending."""
    kind = si[s, SI_ORD_KIND]
    if kind in (K_ENTRY, K_SCALE):
        clear_order(si, sf, s)
        return True
    return False


@njit(cache=True)
def kelly_fraction(ci: np.ndarray, cf: np.ndarray, si: np.ndarray, kr: np.ndarray, s: int) -> float:
    """Equity fraction Kelly bets for sleeve s, from its latest closed trade returns (see model.Sizing)."""
    look = ci[s, CI_KELLY_LOOKBACK]
    floor = cf[s, CF_KELLY_MIN]
    if si[s, SI_KELLY_N] < look:
        return floor
    # The ring holds the latest returns in write order; the last `look` of them are the window.
    n = si[s, SI_KELLY_N]
    size = kr.shape[1]
    wins, win_sum, loss_sum = 0, 0.0, 0.0
    for i in range(n - look, n):
        r = kr[s, i % size]
        if r > 0.0:
            wins += 1
            win_sum += r
        else:
            loss_sum -= r
    w = wins / look
    if wins == 0:
        return floor
    if loss_sum <= 0.0:
        return cf[s, CF_KELLY_CAP]
    ratio = (win_sum / wins) / (loss_sum / (look - wins))
    f = cf[s, CF_KELLY_FRACTION] * (w - (1.0 - w) / ratio)
    return min(max(f, floor), cf[s, CF_KELLY_CAP])


@njit(cache=True, inline="always")
def entry_qty(
    ci: np.ndarray,
    cf: np.ndarray,
    si: np.ndarray,
    sf: np.ndarray,
    ps: np.ndarray,
    kr: np.ndarray,
    s: int,
    price: float,
    risk: float,
    scale: float,
) -> float:
    """Quantity an entry of sleeve s asks for at `price`; the fee is inside the budget (see model.Sizing)."""
    free = min(sf[s, SF_CASH], ps[PS_CASH])
    if free <= 0.0:
        return 0.0
    unit = price * (1.0 + cf[s, CF_FEE_TAKER])
    equity = sf[s, SF_CASH] + position_value(sf, si, s, price)
    kind = ci[s, CI_SIZE_K]
    value = cf[s, CF_SIZE]
    if kind == Z_EQUITY:
        qty = min(value * equity, free) / unit
    elif kind == Z_KELLY:
        qty = min(kelly_fraction(ci, cf, si, kr, s) * equity, free) / unit
    elif kind == Z_RISK:
        qty = min(value * equity / risk, free / unit) if risk > 0.0 else 0.0
    else:
        qty = min(value, free / unit)
    return qty * scale


@njit(cache=True)
def portfolio_metrics(
    ci: np.ndarray, si: np.ndarray, sf: np.ndarray, ps: np.ndarray, out: np.ndarray
) -> None:
    """Fill `out` with the portfolio metrics at the latest mark (fractions of equity, counts)."""
    equity = ps[PS_EQUITY]
    base = equity if equity > EPS else EPS
    gross, net, biggest, count = 0.0, 0.0, 0.0, 0
    n = si.shape[0]
    for s in range(n):
        value = sf[s, SF_QTY] * sf[s, SF_LAST]
        if value <= 0.0:
            continue
        count += 1
        gross += value
        net += si[s, SI_SIDE] * value
        # The largest single symbol sums every sleeve trading it (gross).
        sym_value = 0.0
        for q in range(n):
            if ci[q, CI_SYMBOL] == ci[s, CI_SYMBOL]:
                sym_value += sf[q, SF_QTY] * sf[q, SF_LAST]
        biggest = max(biggest, sym_value)
    out[M_DRAWDOWN] = (ps[PS_PEAK] - equity) / ps[PS_PEAK] if ps[PS_PEAK] > 0.0 else 0.0
    out[M_DAY] = (equity - ps[PS_DAY0]) / ps[PS_DAY0] if ps[PS_DAY0] > 0.0 else 0.0
    out[M_WEEK] = (equity - ps[PS_WEEK0]) / ps[PS_WEEK0] if ps[PS_WEEK0] > 0.0 else 0.0
    out[M_GROSS] = gross / base
    out[M_NET] = net / base
    out[M_POSITION] = biggest / base
    out[M_OPEN] = count
    out[M_EQUITY] = equity
    out[M_CONSEC] = ps[PS_CONSEC]
    out[M_EXPOSURE] = gross / base
    out[M_TODAY] = ps[PS_TODAY]


@njit(cache=True)
def sleeve_metrics(si: np.ndarray, sf: np.ndarray, s: int, out: np.ndarray) -> None:
    """Fill `out` with sleeve s's metrics, relative to the sleeve's own equity."""
    equity = sf[s, SF_EQUITY]
    base = equity if equity > EPS else EPS
    value = sf[s, SF_QTY] * sf[s, SF_LAST]
    peak, day0, week0 = sf[s, SF_PEAK], sf[s, SF_DAY0], sf[s, SF_WEEK0]
    out[M_DRAWDOWN] = (peak - equity) / peak if peak > 0.0 else 0.0
    out[M_DAY] = (equity - day0) / day0 if day0 > 0.0 else 0.0
    out[M_WEEK] = (equity - week0) / week0 if week0 > 0.0 else 0.0
    out[M_GROSS] = value / base
    out[M_NET] = si[s, SI_SIDE] * value / base
    out[M_POSITION] = value / base
    out[M_OPEN] = 1.0 if value > 0.0 else 0.0
    out[M_EQUITY] = equity
    out[M_CONSEC] = si[s, SI_CONSEC]
    out[M_EXPOSURE] = value / base
    out[M_TODAY] = si[s, SI_TODAY]


@njit(cache=True)
def eval_condition(pi: np.ndarray, pf: np.ndarray, start: int, length: int, metrics: np.ndarray) -> bool:
    """Evaluate a condition program (reverse Polish: leaves push, and/or pop n, not pops one)."""
    stack = np.zeros(length + 1, dtype=np.bool_)
    top = 0
    for k in range(start, start + length):
        kind = pi[k, 0]
        if kind == P_CMP:
            x = metrics[pi[k, 1]]
            v = pf[k]
            op = pi[k, 2]
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
            n = pi[k, 1]
            acc = kind == P_AND
            for i in range(top - n, top):
                acc = (acc and stack[i]) if kind == P_AND else (acc or stack[i])
            top -= n
            stack[top] = acc
            top += 1
    return bool(stack[0])


@njit(cache=True)
def record_event(ev: np.ndarray, pc: np.ndarray, time: int, scope: int, rule: int, action: int) -> int:
    """Append a risk event row (values filled by the caller) and return its index."""
    n = pc[PC_EVENTS]
    ev[n, :] = np.nan
    ev[n, E_TIME] = time
    ev[n, E_SCOPE] = scope
    ev[n, E_RULE] = rule
    ev[n, E_ACTION] = action
    pc[PC_EVENTS] = n + 1
    return n


@njit(cache=True, inline="always")
def apply_caps(
    ci: np.ndarray,
    si: np.ndarray,
    sf: np.ndarray,
    ps: np.ndarray,
    pc: np.ndarray,
    ri: np.ndarray,
    rf: np.ndarray,
    ev: np.ndarray,
    s: int,
    side: int,
    qty: float,
    price: float,
    time: int,
) -> float:
    """Shrink (or veto) an entry of `qty` at `price` so that no cap rule is exceeded; record each cap."""
    for r in range(ri.shape[0]):
        if ri[r, RI_ACTION] != A_CAP:
            continue
        metric = ri[r, RI_CAP_METRIC]
        limit = rf[r, RF_CAP_LIMIT]
        sleeve_scope = ri[r, RI_SCOPE] == 1
        # `held` is the capped quantity's current value (or count), `equity` its denominator.
        equity = sf[s, SF_EQUITY] if sleeve_scope else ps[PS_EQUITY]
        held = 0.0
        for q in range(si.shape[0]):
            if sleeve_scope and q != s:
                continue
            value = sf[q, SF_QTY] * sf[q, SF_LAST]
            if metric == M_OPEN:
                held += 1.0 if value > 0.0 else 0.0
            elif metric == M_NET and not sleeve_scope:
                held += side * si[q, SI_SIDE] * value
            elif metric != M_POSITION or ci[q, CI_SYMBOL] == ci[s, CI_SYMBOL]:
                held += value
        if metric == M_OPEN:
            # A count cap vetoes only orders that open a new position.
            opens = sf[s, SF_QTY] <= 0.0
            after = held + (1.0 if opens else 0.0)
            allowed = 0.0 if opens and after > limit else qty
        else:
            after = (held + qty * price) / equity if equity > 0.0 else np.inf
            allowed = max(0.0, (limit * equity - held) / price)
        if allowed < qty * (1.0 - 1e-12):
            n = record_event(ev, pc, time, s if sleeve_scope else -1, r, A_CAP)
            ev[n, E_VALUES] = after
            ev[n, E_VALUES + 1] = limit
            ev[n, E_VALUES + 2] = qty
            ev[n, E_VALUES + 3] = allowed
            qty = allowed
    return qty


@njit(cache=True, inline="always")
def close_trade(
    ci: np.ndarray,
    si: np.ndarray,
    sf: np.ndarray,
    ps: np.ndarray,
    pc: np.ndarray,
    kr: np.ndarray,
    tr: np.ndarray,
    s: int,
    exit_time: float,
    exit_price: float,
    exit_bar: int,
    reason: int,
    last_price: float,
) -> float:
    """Write sleeve s's position as a trade row (closed, or open and marked at `last_price`); return pnl."""
    side = si[s, SI_SIDE]
    qty = sf[s, SF_QTY]
    gross = sf[s, SF_REALIZED] + side * qty * (last_price - sf[s, SF_AVG])
    pnl = gross - sf[s, SF_FEES]
    n = pc[PC_TRADES]
    tr[n, T_SLEEVE] = s
    tr[n, T_SIDE] = side
    tr[n, T_ENTRY_TIME] = si[s, SI_ENTRY_TIME]
    tr[n, T_ENTRY_PRICE] = sf[s, SF_NOTIONAL] / sf[s, SF_ENTERED]
    tr[n, T_EXIT_TIME] = exit_time
    tr[n, T_EXIT_PRICE] = exit_price
    tr[n, T_QTY] = sf[s, SF_ENTERED]
    tr[n, T_PNL] = pnl
    tr[n, T_RET] = pnl / sf[s, SF_NOTIONAL]
    tr[n, T_FEES] = sf[s, SF_FEES]
    tr[n, T_REASON] = reason
    tr[n, T_ENTRY_BAR] = si[s, SI_ENTRY_BAR]
    tr[n, T_EXIT_BAR] = exit_bar
    pc[PC_TRADES] = n + 1
    return pnl


@njit(cache=True, inline="always")
def fill_exit(
    ci: np.ndarray,
    cf: np.ndarray,
    si: np.ndarray,
    sf: np.ndarray,
    ps: np.ndarray,
    pc: np.ndarray,
    kr: np.ndarray,
    tr: np.ndarray,
    od: np.ndarray,
    s: int,
    j: int,
    time: int,
    price: float,
    qty: float,
    reason: int,
    fee_rate: float,
    req: float,
) -> None:
    """Close `qty` of sleeve s's position at `price` on bar j; write the trade when it is all closed."""
    side = si[s, SI_SIDE]
    avg = sf[s, SF_AVG]
    fee = qty * price * fee_rate
    gross = side * qty * (price - avg)
    # The released collateral plus the profit comes back to the sleeve's and the account's cash.
    proceeds = qty * avg + gross - fee
    ps[PS_CASH] += proceeds
    sf[s, SF_CASH] += proceeds
    sf[s, SF_REALIZED] += gross
    sf[s, SF_FEES] += fee
    sf[s, SF_EXIT_QTY] += qty
    sf[s, SF_EXIT_VALUE] += qty * price
    rest = sf[s, SF_QTY] - qty
    record_order(od, pc, time, s, -side, K_EXIT, reason, req, qty, price, fee)
    if rest > EPS * sf[s, SF_ENTERED]:
        sf[s, SF_QTY] = rest
        return
    sf[s, SF_QTY] = 0.0
    pnl = close_trade(
        ci, si, sf, ps, pc, kr, tr, s, float(time), sf[s, SF_EXIT_VALUE] / sf[s, SF_EXIT_QTY], j, reason, avg
    )
    # Bookkeeping read by risk metrics and Kelly sizing.
    if pnl < 0.0:
        si[s, SI_CONSEC] += 1
        ps[PS_CONSEC] += 1.0
    else:
        si[s, SI_CONSEC] = 0
        ps[PS_CONSEC] = 0.0
    kr[s, si[s, SI_KELLY_N] % kr.shape[1]] = pnl / sf[s, SF_NOTIONAL]
    si[s, SI_KELLY_N] += 1
    si[s, SI_SIDE] = 0
    si[s, SI_COOL_UNTIL] = j + ci[s, CI_COOLDOWN]
    cancel_entry(si, sf, s)


@njit(cache=True, inline="always")
def open_levels(ci: np.ndarray, cf: np.ndarray, si: np.ndarray, sf: np.ndarray, s: int, side: int) -> None:
    """Set the bracket levels of a new position from its first fill price and the frozen distances."""
    price = sf[s, SF_AVG]
    kind = ci[s, CI_STOP_K]
    risk = price * cf[s, CF_STOP] if kind == O_PCT else (sf[s, SF_PD_STOP] if kind == O_DIST else np.nan)
    sf[s, SF_RISK] = risk
    sf[s, SF_STOP] = price - side * risk
    kind = ci[s, CI_TP_K]
    if kind == O_PCT:
        sf[s, SF_TP] = price * (1.0 + side * cf[s, CF_TP])
    elif kind == O_DIST:
        sf[s, SF_TP] = price + side * sf[s, SF_PD_TP]
    elif kind == O_R:
        sf[s, SF_TP] = price + side * cf[s, CF_TP] * risk
    else:
        sf[s, SF_TP] = np.nan
    sf[s, SF_EXTREME] = price
    sf[s, SF_TRAIL] = cf[s, CF_TRAIL] if ci[s, CI_TRAIL_K] == O_PCT else sf[s, SF_PD_TRAIL]
    kind = ci[s, CI_TRAIL_AFTER_K]
    if kind == O_PCT:
        sf[s, SF_TRAIL_AT] = price * (1.0 + side * cf[s, CF_TRAIL_AFTER])
    elif kind == O_R:
        sf[s, SF_TRAIL_AT] = price + side * cf[s, CF_TRAIL_AFTER] * risk
    si[s, SI_TRAIL_ON] = 1 if ci[s, CI_TRAIL_K] != O_NONE and kind == O_NONE else 0
    sf[s, SF_BE_AT] = price + side * cf[s, CF_BREAKEVEN] * risk
    si[s, SI_BE_DONE] = 0


@njit(cache=True, inline="always")
def fill_entry(
    ci: np.ndarray,
    cf: np.ndarray,
    si: np.ndarray,
    sf: np.ndarray,
    ps: np.ndarray,
    pc: np.ndarray,
    kr: np.ndarray,
    od: np.ndarray,
    ri: np.ndarray,
    rf: np.ndarray,
    ev: np.ndarray,
    s: int,
    j: int,
    time: int,
    close_time: int,
    ref: float,
    volume: float,
) -> None:
    """Fill (part of) sleeve s's pending entry at reference price `ref` on bar j."""
    side = si[s, SI_ORD_SIDE]
    kind = si[s, SI_ORD_KIND]
    fee_rate = cf[s, CF_FEE_TAKER]
    # Size the order once, at its first fill, with the fixed-slippage price.
    if math.isnan(sf[s, SF_ORD_REQ]):
        base = ref * (1.0 + side * cf[s, CF_SLIP])
        risk = sf[s, SF_RISK] if kind == K_SCALE else sf[s, SF_PD_STOP]
        if kind != K_SCALE and ci[s, CI_STOP_K] == O_PCT:
            risk = base * cf[s, CF_STOP]
        scale = cf[s, CF_SCALE_IN] if kind == K_SCALE else 1.0
        req = entry_qty(ci, cf, si, sf, ps, kr, s, base, risk, scale)
        sf[s, SF_ORD_REQ] = req
        sf[s, SF_ORD_REM] = req
    qty = min(sf[s, SF_ORD_REM], volume_cap(cf, s, volume))
    if qty <= 0.0 and sf[s, SF_ORD_REM] > 0.0:
        # No volume this bar: wait for the next one.
        si[s, SI_ORD_DUE] = j + 1
        return
    qty = apply_caps(ci, si, sf, ps, pc, ri, rf, ev, s, side, qty, ref, close_time)
    price = slipped(cf, s, ref, side, qty, volume)
    # Cash never goes negative: shrink to what the account and the sleeve can pay.
    free = min(sf[s, SF_CASH], ps[PS_CASH])
    if qty * price * (1.0 + fee_rate) > free:
        qty = max(free, 0.0) / (price * (1.0 + fee_rate))
    step = cf[s, CF_STEP]
    if step > 0.0:
        qty = math.floor(qty / step + 1e-9) * step
    if qty <= EPS or qty < cf[s, CF_MIN_QTY] or qty * price < cf[s, CF_MIN_NOTIONAL]:
        clear_order(si, sf, s)
        return
    cost = qty * price
    fee = cost * fee_rate
    ps[PS_CASH] = max(ps[PS_CASH] - cost - fee, 0.0)
    sf[s, SF_CASH] -= cost + fee
    opening = sf[s, SF_QTY] <= 0.0
    if opening:
        # A new position: reset the trade record.
        si[s, SI_SIDE] = side
        si[s, SI_ENTRY_BAR] = j
        si[s, SI_ENTRY_TIME] = time
        si[s, SI_ENTRIES] = 0
        sf[s, SF_ENTERED] = 0.0
        sf[s, SF_NOTIONAL] = 0.0
        sf[s, SF_FEES] = 0.0
        sf[s, SF_REALIZED] = 0.0
        sf[s, SF_EXIT_QTY] = 0.0
        sf[s, SF_EXIT_VALUE] = 0.0
    if si[s, SI_ORD_FILLED] == 0:
        si[s, SI_ENTRIES] += 1
        si[s, SI_TODAY] += 1
        ps[PS_TODAY] += 1.0
    total = sf[s, SF_QTY] + qty
    sf[s, SF_AVG] = (sf[s, SF_QTY] * sf[s, SF_AVG] + cost) / total
    sf[s, SF_QTY] = total
    sf[s, SF_ENTERED] += qty
    sf[s, SF_NOTIONAL] += cost
    sf[s, SF_FEES] += fee
    if opening:
        open_levels(ci, cf, si, sf, s, side)
    record_order(od, pc, time, s, side, kind, si[s, SI_ORD_REASON], sf[s, SF_ORD_REQ], qty, price, fee)
    si[s, SI_ORD_FILLED] = 1
    rest = sf[s, SF_ORD_REM] - qty
    if rest <= EPS * sf[s, SF_ORD_REQ] or volume_cap(cf, s, volume) >= sf[s, SF_ORD_REM]:
        # Filled, or shrunk by a cap or the cash: the order is done.
        clear_order(si, sf, s)
    else:
        sf[s, SF_ORD_REM] = rest
        si[s, SI_ORD_DUE] = j + 1


@njit(cache=True, inline="always")
def fill_pending(
    ci: np.ndarray,
    cf: np.ndarray,
    si: np.ndarray,
    sf: np.ndarray,
    ps: np.ndarray,
    pc: np.ndarray,
    kr: np.ndarray,
    tr: np.ndarray,
    od: np.ndarray,
    ri: np.ndarray,
    rf: np.ndarray,
    ev: np.ndarray,
    s: int,
    j: int,
    time: int,
    close_time: int,
    ref: float,
    volume: float,
) -> None:
    """Fill sleeve s's pending order if it is due on bar j, at reference price `ref`."""
    kind = si[s, SI_ORD_KIND]
    if kind == K_NONE or si[s, SI_ORD_DUE] > j:
        return
    if kind != K_EXIT:
        fill_entry(ci, cf, si, sf, ps, pc, kr, od, ri, rf, ev, s, j, time, close_time, ref, volume)
        return
    if sf[s, SF_QTY] <= 0.0:
        clear_order(si, sf, s)
        return
    if math.isnan(sf[s, SF_ORD_REQ]):
        sf[s, SF_ORD_REQ] = sf[s, SF_QTY]
    qty = min(sf[s, SF_QTY], volume_cap(cf, s, volume))
    if qty <= 0.0:
        si[s, SI_ORD_DUE] = j + 1
        return
    side = si[s, SI_SIDE]
    reason = si[s, SI_ORD_REASON]
    req = sf[s, SF_ORD_REQ]
    price = slipped(cf, s, ref, -side, qty, volume)
    fill_exit(ci, cf, si, sf, ps, pc, kr, tr, od, s, j, time, price, qty, reason, cf[s, CF_FEE_TAKER], req)
    if si[s, SI_SIDE] == 0:
        clear_order(si, sf, s)
    else:
        si[s, SI_ORD_DUE] = j + 1


@njit(cache=True)
def check_brackets(
    ci: np.ndarray,
    cf: np.ndarray,
    si: np.ndarray,
    sf: np.ndarray,
    ps: np.ndarray,
    pc: np.ndarray,
    kr: np.ndarray,
    tr: np.ndarray,
    od: np.ndarray,
    s: int,
    j: int,
    time: int,
    o: float,
    h: float,
    lo: float,
    v: float,
) -> None:
    """Check sleeve s's stop, trailing stop and target against bar j, then update trailing and breakeven."""
    side = si[s, SI_SIDE]
    # Work in "favourable direction" units: for a short, prices are negated so that one code path serves.
    sg = float(side)
    fo = sg * o
    best = sg * h if side > 0 else sg * lo
    worst = sg * lo if side > 0 else sg * h
    stop = sg * sf[s, SF_STOP]
    reason = R_STOP
    if si[s, SI_TRAIL_ON] == 1:
        ext = sf[s, SF_EXTREME]
        dist = ext * sf[s, SF_TRAIL] if ci[s, CI_TRAIL_K] == O_PCT else sf[s, SF_TRAIL]
        trail = sg * (ext - sg * dist)
        if math.isnan(stop) or trail > stop:
            stop = trail
            reason = R_TRAIL
    target = sg * sf[s, SF_TP]
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
        is_target = ci[s, CI_BEST_CASE] == 1 if hit_stop and hit_target else hit_target
        if hit_stop or hit_target:
            hit = True
            price = sg * (target if is_target else stop)
    if hit:
        req = sf[s, SF_QTY]
        qty = min(req, volume_cap(cf, s, v))
        if is_target:
            reason = R_TARGET
            fee_rate = cf[s, CF_FEE_MAKER]
        else:
            fee_rate = cf[s, CF_FEE_TAKER]
            price = slipped(cf, s, price, -side, qty, v)
        if qty > 0.0:
            fill_exit(ci, cf, si, sf, ps, pc, kr, tr, od, s, j, time, price, qty, reason, fee_rate, req)
        if si[s, SI_SIDE] != 0:
            # The participation cap left a rest: it goes out as a market order on the next bar.
            place_order(si, sf, s, K_EXIT, side, j + 1, reason)
            sf[s, SF_ORD_REQ] = req if qty > 0.0 else sf[s, SF_QTY]
        return
    # Still open: the bar's best price feeds the trailing stop and the breakeven move (from the next bar).
    if best > sg * sf[s, SF_EXTREME]:
        sf[s, SF_EXTREME] = sg * best
    if ci[s, CI_TRAIL_K] != O_NONE and si[s, SI_TRAIL_ON] == 0 and best >= sg * sf[s, SF_TRAIL_AT]:
        si[s, SI_TRAIL_ON] = 1
    if si[s, SI_BE_DONE] == 0 and best >= sg * sf[s, SF_BE_AT]:
        si[s, SI_BE_DONE] = 1
        avg = sf[s, SF_AVG]
        current = sf[s, SF_STOP]
        if math.isnan(current) or sg * avg > sg * current:
            sf[s, SF_STOP] = avg


@njit(cache=True, inline="always")
def decide(
    ci: np.ndarray,
    si: np.ndarray,
    sf: np.ndarray,
    ps: np.ndarray,
    dist: np.ndarray,
    s: int,
    j: int,
    close_time: int,
    el: bool,
    xl: bool,
    es: bool,
    xs: bool,
) -> None:
    """Turn sleeve s's decisions at the close of bar j into a pending order (exits win over entries)."""
    side = si[s, SI_SIDE]
    kind = si[s, SI_ORD_KIND]
    due = j + ci[s, CI_LATENCY] + (0 if ci[s, CI_CLOSE_FILL] == 1 else 1)
    # Exits: a signal for the held side, or the holding-time limit.
    exit_reason = -1
    if side != 0 and kind != K_EXIT:
        if (side > 0 and xl) or (side < 0 and xs):
            exit_reason = R_SIGNAL
        elif ci[s, CI_MAX_HOLD] > 0 and j - si[s, SI_ENTRY_BAR] + 1 >= ci[s, CI_MAX_HOLD]:
            exit_reason = R_MAXHOLD
    if exit_reason >= 0:
        place_order(si, sf, s, K_EXIT, side, due, exit_reason)
        return
    if kind != K_NONE:
        # An exit of the pending entry's side cancels it; otherwise a pending order blocks new ones.
        if kind != K_EXIT and ((si[s, SI_ORD_SIDE] > 0 and xl) or (si[s, SI_ORD_SIDE] < 0 and xs)):
            clear_order(si, sf, s)
        return
    # Entries: one unambiguous direction, no exit of that side on the same bar, not blocked.
    want = 0
    if el and not es and not xl:
        want = 1
    elif es and not el and not xs:
        want = -1
    if want == 0 or j < ci[s, CI_WARMUP] or j < si[s, SI_COOL_UNTIL]:
        return
    if si[s, SI_HALTED] == 1 or ps[PS_HALTED] == 1.0:
        return
    if close_time < sf[s, SF_PAUSE] or close_time < ps[PS_PAUSE]:
        return
    if side == 0:
        place_order(si, sf, s, K_ENTRY, want, due, R_SIGNAL)
    elif side == want and si[s, SI_ENTRIES] < ci[s, CI_MAX_ENTRIES]:
        place_order(si, sf, s, K_SCALE, want, due, R_SIGNAL)
    else:
        return
    # Distances are read at the decision bar and frozen for the entry.
    sf[s, SF_PD_STOP] = dist[s, j, 0] if ci[s, CI_STOP_K] == O_DIST else np.nan
    sf[s, SF_PD_TP] = dist[s, j, 1] if ci[s, CI_TP_K] == O_DIST else np.nan
    sf[s, SF_PD_TRAIL] = dist[s, j, 2] if ci[s, CI_TRAIL_K] == O_DIST else np.nan


@njit(cache=True)
def flatten_sleeve(si: np.ndarray, sf: np.ndarray, ci: np.ndarray, s: int) -> bool:
    """Cancel sleeve s's pending entry and send its position out at the next fill; return if it acted."""
    acted = cancel_entry(si, sf, s)
    if sf[s, SF_QTY] > 0.0 and si[s, SI_ORD_KIND] != K_EXIT:
        due = si[s, SI_LAST_BAR] + 1 + ci[s, CI_LATENCY]
        place_order(si, sf, s, K_EXIT, si[s, SI_SIDE], due, R_RISK)
        acted = True
    return acted


@njit(cache=True)
def busy(si: np.ndarray, sf: np.ndarray, s: int) -> bool:
    """Whether sleeve s holds a position or waits on an entry (something a flatten would act on)."""
    kind = si[s, SI_ORD_KIND]
    return sf[s, SF_QTY] > 0.0 or kind in (K_ENTRY, K_SCALE)


@njit(cache=True)
def apply_rules(
    ci: np.ndarray,
    si: np.ndarray,
    sf: np.ndarray,
    ps: np.ndarray,
    pc: np.ndarray,
    rs: np.ndarray,
    ri: np.ndarray,
    rf: np.ndarray,
    pi: np.ndarray,
    pf: np.ndarray,
    ev: np.ndarray,
    work: np.ndarray,
    time: int,
) -> None:
    """Evaluate every halt / pause / flatten rule on its scope's metrics at time-line point `time`."""
    n = si.shape[0]
    metrics = work[:N_METRICS]
    for r in range(ri.shape[0]):
        action = ri[r, RI_ACTION]
        if action == A_CAP:
            continue
        sleeve_scope = ri[r, RI_SCOPE] == 1
        for target in range(n if sleeve_scope else 1):
            # target: the sleeve index, or 0 for the portfolio (its rule-state column is 0).
            col = target + 1 if sleeve_scope else 0
            if sleeve_scope:
                sleeve_metrics(si, sf, target, metrics)
            else:
                portfolio_metrics(ci, si, sf, ps, metrics)
            # Rules act on the rising edge of their condition (the previous value sits n + 1 columns on).
            holds = eval_condition(pi, pf, ri[r, RI_PROG_START], ri[r, RI_PROG_LEN], metrics)
            held_before = rs[r, n + 1 + col] == 1.0
            rs[r, n + 1 + col] = 1.0 if holds else 0.0
            if not holds or held_before:
                continue
            acted = False
            lo, hi = (target, target + 1) if sleeve_scope else (0, n)
            if action == A_HALT:
                if rs[r, col] == 0.0:
                    rs[r, col] = 1.0
                    acted = True
                    if sleeve_scope:
                        si[target, SI_HALTED] = 1
                    else:
                        ps[PS_HALTED] = 1.0
                    for q in range(lo, hi):
                        flatten_sleeve(si, sf, ci, q)
            elif action == A_PAUSE:
                until = time + rf[r, RF_PAUSE_MS]
                rs[r, col] = until
                acted = True
                if sleeve_scope:
                    sf[target, SF_PAUSE] = max(sf[target, SF_PAUSE], until)
                else:
                    ps[PS_PAUSE] = max(ps[PS_PAUSE], until)
                for q in range(lo, hi):
                    cancel_entry(si, sf, q)
            else:
                for q in range(lo, hi):
                    if busy(si, sf, q):
                        acted = flatten_sleeve(si, sf, ci, q) or acted
            if acted:
                e = record_event(ev, pc, time, target if sleeve_scope else -1, r, action)
                ev[e, E_VALUES : E_VALUES + N_METRICS] = metrics


@njit(cache=True, inline="always")
def mark(ci: np.ndarray, si: np.ndarray, sf: np.ndarray, ps: np.ndarray) -> float:
    """Mark every sleeve at its latest close; update equities and peaks; return the gross position value."""
    total, gross = ps[PS_CASH], 0.0
    for s in range(si.shape[0]):
        value = position_value(sf, si, s, sf[s, SF_LAST])
        total += value
        gross += abs(sf[s, SF_QTY] * sf[s, SF_LAST])
        sleeve_equity = sf[s, SF_CASH] + value
        sf[s, SF_EQUITY] = sleeve_equity
        if sleeve_equity > sf[s, SF_PEAK]:
            sf[s, SF_PEAK] = sleeve_equity
    ps[PS_EQUITY] = total
    if total > ps[PS_PEAK]:
        ps[PS_PEAK] = total
    return gross


@njit(cache=True)
def roll_calendar(si: np.ndarray, sf: np.ndarray, ps: np.ndarray, time: int) -> None:
    """At the first point of a new UTC day / week, remember the equities the day / week starts from."""
    day = (time - 1) // DAY_MS  # a bar closing at 00:00 still belongs to the day before
    if day == ps[PS_DAY]:
        return
    ps[PS_DAY] = day
    ps[PS_DAY0] = ps[PS_EQUITY]
    ps[PS_TODAY] = 0.0
    week = (day + 3) // 7  # weeks start on Monday (1970-01-01 was a Thursday)
    new_week = week != ps[PS_WEEK]
    if new_week:
        ps[PS_WEEK] = week
        ps[PS_WEEK0] = ps[PS_EQUITY]
    for s in range(si.shape[0]):
        sf[s, SF_DAY0] = sf[s, SF_EQUITY]
        si[s, SI_TODAY] = 0
        if new_week:
            sf[s, SF_WEEK0] = sf[s, SF_EQUITY]


@njit(cache=True)
def rebalance(
    ci: np.ndarray, cf: np.ndarray, si: np.ndarray, sf: np.ndarray, ps: np.ndarray, time: int
) -> None:
    """Reset every sleeve's budget to its target weight of equity when a rebalancing period has ended."""
    period = ps[PS_REBALANCE_MS]
    if period <= 0.0 or time < ps[PS_NEXT_REBALANCE]:
        return
    ps[PS_NEXT_REBALANCE] = (math.floor(time / period) + 1.0) * period
    equity = ps[PS_EQUITY]
    for s in range(si.shape[0]):
        # Moving cash between sleeves shifts the sleeve's equity references by the same amount.
        delta = cf[s, CF_WEIGHT] * equity - sf[s, SF_EQUITY]
        sf[s, SF_CASH] += delta
        sf[s, SF_EQUITY] += delta
        sf[s, SF_PEAK] += delta
        sf[s, SF_DAY0] += delta
        sf[s, SF_WEEK0] += delta


# Which part of a point `step_points` runs: all of it, only the open (fills and brackets), or only the
# close (decisions, marks, rebalance, risk). A driver that must read trade state before deciding runs the
# two halves apart and sets the decisions in between.
PHASE_ALL = 0
PHASE_OPEN = 1
PHASE_CLOSE = 2


@njit(cache=True)
def step_points(
    p0: int,
    p1: int,
    times: np.ndarray,
    starts: np.ndarray,
    ev_s: np.ndarray,
    ev_j: np.ndarray,
    bt: np.ndarray,
    bars: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    sigs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    dist: np.ndarray,
    ci: np.ndarray,
    cf: np.ndarray,
    si: np.ndarray,
    sf: np.ndarray,
    ps: np.ndarray,
    pc: np.ndarray,
    rs: np.ndarray,
    kr: np.ndarray,
    ri: np.ndarray,
    rf: np.ndarray,
    pi: np.ndarray,
    pf: np.ndarray,
    work: np.ndarray,
    eq: np.ndarray,
    cash: np.ndarray,
    expo: np.ndarray,
    tr: np.ndarray,
    od: np.ndarray,
    ev: np.ndarray,
    margin_rows: int,
    margin_events: int,
    phase: int,
) -> int:
    """Advance the portfolio over points p0..p1-1 of its time line; return the next point to run.

    Point p closes at `times[p - p0]`; its bars are (ev_s[k], ev_j[k]) for starts[p - p0] <= k <
    starts[p - p0 + 1], or, when `ev_s` is empty (a dense time line: one sleeve, every point one of its
    bars), just bar p of sleeve 0, so the batch run of one sleeve builds and reads no event arrays. Each
    point runs in two halves: every bar's open (due orders fill, brackets), then every bar's close
    (decisions, fill: close orders), then the account is marked and the risk rules act; so a decision
    sees the trade state at its close. The batch backtest runs all points in one call
    (PHASE_ALL); the incremental driver runs one point per call, or one half (PHASE_OPEN, PHASE_CLOSE).
    The loop stops early (returning the point it stopped at) when an output buffer could overflow, so the
    caller can grow it and call again.
    """
    bo, bh, bl, bc, bv = bars
    el, xl, es, xs = sigs
    dense = ev_s.shape[0] == 0  # a dense time line (see above)
    for p in range(p0, p1):
        if (
            pc[PC_TRADES] + margin_rows > tr.shape[0]
            or pc[PC_ORDERS] + margin_rows > od.shape[0]
            or pc[PC_EVENTS] + margin_events > ev.shape[0]
        ):
            return p
        time = times[p - p0]
        k0, k1 = (p, p + 1) if dense else (starts[p - p0], starts[p - p0 + 1])
        # Hot loops: helpers with many array arguments are only called when they have work to do, because
        # such a call costs more than a whole quiet bar.
        if phase != PHASE_CLOSE:
            if (time - 1) // DAY_MS != ps[PS_DAY]:
                roll_calendar(si, sf, ps, time)
            for k in range(k0, k1):
                s, j = (0, k) if dense else (ev_s[k], ev_j[k])
                # 1. Orders due on this bar fill at its open (fill: next_open).
                if ci[s, CI_CLOSE_FILL] != 1 and si[s, SI_ORD_KIND] != K_NONE and si[s, SI_ORD_DUE] <= j:
                    fill_pending(
                        ci,
                        cf,
                        si,
                        sf,
                        ps,
                        pc,
                        kr,
                        tr,
                        od,
                        ri,
                        rf,
                        ev,
                        s,
                        j,
                        bt[s, j],
                        time,
                        bo[s, j],
                        bv[s, j],
                    )
                # 2. Brackets of positions filled before this bar, unless an exit is already on its way.
                has_bracket = ci[s, CI_STOP_K] + ci[s, CI_TP_K] + ci[s, CI_TRAIL_K] > 0
                if (
                    has_bracket
                    and si[s, SI_SIDE] != 0
                    and si[s, SI_ENTRY_BAR] < j
                    and si[s, SI_ORD_KIND] != K_EXIT
                ):
                    check_brackets(
                        ci,
                        cf,
                        si,
                        sf,
                        ps,
                        pc,
                        kr,
                        tr,
                        od,
                        s,
                        j,
                        bt[s, j],
                        bo[s, j],
                        bh[s, j],
                        bl[s, j],
                        bv[s, j],
                    )
        if phase == PHASE_OPEN:
            continue
        for k in range(k0, k1):
            s, j = (0, k) if dense else (ev_s[k], ev_j[k])
            # 3. Decisions at the close; with fill: close, due orders fill right away at this close.
            # Bitwise, not `or`: one test instead of four branches on the common quiet bar.
            any_signal = el[s, j] | xl[s, j] | es[s, j] | xs[s, j]
            if any_signal or (si[s, SI_SIDE] != 0 and ci[s, CI_MAX_HOLD] > 0):
                decide(ci, si, sf, ps, dist, s, j, time, el[s, j], xl[s, j], es[s, j], xs[s, j])
            if ci[s, CI_CLOSE_FILL] == 1 and si[s, SI_ORD_KIND] != K_NONE and si[s, SI_ORD_DUE] <= j:
                fill_pending(
                    ci, cf, si, sf, ps, pc, kr, tr, od, ri, rf, ev, s, j, bt[s, j], time, bc[s, j], bv[s, j]
                )
            sf[s, SF_LAST] = bc[s, j]
            si[s, SI_LAST_BAR] = j
        # 4. Mark the account, reset budgets when due, then let the risk rules act on what they see.
        gross = mark(ci, si, sf, ps)
        if time >= ps[PS_NEXT_REBALANCE]:
            rebalance(ci, cf, si, sf, ps, time)
        if ri.shape[0] > 0:
            apply_rules(ci, si, sf, ps, pc, rs, ri, rf, pi, pf, ev, work, time)
        equity = ps[PS_EQUITY]
        eq[p] = equity
        cash[p] = ps[PS_CASH]
        expo[p] = gross / equity if equity > 0.0 else 0.0
    return p1


@njit(cache=True)
def finish_open(
    ci: np.ndarray,
    si: np.ndarray,
    sf: np.ndarray,
    ps: np.ndarray,
    pc: np.ndarray,
    kr: np.ndarray,
    tr: np.ndarray,
) -> None:
    """Write every position still open as a trade marked at the sleeve's last close (no exit fee)."""
    for s in range(si.shape[0]):
        if sf[s, SF_QTY] > 0.0:
            last = sf[s, SF_LAST]
            close_trade(ci, si, sf, ps, pc, kr, tr, s, np.nan, last, si[s, SI_LAST_BAR], R_END, last)
