"""The simulated broker and portfolio: `simulate` (batch backtest) and `Simulator` (bar-by-bar replay).

Both pack a `PortfolioInput` into the arrays of `runtime.backtest.kernel` and advance it with the same
compiled `step_points`, so a replay through `Simulator.step` gives exactly the batch result. Semantics:

- Decisions at the close of bar t; market orders fill at the open of t+1 (or the close of t with
  fill="close"), `latency_bars` later when set; an order decided on the last bar never fills. Each sleeve
  has one pending-order slot: an exit replaces a pending entry, an entry waits for an empty slot.
- Exits win over entries on the same bar; both entry directions at once, or an entry opposite to the
  held position, do nothing (no implicit reversal).
- Brackets are checked from the bar after the fill (see model.Bracket); `max_hold` closes at the next
  fill once the position has been held that many bars; `cooldown` blocks entry decisions after an exit.
- Sleeves share one account. Each sleeve owns a share of the cash (initially its weight of the capital)
  and sizes from its own equity (that cash plus its position); `rebalance_ms` moves cash between sleeves
  so each one's equity is again its weight of the total. An entry never spends more than the sleeve's
  cash or the account's cash, so cash never goes negative. A short locks its entry value as collateral.
- The time line is the union of all sleeves' bar close times; at each point the sleeves whose bar closes
  then act (in spec order), the account is marked at every sleeve's last close, budgets are reset when a
  rebalancing period ended, and the risk rules act on what they see (their orders fill at each sleeve's
  next bar). Day and week metrics use UTC days and Monday-based weeks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import get_args

import numpy as np

from dsl.units import timeframe_ms
from runtime.backtest import kernel as k
from runtime.backtest.result import BacktestResult, ExitReason, OrderTable, RiskEvent, SleeveInfo, TradeTable
from runtime.plan.model import (
    All,
    Compare,
    Condition,
    Metric,
    Not,
    PortfolioInput,
    RiskRule,
    SleeveInput,
)

# Names of the kernel's codes, in code order (the order of the Literal types that define them).
REASONS: tuple[ExitReason, ...] = get_args(ExitReason)
METRICS: tuple[Metric, ...] = get_args(Metric)
ACTIONS = ("halt", "pause", "flatten", "cap")
INTENTS = ("entry", "exit", "scale_in")
_OPS = (">", ">=", "<", "<=", "==", "!=")
_OFFSET_KINDS = {None: k.O_NONE, "percent": k.O_PCT, "distance": k.O_DIST, "R": k.O_R}
_SIZING_KINDS = {"equity_pct": k.Z_EQUITY, "risk_per_trade": k.Z_RISK, "fixed": k.Z_FIXED, "kelly": k.Z_KELLY}
# Metrics a cap may limit: the ones an entry makes bigger.
_CAPPABLE = ("gross_exposure", "net_exposure", "position", "open_positions", "exposure")
# The compiled step, typed loosely for mypy (numba's dispatcher has no useful signature).
_STEP_POINTS: Callable[..., int] = k.step_points


@dataclass(frozen=True)
class BarUpdate:
    """One closed bar of one sleeve with the decisions taken at its close (input of `Simulator.step`)."""

    sleeve: str  # sleeve name
    time: int  # bar open time, UTC ms
    open: float  # open price
    high: float  # high price
    low: float  # low price
    close: float  # close price
    volume: float  # volume, base units
    entry_long: bool = False  # open or add to a long at this close
    exit_long: bool = False  # close the long at this close
    entry_short: bool = False  # open or add to a short at this close
    exit_short: bool = False  # close the short at this close
    stop_distance: float = math.nan  # value of a ("distance", ...) stop series at this bar
    target_distance: float = math.nan  # value of a ("distance", ...) take-profit series at this bar
    trail_distance: float = math.nan  # value of a ("distance", ...) trailing-stop series at this bar


@dataclass(frozen=True)
class TradeState:
    """A sleeve's position at the close of a bar, after that bar's fills and brackets (what rules read)."""

    position_size: float  # signed base quantity: > 0 long, < 0 short, 0 flat
    entry_price: float  # average entry price; NaN when flat
    bars_since_entry: float  # bars since the first entry fill bar (0 on that bar); NaN when flat
    unrealized_pnl: float  # open profit at the bar's close, quote currency (0 when flat)


# Decides one sleeve's bar from its trade state: returns the bar with its decisions (and distances) set.
Decider = Callable[[BarUpdate, TradeState], BarUpdate]


def _offset(spec: tuple[str, object] | None) -> tuple[int, float, np.ndarray | None]:
    """Split a bracket offset into (kernel kind, scalar value, distance series)."""
    if spec is None:
        return k.O_NONE, math.nan, None
    kind, value = spec
    if kind == "distance":
        return k.O_DIST, math.nan, np.asarray(value, dtype=np.float64)
    return _OFFSET_KINDS[kind], float(value), None  # type: ignore[arg-type]


# A sleeve's per-bar arrays, in the order the kernel's bar buffers hold them.
_COLUMNS = (
    "time", "open", "high", "low", "close", "volume", "entry_long", "exit_long", "entry_short", "exit_short",
)  # fmt: skip


def _check_sleeve(sleeve: SleeveInput) -> None:
    """Refuse inconsistent sleeves with a plain message naming the sleeve."""
    n = len(sleeve.time)
    for name in _COLUMNS[1:]:
        if len(getattr(sleeve, name)) != n:
            raise ValueError(
                f"sleeve {sleeve.name}: {name} has {len(getattr(sleeve, name))} values, time has {n}"
            )
    b = sleeve.bracket
    has_stop = b.stop is not None
    needs_stop = {
        "size: risk_per_trade": sleeve.sizing.kind == "risk_per_trade",
        "take_profit in R": b.take_profit is not None and b.take_profit[0] == "R",
        "trail_after in R": b.trail_after is not None and b.trail_after[0] == "R",
        "breakeven_after": b.breakeven_after is not None,
    }
    for what, needed in needs_stop.items():
        if needed and not has_stop:
            raise ValueError(f"sleeve {sleeve.name}: {what} needs a stop_loss")
    if sleeve.max_entries < 1:
        raise ValueError(f"sleeve {sleeve.name}: max_entries must be at least 1")


def _compile_condition(cond: Condition, rows: list[tuple[int, int, int]], values: list[float]) -> None:
    """Append `cond` to a reverse-Polish program (rows of (kind, metric or arity, op) and values)."""
    if isinstance(cond, Compare):
        rows.append((k.P_CMP, METRICS.index(cond.metric), _OPS.index(cond.op)))
        values.append(float(cond.value))
    elif isinstance(cond, Not):
        _compile_condition(cond.item, rows, values)
        rows.append((k.P_NOT, 0, 0))
        values.append(0.0)
    else:
        if not cond.items:
            raise ValueError("a risk condition combines no items")
        for item in cond.items:
            _compile_condition(item, rows, values)
        rows.append((k.P_AND if isinstance(cond, All) else k.P_OR, len(cond.items), 0))
        values.append(0.0)


def _condition_metrics(cond: Condition | None) -> list[str]:
    """The metrics a condition reads, in order of first appearance."""
    if cond is None:
        return []
    if isinstance(cond, Compare):
        return [cond.metric]
    items = (cond.item,) if isinstance(cond, Not) else cond.items
    seen: list[str] = []
    for item in items:
        seen += [m for m in _condition_metrics(item) if m not in seen]
    return seen


def _check_rule(rule: RiskRule) -> None:
    """Refuse a risk rule the simulator cannot apply, naming it."""
    if rule.action == "cap":
        if rule.cap_metric not in _CAPPABLE:
            raise ValueError(
                f"risk rule {rule.text!r}: cannot cap {rule.cap_metric}; capped: {', '.join(_CAPPABLE)}"
            )
    elif rule.condition is None:
        raise ValueError(f"risk rule {rule.text!r}: {rule.action} needs a condition")


@dataclass(frozen=True)
class _Config:
    """The static arrays of a run, packed once from a PortfolioInput."""

    ci: np.ndarray  # int64 (sleeves, N_CI) sleeve settings
    cf: np.ndarray  # float64 (sleeves, N_CF) sleeve settings
    ri: np.ndarray  # int64 (rules, N_RI) rule settings
    rf: np.ndarray  # float64 (rules, N_RF) rule settings
    pi: np.ndarray  # int64 (items, 3) condition programs
    pf: np.ndarray  # float64 (items,) condition program values
    kelly_size: int  # length of each sleeve's ring of closed trade returns
    dist_used: bool  # whether any sleeve has a ("distance", series) offset


def _pack_config(portfolio: PortfolioInput) -> _Config:
    """Translate sleeves and risk rules into the kernel's config arrays, checking them on the way."""
    sleeves = portfolio.sleeves
    if not sleeves:
        raise ValueError("a portfolio needs at least one sleeve")
    names = [s.name for s in sleeves]
    if len(set(names)) != len(names):
        raise ValueError(f"sleeve names must be unique: {', '.join(names)}")
    if sum(s.weight for s in sleeves) > 1.0 + 1e-9:
        raise ValueError("sleeve weights add up to more than 100%")
    symbols = list(dict.fromkeys(s.symbol for s in sleeves))
    ci = np.zeros((len(sleeves), k.N_CI), dtype=np.int64)
    cf = np.zeros((len(sleeves), k.N_CF), dtype=np.float64)
    dist_used = False
    for i, sl in enumerate(sleeves):
        _check_sleeve(sl)
        ex, b, z = sl.execution, sl.bracket, sl.sizing
        stop, tp, trail = _offset(b.stop), _offset(b.take_profit), _offset(b.trailing_stop)
        after = _offset(b.trail_after)
        dist_used = dist_used or k.O_DIST in (stop[0], tp[0], trail[0])
        ci[i, k.CI_CLOSE_FILL] = 1 if ex.fill == "close" else 0
        ci[i, k.CI_LATENCY] = ex.latency_bars
        ci[i, k.CI_BEST_CASE] = 1 if ex.ambiguity == "best_case" else 0
        ci[i, k.CI_STOP_K], ci[i, k.CI_TP_K], ci[i, k.CI_TRAIL_K] = stop[0], tp[0], trail[0]
        ci[i, k.CI_TRAIL_AFTER_K] = after[0]
        ci[i, k.CI_MAX_HOLD] = b.max_hold_bars or 0
        ci[i, k.CI_COOLDOWN] = b.cooldown_bars
        ci[i, k.CI_SIZE_K] = _SIZING_KINDS[z.kind]
        ci[i, k.CI_KELLY_LOOKBACK] = max(z.kelly_lookback, 1)
        ci[i, k.CI_MAX_ENTRIES] = sl.max_entries
        ci[i, k.CI_WARMUP] = sl.warmup
        ci[i, k.CI_SYMBOL] = symbols.index(sl.symbol)
        ci[i, k.CI_TF_MS] = timeframe_ms(sl.timeframe)
        prec = sl.precision
        cf[i] = [
            ex.fee_maker,
            ex.fee_taker,
            ex.slippage_bps / 10_000.0,
            ex.volume_impact_k or 0.0,
            math.inf if ex.max_volume is None else ex.max_volume,
            stop[1],
            tp[1],
            trail[1],
            after[1],
            math.nan if b.breakeven_after is None else b.breakeven_after,
            z.value,
            z.kelly_fraction,
            z.kelly_cap,
            z.kelly_min,
            sl.scale_in,
            prec.amount_step if prec else 0.0,
            prec.min_qty if prec else 0.0,
            prec.min_notional if prec else 0.0,
            sl.weight,
        ]
    rows: list[tuple[int, int, int]] = []
    values: list[float] = []
    ri = np.zeros((len(portfolio.risk), k.N_RI), dtype=np.int64)
    rf = np.zeros((len(portfolio.risk), k.N_RF), dtype=np.float64)
    for r, rule in enumerate(portfolio.risk):
        _check_rule(rule)
        start = len(rows)
        if rule.condition is not None:
            _compile_condition(rule.condition, rows, values)
        cap = METRICS.index(rule.cap_metric) if rule.cap_metric else -1
        ri[r] = [
            1 if rule.scope == "sleeve" else 0,
            ACTIONS.index(rule.action),
            cap,
            start,
            len(rows) - start,
        ]
        rf[r] = [float(rule.pause_ms), rule.cap_limit]
    return _Config(
        ci=ci,
        cf=cf,
        ri=ri,
        rf=rf,
        pi=np.array(rows, dtype=np.int64).reshape(-1, 3),
        pf=np.array(values, dtype=np.float64),
        kelly_size=max(s.sizing.kelly_lookback for s in sleeves) if sleeves else 1,
        dist_used=dist_used,
    )


class _Engine:
    """Kernel state and growable outputs of one run, plus the conversion to a BacktestResult."""

    def __init__(self, portfolio: PortfolioInput, points: int, trades: int) -> None:
        """Allocate state for `portfolio` with room for `points` time-line points and `trades` trades."""
        self.portfolio = portfolio  # the run's input
        self.config = _pack_config(portfolio)  # packed settings
        n = len(portfolio.sleeves)
        weights = np.array([s.weight for s in portfolio.sleeves], dtype=np.float64)
        # Per-sleeve state: flat, no order, sleeve cash = weight of the capital.
        self.si = np.zeros((n, k.N_SI), dtype=np.int64)  # sleeve int state
        self.si[:, k.SI_ORD_KIND] = k.K_NONE
        self.si[:, k.SI_LAST_BAR] = -1
        self.sf = np.zeros((n, k.N_SF), dtype=np.float64)  # sleeve float state
        self.sf[:, k.SF_ORD_REQ] = np.nan
        self.sf[:, k.SF_ORD_REM] = np.nan
        for col in (k.SF_CASH, k.SF_PEAK, k.SF_DAY0, k.SF_WEEK0, k.SF_EQUITY):
            self.sf[:, col] = weights * portfolio.capital
        # Portfolio state: all cash, no day or week seen yet, first rebalance at the first point.
        self.ps = np.zeros(k.N_PS, dtype=np.float64)  # portfolio state
        for col in (k.PS_CASH, k.PS_PEAK, k.PS_DAY0, k.PS_WEEK0, k.PS_EQUITY):
            self.ps[col] = portfolio.capital
        self.ps[k.PS_DAY] = self.ps[k.PS_WEEK] = -1.0
        self.ps[k.PS_REBALANCE_MS] = float(portfolio.rebalance_ms or 0)
        self.ps[k.PS_NEXT_REBALANCE] = 0.0 if portfolio.rebalance_ms else math.inf
        self.pc = np.zeros(3, dtype=np.int64)  # output row counters
        self.rs = np.zeros((len(portfolio.risk), 2 * (n + 1)), dtype=np.float64)  # rule state per scope
        self.kr = np.zeros((n, self.config.kelly_size), dtype=np.float64)  # Kelly return rings
        self.work = np.zeros(k.N_METRICS, dtype=np.float64)  # scratch for metrics
        self.eq = np.empty(points, dtype=np.float64)  # equity per point
        self.cash = np.empty(points, dtype=np.float64)  # cash per point
        self.expo = np.empty(points, dtype=np.float64)  # gross exposure per point
        self.tr = np.empty((trades, k.N_T), dtype=np.float64)  # trade rows
        self.od = np.empty((2 * trades, k.N_O), dtype=np.float64)  # order rows
        self.ev = np.empty((64, k.N_E), dtype=np.float64)  # risk event rows
        rules = len(portfolio.risk)
        self.margin_rows = 4 * n + 4  # most trade / order rows one point can add
        self.margin_events = rules * (2 * n + 1) + 4  # most risk events one point can add

    def ensure_room(self, points: int) -> None:
        """Grow the outputs so that `points` points fit and one more point cannot overflow."""
        if points > self.eq.shape[0]:
            size = max(points, 2 * self.eq.shape[0])
            self.eq, self.cash, self.expo = (_grow(a, size) for a in (self.eq, self.cash, self.expo))
        pc = self.pc
        if pc[k.PC_TRADES] + self.margin_rows > self.tr.shape[0]:
            self.tr = _grow(self.tr, 2 * self.tr.shape[0] + self.margin_rows)
        if pc[k.PC_ORDERS] + self.margin_rows > self.od.shape[0]:
            self.od = _grow(self.od, 2 * self.od.shape[0] + self.margin_rows)
        if pc[k.PC_EVENTS] + self.margin_events > self.ev.shape[0]:
            self.ev = _grow(self.ev, 2 * self.ev.shape[0] + self.margin_events)

    def run(
        self,
        p0: int,
        p1: int,
        times: np.ndarray,
        starts: np.ndarray,
        ev_s: np.ndarray,
        ev_j: np.ndarray,
        bt: np.ndarray,
        bars: tuple[np.ndarray, ...],
        sigs: tuple[np.ndarray, ...],
        dist: np.ndarray,
        phase: int = k.PHASE_ALL,
    ) -> int:
        """Run `kernel.step_points` over points p0..p1-1 with this engine's state; return the next point.

        `phase` runs only the open or only the close half of the points (see the kernel).
        """
        c = self.config
        return _STEP_POINTS(
            p0, p1, times, starts, ev_s, ev_j, bt, bars, sigs, dist,
            c.ci, c.cf, self.si, self.sf, self.ps, self.pc, self.rs, self.kr, c.ri, c.rf, c.pi, c.pf,
            self.work, self.eq, self.cash, self.expo, self.tr, self.od, self.ev,
            self.margin_rows, self.margin_events, phase,
        )  # fmt: skip

    def state(self, s: int, j: int, close: float) -> TradeState:
        """Sleeve s's trade state at the close of its bar j."""
        side = int(self.si[s, k.SI_SIDE])
        if side == 0:
            return TradeState(0.0, math.nan, math.nan, 0.0)
        qty = float(self.sf[s, k.SF_QTY])
        avg = float(self.sf[s, k.SF_AVG])
        return TradeState(side * qty, avg, float(j - self.si[s, k.SI_ENTRY_BAR]), side * qty * (close - avg))

    def result(self, times: np.ndarray, final: bool = False) -> BacktestResult:
        """Close the books (open positions marked at their last close) and build the BacktestResult.

        `final` says the engine is done: the result may then keep its buffers instead of copies.
        """
        points = len(times)
        keep: Callable[[np.ndarray], np.ndarray] = (lambda a: a) if final else np.copy
        pc = self.pc.copy()
        tr = _grow(self.tr, self.tr.shape[0] + len(self.portfolio.sleeves))
        c = self.config
        k.finish_open(c.ci, self.si, self.sf, self.ps.copy(), pc, self.kr.copy(), tr)
        sleeves = self.portfolio.sleeves
        return BacktestResult(
            time=keep(np.asarray(times, dtype=np.int64)),
            equity=keep(self.eq[:points]),
            cash=keep(self.cash[:points]),
            exposure=keep(self.expo[:points]),
            trade_table=_trades(tr[: pc[k.PC_TRADES]], sleeves),
            order_table=_orders(self.od[: pc[k.PC_ORDERS]], sleeves),
            risk_events=_events(self.ev[: pc[k.PC_EVENTS]], self.portfolio),
            sleeves=tuple(SleeveInfo(s.name, s.strategy, s.symbol, s.timeframe, s.weight) for s in sleeves),
            capital=self.portfolio.capital,
            quote=self.portfolio.quote,
            synthetic=self.portfolio.synthetic,
        )


def _grow(a: np.ndarray, size: int) -> np.ndarray:
    """A copy of `a` with `size` rows (the first rows kept)."""
    out = np.empty((size, *a.shape[1:]), dtype=a.dtype)
    out[: min(size, a.shape[0])] = a[:size]
    return out


def _names(codes: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """An object column of names from a float column of codes (indices into `names`)."""
    lookup = np.empty(len(names), dtype=object)
    lookup[:] = list(names)
    return lookup[codes.astype(np.int64)]


def _trades(rows: np.ndarray, sleeves: Sequence[SleeveInput]) -> TradeTable:
    """The trade table from kernel rows, in order of entry (time, then sleeve order)."""
    rows = rows[np.lexsort((rows[:, k.T_SLEEVE], rows[:, k.T_ENTRY_TIME]))]
    exit_times = rows[:, k.T_EXIT_TIME]
    closed = ~np.isnan(exit_times)
    return TradeTable(
        sleeve=_names(rows[:, k.T_SLEEVE], [s.name for s in sleeves]),
        symbol=_names(rows[:, k.T_SLEEVE], [s.symbol for s in sleeves]),
        side=_names(rows[:, k.T_SIDE] <= 0, ("long", "short")),
        entry_time=rows[:, k.T_ENTRY_TIME].astype(np.int64),
        entry_price=rows[:, k.T_ENTRY_PRICE].copy(),
        exit_time=np.where(closed, exit_times, 0).astype(np.int64),
        closed=closed,
        exit_price=rows[:, k.T_EXIT_PRICE].copy(),
        qty=rows[:, k.T_QTY].copy(),
        pnl=rows[:, k.T_PNL].copy(),
        ret=rows[:, k.T_RET].copy(),
        fees=rows[:, k.T_FEES].copy(),
        exit_reason=_names(rows[:, k.T_REASON], REASONS),
        entry_bar=rows[:, k.T_ENTRY_BAR].astype(np.int64),
        exit_bar=rows[:, k.T_EXIT_BAR].astype(np.int64),
    )


def _orders(rows: np.ndarray, sleeves: Sequence[SleeveInput]) -> OrderTable:
    """The order table from kernel rows (already in time order)."""
    return OrderTable(
        time=rows[:, k.O_TIME].astype(np.int64),
        sleeve=_names(rows[:, k.O_SLEEVE], [s.name for s in sleeves]),
        symbol=_names(rows[:, k.O_SLEEVE], [s.symbol for s in sleeves]),
        side=_names(rows[:, k.O_DIR] <= 0, ("buy", "sell")),
        intent=_names(rows[:, k.O_INTENT], INTENTS),
        reason=_names(rows[:, k.O_REASON], REASONS),
        requested_qty=rows[:, k.O_REQ].copy(),
        filled_qty=rows[:, k.O_FILLED].copy(),
        price=rows[:, k.O_PRICE].copy(),
        fee=rows[:, k.O_FEE].copy(),
    )


def _events(rows: np.ndarray, portfolio: PortfolioInput) -> tuple[RiskEvent, ...]:
    """RiskEvent objects from kernel rows, with the values of the metrics each rule reads."""
    out = []
    for r in rows.tolist():
        rule = portfolio.risk[int(r[k.E_RULE])]
        scope = int(r[k.E_SCOPE])
        action = ACTIONS[int(r[k.E_ACTION])]
        vals = r[k.E_VALUES :]
        if action == "cap":
            names = [str(rule.cap_metric), "limit", "requested_qty", "allowed_qty"]
            values = tuple(zip(names, vals[:4], strict=True))
        else:
            values = tuple((m, vals[METRICS.index(m)]) for m in _condition_metrics(rule.condition))
        out.append(
            RiskEvent(
                time=int(r[k.E_TIME]),
                scope="portfolio" if scope < 0 else portfolio.sleeves[scope].name,
                rule=rule.text,
                action=action,  # type: ignore[arg-type]
                values=values,
            )
        )
    return tuple(out)


def _bar_arrays(sleeves: Sequence[SleeveInput], dist_used: bool) -> tuple[np.ndarray, ...]:
    """The sleeves' bars as (sleeves, bars) arrays: bt, open, high, low, close, volume, 4 signals, dist.

    A single sleeve's arrays are reshaped views (no copy); several sleeves are padded to the longest.
    """
    names = _COLUMNS
    dtypes = (np.int64,) + (np.float64,) * 5 + (np.bool_,) * 4
    length = max(len(s.time) for s in sleeves)
    out: list[np.ndarray] = []
    for name, dtype in zip(names, dtypes, strict=True):
        if len(sleeves) == 1:
            out.append(np.ascontiguousarray(getattr(sleeves[0], name), dtype=dtype).reshape(1, -1))
            continue
        block: np.ndarray = np.zeros((len(sleeves), length), dtype=dtype)
        for i, s in enumerate(sleeves):
            block[i, : len(s.time)] = getattr(s, name)
        out.append(block)
    # Distance series are only materialised when a sleeve uses one.
    dist = np.full((len(sleeves), length if dist_used else 1, 3), np.nan)
    for i, s in enumerate(sleeves):
        b = s.bracket
        for col, spec in enumerate((b.stop, b.take_profit, b.trailing_stop)):
            if spec is not None and spec[0] == "distance":
                dist[i, : len(s.time), col] = spec[1]
    out.append(dist)
    return tuple(out)


def _closes(sleeve: SleeveInput) -> np.ndarray:
    """Close times of a sleeve's bars, UTC ms."""
    return np.asarray(sleeve.time, dtype=np.int64) + timeframe_ms(sleeve.timeframe)


def _time_line(sleeves: Sequence[SleeveInput]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Union of close times: (times, starts, sleeve of each bar event, bar index of each bar event)."""
    closes = [_closes(s) for s in sleeves]
    if len(sleeves) == 1:
        n = len(closes[0])
        return (
            closes[0],
            np.arange(n + 1, dtype=np.int64),
            np.zeros(n, np.int64),
            np.arange(n, dtype=np.int64),
        )
    allc = np.concatenate(closes)
    ev_s = np.concatenate([np.full(len(c), i, dtype=np.int64) for i, c in enumerate(closes)])
    ev_j = np.concatenate([np.arange(len(c), dtype=np.int64) for c in closes])
    # A stable sort keeps the spec order of sleeves whose bars close at the same time.
    order = np.argsort(allc, kind="stable")
    allc, ev_s, ev_j = allc[order], ev_s[order], ev_j[order]
    times, first = np.unique(allc, return_index=True)
    starts = np.append(first, len(allc)).astype(np.int64)
    return times, starts, ev_s, ev_j


def simulate(portfolio: PortfolioInput) -> BacktestResult:
    """Backtest `portfolio` over all its bars with the compiled loop; see the module docstring."""
    sleeves = portfolio.sleeves
    entries = sum(int(np.count_nonzero(s.entry_long)) + int(np.count_nonzero(s.entry_short)) for s in sleeves)
    if len(sleeves) == 1:
        # One sleeve: point p is its bar p; empty event arrays tell the kernel so (nothing to build or read).
        times = _closes(sleeves[0])
        starts = ev_s = ev_j = np.empty(0, dtype=np.int64)
    else:
        times, starts, ev_s, ev_j = _time_line(sleeves)
    engine = _Engine(portfolio, len(times), entries + 16)
    bt, o, h, lo, c, v, el, xl, es, xs, dist = _bar_arrays(sleeves, engine.config.dist_used)
    p, end = 0, len(times)
    while p < end:
        engine.ensure_room(end)
        p = engine.run(
            p, end, times[p:], starts[p:], ev_s, ev_j, bt, (o, h, lo, c, v), (el, xl, es, xs), dist
        )
    return engine.result(times, final=True)


class Simulator:
    """The same broker driven bar by bar (replay of history, paper trading): `step` once per time point.

    The portfolio's sleeve settings and risk rules are used; its candle arrays are not (bars arrive
    through `step`), but their length sizes the first buffers.
    """

    def __init__(self, portfolio: PortfolioInput) -> None:
        """Prepare an empty account for `portfolio`."""
        sleeves = portfolio.sleeves
        size = max(16, max(len(s.time) for s in sleeves) + 1)
        self._engine = _Engine(portfolio, size, 64)  # kernel state and outputs
        self._index = {s.name: i for i, s in enumerate(sleeves)}  # sleeve name -> index
        self._tf = np.array([timeframe_ms(s.timeframe) for s in sleeves], dtype=np.int64)  # timeframes, ms
        n = len(sleeves)
        self._n = np.zeros(n, dtype=np.int64)  # bars received per sleeve
        self._bt = np.zeros((n, size), dtype=np.int64)  # bar open times
        # Bar prices and volume: open, high, low, close, volume.
        self._bars: tuple[np.ndarray, ...] = tuple(np.zeros((n, size)) for _ in range(5))
        # Decisions: entry_long, exit_long, entry_short, exit_short.
        self._sigs: tuple[np.ndarray, ...] = tuple(np.zeros((n, size), dtype=np.bool_) for _ in range(4))
        self._dist = np.full((n, size, 3), np.nan)  # distance series values
        self._times: list[int] = []  # close time of every point stepped

    def _grow_bars(self) -> None:
        """Double the bar buffers."""
        size = 2 * self._bt.shape[1]
        n = self._bt.shape[0]

        def wider(a: np.ndarray) -> np.ndarray:
            """A copy of `a` with its second axis doubled (new cells zero / NaN)."""
            out = (
                np.full((n, size, *a.shape[2:]), np.nan)
                if a.ndim == 3
                else np.zeros((n, size), dtype=a.dtype)
            )
            out[:, : a.shape[1]] = a
            return out

        self._bt = wider(self._bt)
        self._bars = tuple(wider(a) for a in self._bars)
        self._sigs = tuple(wider(a) for a in self._sigs)
        self._dist = wider(self._dist)

    def step(self, *updates: BarUpdate, decide: Decider | None = None) -> None:
        """Advance by one point of the time line: the bars (one per sleeve at most) closing at one time.

        With `decide`, the point runs in two phases: the bars' fills and brackets first, then `decide` is
        called per bar with the sleeve's trade state at the close and returns the bar with its decisions,
        which then take effect. (Rules that read position_size, entry_price, ... need this.)
        """
        if not updates:
            raise ValueError("step needs at least one bar")
        closes = {u.time + int(self._tf[self._index[u.sleeve]]) for u in updates}
        if len(closes) != 1:
            raise ValueError("all bars of one step must close at the same time")
        close = closes.pop()
        if self._times and close <= self._times[-1]:
            raise ValueError(f"bar closing at {close} is not after the previous step ({self._times[-1]})")
        # Store each bar in its sleeve's buffers, in spec order of the sleeves.
        ordered = sorted(updates, key=lambda u: self._index[u.sleeve])
        ev_s = np.array([self._index[u.sleeve] for u in ordered], dtype=np.int64)
        if len(set(ev_s.tolist())) != len(ev_s):
            raise ValueError("a sleeve has two bars in one step")
        if int(self._n.max()) + 1 >= self._bt.shape[1]:
            self._grow_bars()
        ev_j = self._n[ev_s].copy()
        for s, j, u in zip(ev_s.tolist(), ev_j.tolist(), ordered, strict=True):
            self._store(s, j, u)
        self._n[ev_s] += 1
        p = len(self._times)
        self._times.append(close)
        engine = self._engine
        engine.ensure_room(p + 1)
        starts = np.array([0, len(ev_s)], dtype=np.int64)
        times = np.array([close], dtype=np.int64)
        if decide is None:
            engine.run(p, p + 1, times, starts, ev_s, ev_j, self._bt, self._bars, self._sigs, self._dist)
            return
        args = (times, starts, ev_s, ev_j, self._bt, self._bars, self._sigs, self._dist)
        engine.run(p, p + 1, *args, phase=k.PHASE_OPEN)
        for s, j, u in zip(ev_s.tolist(), ev_j.tolist(), ordered, strict=True):
            self._store(s, j, decide(u, engine.state(s, j, u.close)))
        # The open half may have filled orders: make room again, or the kernel would skip the close half.
        engine.ensure_room(p + 1)
        if engine.run(p, p + 1, *args, phase=k.PHASE_CLOSE) != p + 1:
            raise RuntimeError("the broker could not finish a point (output buffers full)")

    def _store(self, s: int, j: int, u: BarUpdate) -> None:
        """Write one bar and its decisions into sleeve s's buffers at index j."""
        self._bt[s, j] = u.time
        for arr, val in zip(self._bars, (u.open, u.high, u.low, u.close, u.volume), strict=True):
            arr[s, j] = val
        for arr, flag in zip(
            self._sigs, (u.entry_long, u.exit_long, u.entry_short, u.exit_short), strict=True
        ):
            arr[s, j] = flag
        self._dist[s, j] = (u.stop_distance, u.target_distance, u.trail_distance)

    def reset_halt(self) -> None:
        """Lift every halt (the manual reset): entries are allowed again from the next decision."""
        engine = self._engine
        engine.ps[k.PS_HALTED] = 0.0
        engine.si[:, k.SI_HALTED] = 0
        for r, rule in enumerate(engine.portfolio.risk):
            if rule.action == "halt":
                engine.rs[r, :] = 0.0

    @property
    def equity(self) -> float:
        """Account equity at the latest point, quote currency."""
        return float(self._engine.ps[k.PS_EQUITY])

    def finish(self) -> BacktestResult:
        """The result so far, with open positions marked at their last close (stepping may continue)."""
        return self._engine.result(np.array(self._times, dtype=np.int64))


def updates_from(portfolio: PortfolioInput) -> list[tuple[BarUpdate, ...]]:
    """The portfolio's bars as the per-point `Simulator.step` arguments (replay of the same history)."""
    sleeves = portfolio.sleeves
    times, starts, ev_s, ev_j = _time_line(sleeves)
    dists = []
    for s in sleeves:
        b = s.bracket
        cols = [
            np.asarray(spec[1], dtype=np.float64) if spec is not None and spec[0] == "distance" else None
            for spec in (b.stop, b.take_profit, b.trailing_stop)
        ]
        dists.append(cols)
    points = []
    for p in range(len(times)):
        ups = []
        for s, j in zip(
            ev_s[starts[p] : starts[p + 1]].tolist(), ev_j[starts[p] : starts[p + 1]].tolist(), strict=True
        ):
            sl, d = sleeves[s], dists[s]
            ups.append(
                BarUpdate(
                    sl.name,
                    int(sl.time[j]),
                    float(sl.open[j]),
                    float(sl.high[j]),
                    float(sl.low[j]),
                    float(sl.close[j]),
                    float(sl.volume[j]),
                    bool(sl.entry_long[j]),
                    bool(sl.exit_long[j]),
                    bool(sl.entry_short[j]),
                    bool(sl.exit_short[j]),
                    math.nan if d[0] is None else float(d[0][j]),
                    math.nan if d[1] is None else float(d[1][j]),
                    math.nan if d[2] is None else float(d[2][j]),
                )
            )
        points.append(tuple(ups))
    return points
