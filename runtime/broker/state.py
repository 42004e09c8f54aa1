"""The broker's named state: codes, record dtypes and the bundles every compiled function takes.

The compiled broker (numba, cached on disk) works on a few named bundles instead of positional arrays:

- `Bars` (NamedTuple of (sleeves, columns) arrays): the bars and decisions a step reads. A step reads
  only the current bar of each sleeve, at the column `Points.column` names, so a batch run passes whole
  histories and a long-lived `Simulator` passes one column per sleeve.
- `Points`: which bars close at each point of the portfolio's time line.
- `Config`: per-sleeve settings (`SLEEVE_CONFIG` records), risk rules (`RULE` records) and their condition
  programs (`PROGRAM` records), and the portfolio-wide settings.
- `State`: everything that changes: per-sleeve records (`SLEEVE_STATE`), the account record (`BOOK`, one
  row), the risk rules' latches, the Kelly rings and a scratch array.
- `Outputs`: equity / cash / exposure per point and the `TRADE`, `ORDER` and `EVENT` rows.

Records are read and written by field (`sl.qty` for `sl = state.sleeves[s]`), the way vectorbt's numba
core passes its order and trade records; nothing is packed by position. The step takes every array out
of its bundle once and hands one sleeve's records (`Record`) to the helpers of its hot path: a record
carries no reference count, while each array taken out of a bundle costs two. `new_state` /
`new_outputs` allocate the bundles.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

# The codes below are compiled into the functions of every broker module as constants. numba's disk cache
# checks only the file a function is defined in, so changing a code's value means clearing the caches
# (runtime/broker/__pycache__); a changed dtype changes the signatures and recompiles by itself.

# Exit / order reasons (index into simulator.REASONS).
R_SIGNAL, R_STOP, R_TARGET, R_TRAIL, R_MAXHOLD, R_RISK, R_END = 0, 1, 2, 3, 4, 5, 6
# Order kinds of a sleeve's single pending-order slot, also the order intent written to the order rows.
K_NONE, K_ENTRY, K_EXIT, K_SCALE = -1, 0, 1, 2
# Offset kinds: none, percent of the fill price, frozen price distance, R multiple of the stop distance.
O_NONE, O_PCT, O_DIST, O_R = 0, 1, 2, 3
# Sizing kinds.
Z_EQUITY, Z_RISK, Z_FIXED, Z_KELLY = 0, 1, 2, 3
# Risk actions and metric ids (index into simulator.ACTIONS / simulator.METRICS).
A_HALT, A_PAUSE, A_FLATTEN, A_CAP = 0, 1, 2, 3
M_DRAWDOWN, M_DAY, M_WEEK, M_GROSS, M_NET, M_POSITION, M_OPEN, M_EQUITY, M_CONSEC, M_EXPOSURE, M_TODAY = (
    range(11)
)
N_METRICS = 11
# Condition program items: compare leaf, n-ary and, n-ary or, not; comparison operators.
P_CMP, P_AND, P_OR, P_NOT = 0, 1, 2, 3
OP_GT, OP_GE, OP_LT, OP_LE, OP_EQ, OP_NE = 0, 1, 2, 3, 4, 5
# Which part of a point `step.step_points` runs: all of it, only the open (fills and brackets), or only
# the close (decisions, marks, rebalance, risk). A driver that must read trade state before deciding runs
# the two halves apart and sets the decisions in between.
PHASE_ALL, PHASE_OPEN, PHASE_CLOSE = 0, 1, 2

DAY_MS = 86_400_000  # one day, ms
EPS = 1e-12  # quantities below this count as zero

_I, _F = np.int64, np.float64

# One record (row) of a structured array below, as the compiled code sees it: fields read and written by
# attribute (`sl.qty`), a view of the array's memory. Typed loosely: numpy's stubs know no field names.
Record = Any

# One sleeve's settings (static for a run).
SLEEVE_CONFIG = np.dtype(
    [
        ("close_fill", _I),  # 1 when orders fill at the close of their due bar, 0 at its open
        ("latency", _I),  # extra bars between the decision and the fill
        # 1 when an exchange fills the orders (live): pending orders wait for `book_fill` from outside and
        # a bracket hit places a market exit instead of filling at the level; 0 = the simulated fill model
        ("external", _I),
        ("best_case", _I),  # 1 when a bar touching stop and target takes the target first
        ("stop_kind", _I),  # stop offset kind (O_*)
        ("tp_kind", _I),  # take-profit offset kind
        ("trail_kind", _I),  # trailing-stop offset kind
        ("trail_after_kind", _I),  # trail_after kind (O_NONE, O_PCT, O_R)
        ("max_hold", _I),  # bars after which a position is closed; 0 = no limit
        ("cooldown", _I),  # bars after an exit fill with no entry decision
        ("size_kind", _I),  # sizing kind (Z_*)
        ("kelly_lookback", _I),  # closed trades Kelly needs
        ("max_entries", _I),  # entries per position
        ("warmup", _I),  # first bar index that may decide
        ("symbol", _I),  # symbol id (sleeves on one symbol share it)
        ("fee_maker", _F),  # maker fee, fraction
        ("fee_taker", _F),  # taker fee, fraction
        ("slip", _F),  # fixed slippage, fraction
        ("impact", _F),  # volume impact k (0 = none)
        ("max_volume", _F),  # participation cap, fraction of bar volume (inf = none)
        ("stop", _F),  # stop percent (O_PCT)
        ("tp", _F),  # take-profit percent or R multiple
        ("trail", _F),  # trailing percent (O_PCT)
        ("trail_after", _F),  # trail_after percent or R multiple
        ("breakeven", _F),  # breakeven R multiple (NaN = none)
        ("size", _F),  # sizing value
        ("kelly_fraction", _F),  # Kelly fraction
        ("kelly_cap", _F),  # Kelly cap
        ("kelly_min", _F),  # Kelly floor / fallback
        ("scale_in", _F),  # added entry size multiple
        ("amount_step", _F),  # amount step (0 = none)
        ("min_qty", _F),  # minimum order quantity, base units
        ("min_notional", _F),  # minimum order value, quote currency
        ("weight", _F),  # target weight, fraction of equity
    ]
)

# One sleeve's mutable state: position, pending order, brackets, budget and risk bookkeeping.
SLEEVE_STATE = np.dtype(
    [
        ("side", _I),  # +1 long, -1 short, 0 flat
        ("entry_bar", _I),  # bar index (sleeve's clock) of the first entry fill
        ("entries", _I),  # entries filled in the current position
        ("ord_kind", _I),  # pending order kind (K_*)
        ("ord_side", _I),  # side of the position the pending order opens or closes
        ("ord_due", _I),  # first bar index on which the pending order may fill
        ("ord_reason", _I),  # reason code of the pending order (R_*)
        ("ord_filled", _I),  # 1 when the pending order has filled in part
        ("cool_until", _I),  # first bar index allowed to decide an entry
        ("last_bar", _I),  # index of the sleeve's latest bar (-1 before the first)
        ("trail_on", _I),  # 1 when the trailing stop is active
        ("be_done", _I),  # 1 when the stop was moved to breakeven
        ("consec", _I),  # consecutive losing closed trades
        ("today", _I),  # entries since the start of the UTC day
        ("kelly_n", _I),  # closed trade returns stored in the Kelly ring
        ("halted", _I),  # 1 when a sleeve halt is in force
        ("entry_time", _I),  # open time of the first entry fill bar, UTC ms
        ("qty", _F),  # position size, base units (>= 0)
        ("avg", _F),  # average entry price
        ("entered", _F),  # total quantity entered in this position, base units
        ("notional", _F),  # total entry value (sum of qty * price), quote currency
        ("fees", _F),  # fees paid by this position so far, quote currency
        ("realized", _F),  # gross profit of the parts already closed, quote currency
        ("exit_qty", _F),  # quantity closed so far, base units
        ("exit_value", _F),  # value closed so far (sum of qty * price), quote currency
        ("stop", _F),  # stop level, price (NaN = none)
        ("tp", _F),  # target level, price (NaN = none)
        ("extreme", _F),  # best price since entry (highest high long, lowest low short)
        ("seen_low", _F),  # lowest price the position has seen: its fills and the bars held through
        ("seen_high", _F),  # highest price the position has seen: its fills and the bars held through
        ("trail", _F),  # trailing distance (price), or fraction when the kind is O_PCT
        ("trail_at", _F),  # price at which trailing starts
        ("be_at", _F),  # price at which the stop moves to breakeven (NaN = never)
        ("risk", _F),  # initial stop distance (the R unit), price; NaN without a stop
        ("ord_req", _F),  # requested quantity of the pending order (NaN = not sized yet)
        ("ord_rem", _F),  # quantity of the pending order still to fill
        ("pd_stop", _F),  # frozen stop distance of the pending entry, price
        ("pd_tp", _F),  # frozen target distance of the pending entry, price
        ("pd_trail", _F),  # frozen trailing distance of the pending entry, price
        ("cash", _F),  # the sleeve's share of the account cash, quote currency
        ("last", _F),  # latest close, price
        ("peak", _F),  # highest sleeve equity, quote currency
        ("day0", _F),  # sleeve equity at the start of the UTC day
        ("week0", _F),  # sleeve equity at the start of the UTC week
        ("equity", _F),  # sleeve equity at the latest mark
        ("pause", _F),  # entries paused until this time, UTC ms
    ]
)

# The account (one record): cash, equity references, portfolio risk state and the output row counters.
BOOK = np.dtype(
    [
        ("cash", _F),  # account cash, quote currency
        ("peak", _F),  # highest equity
        ("day0", _F),  # equity at the start of the UTC day
        ("week0", _F),  # equity at the start of the UTC week (Monday)
        ("equity", _F),  # equity at the latest mark
        ("next_rebalance", _F),  # time of the next budget reset, UTC ms (inf = never)
        ("pause", _F),  # entries paused until this time, UTC ms
        ("halted", _I),  # 1 when a portfolio halt is in force
        ("day", _I),  # current UTC day number (-1 before the first point)
        ("week", _I),  # current UTC week number (-1 before the first point)
        ("consec", _I),  # consecutive losing closed trades, all sleeves
        ("today", _I),  # entries since the start of the UTC day, all sleeves
        ("n_trades", _I),  # trade rows written
        ("n_orders", _I),  # order rows written
        ("n_events", _I),  # risk event rows written
    ]
)

# One risk rule (static).
RULE = np.dtype(
    [
        ("scope", _I),  # 0 portfolio, 1 each sleeve
        ("action", _I),  # A_*
        ("cap_metric", _I),  # metric a cap limits (M_*), -1 for other actions
        ("prog_start", _I),  # first item of the rule's condition program
        ("prog_len", _I),  # items in the program (0 without a condition)
        ("pause_ms", _F),  # pause length, ms
        ("cap_limit", _F),  # cap limit, fraction of equity (or a count for open_positions)
    ]
)

# One item of a condition program in reverse Polish notation.
PROGRAM = np.dtype(
    [
        ("kind", _I),  # P_*
        ("arg", _I),  # P_CMP: metric id (M_*); P_AND / P_OR: number of items combined
        ("op", _I),  # P_CMP: comparison operator (OP_*)
        ("value", _F),  # P_CMP: the value compared with
    ]
)

# One round trip (closed, or open and marked at the last close).
TRADE = np.dtype(
    [
        ("sleeve", _I),  # sleeve index
        ("side", _I),  # +1 long, -1 short
        ("entry_time", _I),  # open time of the entry fill bar, UTC ms
        ("entry_price", _F),  # average entry price
        ("closed", _I),  # 1 closed, 0 still open at the end
        ("exit_time", _I),  # open time of the exit fill bar, UTC ms (0 when open)
        ("exit_price", _F),  # average exit price (the last close when open)
        ("qty", _F),  # quantity entered, base units
        ("pnl", _F),  # profit after fees, quote currency
        ("ret", _F),  # pnl / entry notional
        ("fees", _F),  # fees paid, quote currency
        ("reason", _I),  # exit reason (R_*)
        ("entry_bar", _I),  # entry fill bar index, sleeve's clock
        ("exit_bar", _I),  # exit fill bar index (the last bar when open)
        ("mae", _F),  # maximum adverse excursion: worst price seen as a return on entry_price (<= 0)
        ("mfe", _F),  # maximum favourable excursion: best price seen as a return on entry_price (>= 0)
    ]
)

# One fill of an order.
ORDER = np.dtype(
    [
        ("time", _I),  # open time of the fill bar, UTC ms
        ("sleeve", _I),  # sleeve index
        ("direction", _I),  # +1 buy, -1 sell
        ("intent", _I),  # K_ENTRY, K_EXIT or K_SCALE
        ("reason", _I),  # R_*
        ("requested", _F),  # quantity the order asked for, base units
        ("filled", _F),  # quantity filled by this fill, base units
        ("price", _F),  # fill price, slippage included
        ("fee", _F),  # fee paid, quote currency
    ]
)

# One risk rule action: the scope's metrics when it acted, or for a cap (metric after the order, limit,
# requested qty, allowed qty) in the first four values; unused values are NaN.
EVENT = np.dtype(
    [
        ("time", _I),  # close time of the point, UTC ms
        ("scope", _I),  # -1 portfolio, else the sleeve index
        ("rule", _I),  # rule index
        ("action", _I),  # A_*
        ("values", _F, (N_METRICS,)),  # metrics by M_* id (see above for a cap)
    ]
)


class Bars(NamedTuple):
    """The bars and decisions a step reads, each (sleeves, columns); column c of sleeve s is one bar."""

    time: np.ndarray  # int64 bar open times, UTC ms
    open: np.ndarray  # float64 open prices
    high: np.ndarray  # float64 high prices
    low: np.ndarray  # float64 low prices
    close: np.ndarray  # float64 close prices
    volume: np.ndarray  # float64 volumes, base units
    entry_long: np.ndarray  # bool open or add to a long at the close
    exit_long: np.ndarray  # bool close the long at the close
    entry_short: np.ndarray  # bool open or add to a short at the close
    exit_short: np.ndarray  # bool close the short at the close
    distance: np.ndarray  # float64 (sleeves, columns or 1, 3) stop / target / trailing distances (NaN = none)


class Points(NamedTuple):
    """The points p0.. of a time line a step call runs, indexed relative to p0.

    Point p closes at `times[p - p0]`; its bars are k in starts[p - p0] <= k < starts[p - p0 + 1]: bar
    `bar[k]` (counted on sleeve `sleeve[k]`'s own clock) stored at column `column[k]` of `Bars`. Empty
    `sleeve` means a dense time line (one sleeve, point p is its bar p at column p).
    """

    times: np.ndarray  # int64 close time of each point, UTC ms
    starts: np.ndarray  # int64 first bar event of each point, plus the end
    sleeve: np.ndarray  # int64 sleeve of each bar event
    bar: np.ndarray  # int64 bar index of each bar event, on its sleeve's clock
    column: np.ndarray  # int64 column of each bar event in `Bars`


class Config(NamedTuple):
    """A run's static settings."""

    sleeves: np.ndarray  # SLEEVE_CONFIG (sleeves,)
    rules: np.ndarray  # RULE (rules,)
    program: np.ndarray  # PROGRAM (items,) the rules' condition programs
    rebalance_ms: float  # rebalancing period, ms (0 = never)
    margin_rows: int  # most trade / order rows one point can add
    margin_events: int  # most risk event rows one point can add


class State(NamedTuple):
    """Everything a step changes besides its outputs."""

    sleeves: np.ndarray  # SLEEVE_STATE (sleeves,)
    book: np.ndarray  # BOOK (1,) the account
    rule_latch: np.ndarray  # float64 (rules, 1 + sleeves) halt flag or pause end per scope (portfolio first)
    rule_held: np.ndarray  # float64 (rules, 1 + sleeves) 1 when the condition held at the previous point
    kelly: np.ndarray  # float64 (sleeves, ring) each sleeve's latest closed trade returns (Kelly)
    work: np.ndarray  # float64 (N_METRICS,) scratch for metrics


class Outputs(NamedTuple):
    """What a run produces: per point values and rows (counted by `State.book`'s n_* fields)."""

    equity: np.ndarray  # float64 account equity per point
    cash: np.ndarray  # float64 account cash per point
    exposure: np.ndarray  # float64 gross position value / equity per point
    trades: np.ndarray  # TRADE rows
    orders: np.ndarray  # ORDER rows
    events: np.ndarray  # EVENT rows


def new_state(config: Config, capital: float, kelly_size: int) -> State:
    """A flat account: no position or order, each sleeve's cash its weight of `capital`."""
    n = len(config.sleeves)
    sleeves = np.zeros(n, dtype=SLEEVE_STATE)
    sleeves["ord_kind"] = K_NONE
    sleeves["last_bar"] = -1
    sleeves["ord_req"] = np.nan
    sleeves["ord_rem"] = np.nan
    budget = config.sleeves["weight"] * capital
    for name in ("cash", "peak", "day0", "week0", "equity"):
        sleeves[name] = budget
    # The account: all cash, no day or week seen yet, first rebalance at the first point.
    book = np.zeros(1, dtype=BOOK)
    for name in ("cash", "peak", "day0", "week0", "equity"):
        book[name] = capital
    book["day"] = book["week"] = -1
    book["next_rebalance"] = 0.0 if config.rebalance_ms else np.inf
    rules = len(config.rules)
    return State(
        sleeves=sleeves,
        book=book,
        rule_latch=np.zeros((rules, n + 1)),
        rule_held=np.zeros((rules, n + 1)),
        kelly=np.zeros((n, kelly_size)),
        work=np.zeros(N_METRICS),
    )


def new_outputs(points: int, trades: int) -> Outputs:
    """Empty outputs with room for `points` points, `trades` trades and twice as many orders."""
    return Outputs(
        equity=np.empty(points),
        cash=np.empty(points),
        exposure=np.empty(points),
        trades=np.empty(trades, dtype=TRADE),
        orders=np.empty(2 * trades, dtype=ORDER),
        events=np.empty(64, dtype=EVENT),
    )
