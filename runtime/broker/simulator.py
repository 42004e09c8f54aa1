"""The simulated broker and portfolio: `simulate` (batch backtest) and `Simulator` (bar-by-bar replay).

Both pack a `PortfolioInput` into the named bundles of `runtime.broker.state` and advance it with the
same compiled `step.step_points`, so a replay through `Simulator.step` gives exactly the batch result.
Semantics:

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

A `Simulator` holds only the current bar of each sleeve (the step reads nothing older), so its memory
grows only with its outputs: 32 bytes per point (close time, equity, cash, exposure) plus the trade,
order and risk event rows. `snapshot()` / `Simulator.restore` carry its whole state across processes.
"""

from __future__ import annotations

import base64
import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, get_args

import numpy as np

from dsl.builtins import CAPPABLE
from dsl.units import timeframe_ms
from runtime.broker import state as st
from runtime.broker.accounting import Fill, finish_open, reset_budgets
from runtime.broker.fills import book_external, order_qty
from runtime.broker.result import BacktestResult, ExitReason, OrderTable, RiskEvent, SleeveInfo, TradeTable
from runtime.broker.step import advance, step_members, step_points
from runtime.graph.timeline import timeline
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
_OFFSET_KINDS = {None: st.O_NONE, "percent": st.O_PCT, "distance": st.O_DIST, "R": st.O_R}
_SIZING_KINDS = {
    "equity_pct": st.Z_EQUITY,
    "risk_per_trade": st.Z_RISK,
    "fixed": st.Z_FIXED,
    "kelly": st.Z_KELLY,
}
# The compiled step, typed loosely for mypy (numba's dispatcher has no useful signature).
_STEP_POINTS: Callable[..., int] = step_points
_FINISH_OPEN: Callable[..., None] = finish_open
_ORDER_QTY: Callable[..., float] = order_qty
_BOOK_EXTERNAL: Callable[..., None] = book_external
_RESET_BUDGETS: Callable[..., None] = reset_budgets
_STEP_MEMBERS: Callable[..., np.ndarray] = step_members
_ADVANCE: Callable[..., int] = advance


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


def _offset(spec: tuple[str, object] | None) -> tuple[int, float]:
    """A bracket offset as (kernel kind, scalar value); a distance series' values arrive with the bars."""
    if spec is None:
        return st.O_NONE, math.nan
    kind, value = spec
    if kind == "distance":
        return st.O_DIST, math.nan
    return _OFFSET_KINDS[kind], float(value)  # type: ignore[arg-type]


# A sleeve's per-bar arrays, in the order of `state.Bars`.
_COLUMNS = (
    "time", "open", "high", "low", "close", "volume", "entry_long", "exit_long", "entry_short", "exit_short",
)  # fmt: skip
_DTYPES = (np.int64,) + (np.float64,) * 5 + (np.bool_,) * 4  # their dtypes


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


def _compile_condition(cond: Condition, items: list[tuple[int, int, int, float]]) -> None:
    """Append `cond` to a reverse-Polish program of (kind, metric or arity, op, value) items."""
    if isinstance(cond, Compare):
        items.append((st.P_CMP, METRICS.index(cond.metric), _OPS.index(cond.op), float(cond.value)))
    elif isinstance(cond, Not):
        _compile_condition(cond.item, items)
        items.append((st.P_NOT, 0, 0, 0.0))
    else:
        if not cond.items:
            raise ValueError("a risk condition combines no items")
        for item in cond.items:
            _compile_condition(item, items)
        items.append((st.P_AND if isinstance(cond, All) else st.P_OR, len(cond.items), 0, 0.0))


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
        # The language's one list of cappable metrics (a checked spec never fails here).
        if rule.cap_metric not in CAPPABLE:
            raise ValueError(
                f"risk rule {rule.text!r}: cannot cap {rule.cap_metric}; capped: {', '.join(CAPPABLE)}"
            )
    elif rule.condition is None:
        raise ValueError(f"risk rule {rule.text!r}: {rule.action} needs a condition")


def _sleeve_config(sl: SleeveInput, symbol: int, external: bool) -> tuple[object, ...]:
    """One sleeve's settings as a `state.SLEEVE_CONFIG` record (checked first); see `pack_config`."""
    _check_sleeve(sl)
    ex, b, z, prec = sl.execution, sl.bracket, sl.sizing, sl.precision
    stop, tp, trail, after = (_offset(o) for o in (b.stop, b.take_profit, b.trailing_stop, b.trail_after))
    fields: dict[str, object] = {
        "close_fill": 1 if ex.fill == "close" else 0,
        "latency": ex.latency_bars,
        "external": 1 if external else 0,
        "best_case": 1 if ex.ambiguity == "best_case" else 0,
        "stop_kind": stop[0],
        "tp_kind": tp[0],
        "trail_kind": trail[0],
        "trail_after_kind": after[0],
        "max_hold": b.max_hold_bars or 0,
        "cooldown": b.cooldown_bars,
        "size_kind": _SIZING_KINDS[z.kind],
        "kelly_lookback": max(z.kelly_lookback, 1),
        "max_entries": sl.max_entries,
        "warmup": sl.warmup,
        "symbol": symbol,
        "fee_maker": ex.fee_maker,
        "fee_taker": ex.fee_taker,
        "slip": ex.slippage_bps / 10_000.0,
        "impact": ex.volume_impact_k or 0.0,
        "max_volume": math.inf if ex.max_volume is None else ex.max_volume,
        "stop": stop[1],
        "tp": tp[1],
        "trail": trail[1],
        "trail_after": after[1],
        "breakeven": math.nan if b.breakeven_after is None else b.breakeven_after,
        "size": z.value,
        "kelly_fraction": z.kelly_fraction,
        "kelly_cap": z.kelly_cap,
        "kelly_min": z.kelly_min,
        "scale_in": sl.scale_in,
        "amount_step": prec.amount_step if prec else 0.0,
        "min_qty": prec.min_qty if prec else 0.0,
        "min_notional": prec.min_notional if prec else 0.0,
        "weight": sl.weight,
    }
    return tuple(fields[name] for name in st.SLEEVE_CONFIG.names or ())


def pack_config(portfolio: PortfolioInput, external: bool = False) -> st.Config:
    """Translate sleeves and risk rules into the broker's `Config`, checking them on the way.

    `external`: an exchange fills the orders (live trading), not the simulated fill model.
    """
    sleeves = portfolio.sleeves
    if not sleeves:
        raise ValueError("a portfolio needs at least one sleeve")
    names = [s.name for s in sleeves]
    if len(set(names)) != len(names):
        raise ValueError(f"sleeve names must be unique: {', '.join(names)}")
    if sum(s.weight for s in sleeves) > 1.0 + 1e-9:
        raise ValueError("sleeve weights add up to more than 100%")
    symbols = list(dict.fromkeys(s.symbol for s in sleeves))
    config = np.array(
        [_sleeve_config(sl, symbols.index(sl.symbol), external) for sl in sleeves], dtype=st.SLEEVE_CONFIG
    )
    items: list[tuple[int, int, int, float]] = []
    rules = np.zeros(len(portfolio.risk), dtype=st.RULE)
    for r, rule in enumerate(portfolio.risk):
        _check_rule(rule)
        start = len(items)
        if rule.condition is not None:
            _compile_condition(rule.condition, items)
        cap = METRICS.index(rule.cap_metric) if rule.cap_metric else -1
        scope = 1 if rule.scope == "sleeve" else 0
        action = ACTIONS.index(rule.action)
        rules[r] = (scope, action, cap, start, len(items) - start, float(rule.pause_ms), rule.cap_limit)
    n = len(sleeves)
    return st.Config(
        sleeves=config,
        rules=rules,
        program=np.array(items, dtype=st.PROGRAM),
        rebalance_ms=float(portfolio.rebalance_ms or 0),
        margin_rows=4 * n + 4,
        margin_events=len(portfolio.risk) * (2 * n + 1) + 4,
    )


def _uses_distance(sleeves: Sequence[SleeveInput]) -> bool:
    """Whether any sleeve has a ("distance", series) bracket offset."""
    return any(
        spec is not None and spec[0] == "distance"
        for s in sleeves
        for spec in (s.bracket.stop, s.bracket.take_profit, s.bracket.trailing_stop)
    )


class _Engine:
    """Broker config, state and growable outputs of one run, plus the conversion to a BacktestResult."""

    def __init__(self, portfolio: PortfolioInput, points: int, trades: int, external: bool = False) -> None:
        """Allocate state for `portfolio` with room for `points` time-line points and `trades` trades.

        `external`: an exchange fills the orders (see `pack_config`).
        """
        self.portfolio = portfolio  # the run's input
        self.config = pack_config(portfolio, external)  # packed settings
        kelly_size = max(s.sizing.kelly_lookback for s in portfolio.sleeves)
        self.state = st.new_state(self.config, portfolio.capital, kelly_size)  # mutable broker state
        self.out = st.new_outputs(points, trades)  # outputs, grown by ensure_room
        # Sleeves and risk rules of earlier versions of a reloaded spec that no longer run: their rows in
        # the outputs use the indices after the running ones (see `Simulator.migrated`).
        self.retired: tuple[SleeveInput, ...] = ()  # sleeves of earlier versions, after the running ones
        self.retired_rules: tuple[RiskRule, ...] = ()  # risk rules of earlier versions, after those

    def ensure_room(self, points: int) -> None:
        """Grow the outputs so that `points` points fit and one more point cannot overflow."""
        out, book, config = self.out, self.state.book[0], self.config
        if points > out.equity.shape[0]:
            size = max(points, 2 * out.equity.shape[0])
            out = out._replace(**{f: _grow(getattr(out, f), size) for f in ("equity", "cash", "exposure")})
        rows = config.margin_rows
        if book["n_trades"] + rows > out.trades.shape[0]:
            out = out._replace(trades=_grow(out.trades, 2 * out.trades.shape[0] + rows))
        if book["n_orders"] + rows > out.orders.shape[0]:
            out = out._replace(orders=_grow(out.orders, 2 * out.orders.shape[0] + rows))
        if book["n_events"] + config.margin_events > out.events.shape[0]:
            out = out._replace(events=_grow(out.events, 2 * out.events.shape[0] + config.margin_events))
        self.out = out

    def named(self) -> PortfolioInput:
        """The portfolio with the retired sleeves and rules after the running ones (names of output rows)."""
        if not self.retired and not self.retired_rules:
            return self.portfolio
        p = self.portfolio
        return dataclasses.replace(
            p, sleeves=(*p.sleeves, *self.retired), risk=(*p.risk, *self.retired_rules)
        )

    def run(self, points: st.Points, p0: int, p1: int, bars: st.Bars, phase: int = st.PHASE_ALL) -> int:
        """Run `step.step_points` over points p0..p1-1 with this engine's state; return the next point.

        `phase` runs only the open or only the close half of the points (see the step). A dense time line
        (one sleeve's whole history, `simulate`) runs the step's dense version, `step.advance` without bar
        events: the same arithmetic, its sleeve's records found once.
        """
        if points.sleeve.shape[0] == 0:
            return _ADVANCE(points, None, p0, p1, bars, self.config, self.state, self.out, phase)
        return _STEP_POINTS(points, p0, p1, bars, self.config, self.state, self.out, phase)

    def trade_state(self, s: int, j: int, close: float) -> TradeState:
        """Sleeve s's trade state at the close of its bar j."""
        sl = self.state.sleeves[s]
        side = int(sl["side"])
        if side == 0:
            return TradeState(0.0, math.nan, math.nan, 0.0)
        qty = float(sl["qty"])
        avg = float(sl["avg"])
        return TradeState(side * qty, avg, float(j - sl["entry_bar"]), side * qty * (close - avg))

    def result(self, times: np.ndarray, final: bool = False) -> BacktestResult:
        """Close the books (open positions marked at their last close) and build the BacktestResult.

        `final` says the engine is done: the result may then keep its buffers instead of copies.
        """
        points = len(times)
        keep: Callable[[np.ndarray], np.ndarray] = (lambda a: a) if final else np.copy
        # Open positions are written as trades into copies, so that stepping may continue.
        state = self.state._replace(book=self.state.book.copy())
        out = self.out._replace(trades=_grow(self.out.trades, self.out.trades.shape[0] + len(state.sleeves)))
        _FINISH_OPEN(state, out)
        book = state.book[0]
        sleeves = self.portfolio.sleeves
        return BacktestResult(
            time=keep(np.asarray(times, dtype=np.int64)),
            equity=keep(out.equity[:points]),
            cash=keep(out.cash[:points]),
            exposure=keep(out.exposure[:points]),
            trade_table=_trades(out.trades[: book["n_trades"]], (*sleeves, *self.retired)),
            order_table=_orders(out.orders[: book["n_orders"]], (*sleeves, *self.retired)),
            risk_events=_events(out.events[: book["n_events"]], self.named()),
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
    """An object column of names from a column of codes (indices into `names`)."""
    lookup = np.empty(len(names), dtype=object)
    lookup[:] = list(names)
    return lookup[codes.astype(np.int64)]


def _trades(rows: np.ndarray, sleeves: Sequence[SleeveInput]) -> TradeTable:
    """The trade table from TRADE rows, in order of entry (time, then sleeve order)."""
    rows = rows[np.lexsort((rows["sleeve"], rows["entry_time"]))]
    return TradeTable(
        sleeve=_names(rows["sleeve"], [s.name for s in sleeves]),
        symbol=_names(rows["sleeve"], [s.symbol for s in sleeves]),
        side=_names(rows["side"] <= 0, ("long", "short")),
        entry_time=rows["entry_time"].copy(),
        entry_price=rows["entry_price"].copy(),
        exit_time=rows["exit_time"].copy(),
        closed=rows["closed"] == 1,
        exit_price=rows["exit_price"].copy(),
        qty=rows["qty"].copy(),
        pnl=rows["pnl"].copy(),
        ret=rows["ret"].copy(),
        fees=rows["fees"].copy(),
        exit_reason=_names(rows["reason"], REASONS),
        entry_bar=rows["entry_bar"].copy(),
        exit_bar=rows["exit_bar"].copy(),
        mae=rows["mae"].copy(),
        mfe=rows["mfe"].copy(),
    )


def _orders(rows: np.ndarray, sleeves: Sequence[SleeveInput]) -> OrderTable:
    """The order table from ORDER rows (already in time order)."""
    return OrderTable(
        time=rows["time"].copy(),
        sleeve=_names(rows["sleeve"], [s.name for s in sleeves]),
        symbol=_names(rows["sleeve"], [s.symbol for s in sleeves]),
        side=_names(rows["direction"] <= 0, ("buy", "sell")),
        intent=_names(rows["intent"], INTENTS),
        reason=_names(rows["reason"], REASONS),
        requested_qty=rows["requested"].copy(),
        filled_qty=rows["filled"].copy(),
        price=rows["price"].copy(),
        fee=rows["fee"].copy(),
    )


def _events(rows: np.ndarray, portfolio: PortfolioInput) -> tuple[RiskEvent, ...]:
    """RiskEvent objects from EVENT rows, with the values of the metrics each rule reads."""
    out = []
    columns = (rows[f].tolist() for f in ("time", "scope", "rule", "action", "values"))
    for time, scope, r, code, vals in zip(*columns, strict=True):
        rule = portfolio.risk[r]
        action = ACTIONS[code]
        if action == "cap":
            names = [str(rule.cap_metric), "limit", "requested_qty", "allowed_qty"]
            values = tuple(zip(names, vals[:4], strict=True))
        else:
            values = tuple((m, vals[METRICS.index(m)]) for m in _condition_metrics(rule.condition))
        out.append(
            RiskEvent(
                time=time,
                scope="portfolio" if scope < 0 else portfolio.sleeves[scope].name,
                rule=rule.text,
                action=action,  # type: ignore[arg-type]
                values=values,
            )
        )
    return tuple(out)


def _bar_arrays(sleeves: Sequence[SleeveInput]) -> st.Bars:
    """The sleeves' whole histories as `Bars` (column j = bar j).

    A single sleeve's arrays are reshaped views (no copy); several sleeves are padded to the longest.
    Distance series are only materialised when a sleeve uses one.
    """
    length = max(len(s.time) for s in sleeves)
    out: list[np.ndarray] = []
    for name, dtype in zip(_COLUMNS, _DTYPES, strict=True):
        if len(sleeves) == 1:
            out.append(np.ascontiguousarray(getattr(sleeves[0], name), dtype=dtype).reshape(1, -1))
            continue
        block: np.ndarray = np.zeros((len(sleeves), length), dtype=dtype)
        for i, s in enumerate(sleeves):
            block[i, : len(s.time)] = getattr(s, name)
        out.append(block)
    dist = np.full((len(sleeves), length if _uses_distance(sleeves) else 1, 3), np.nan)
    for i, s in enumerate(sleeves):
        b = s.bracket
        for col, spec in enumerate((b.stop, b.take_profit, b.trailing_stop)):
            if spec is not None and spec[0] == "distance":
                dist[i, : len(s.time), col] = spec[1]
    return st.Bars._make([*out, dist])


def _closes(sleeve: SleeveInput) -> np.ndarray:
    """Close times of a sleeve's bars, UTC ms."""
    return np.asarray(sleeve.time, dtype=np.int64) + timeframe_ms(sleeve.timeframe)


def _time_line(sleeves: Sequence[SleeveInput]) -> st.Points:
    """Union of the sleeves' close times as `Points` over whole histories (column = bar index).

    The merge is the graph's one (`graph.timeline`), keeping the spec order of sleeves whose bars close at
    the same time whatever their timeframes (the order the step loops over them).
    """
    line = timeline(
        [s.time for s in sleeves], [timeframe_ms(s.timeframe) for s in sleeves], slower_first=False
    )
    return st.Points(line.times, line.starts, line.feed, line.bar, line.bar)


def simulate(portfolio: PortfolioInput) -> BacktestResult:
    """Backtest `portfolio` over all its bars with the compiled loop; see the module docstring."""
    sleeves = portfolio.sleeves
    entries = sum(int(np.count_nonzero(s.entry_long)) + int(np.count_nonzero(s.entry_short)) for s in sleeves)
    if len(sleeves) == 1:
        # One sleeve: point p is its bar p; empty event arrays tell the step so (nothing to build or read).
        none = np.empty(0, dtype=np.int64)
        line = st.Points(_closes(sleeves[0]), none, none, none, none)
    else:
        line = _time_line(sleeves)
    engine = _Engine(portfolio, len(line.times), entries + 16)
    bars = _bar_arrays(sleeves)
    p, end = 0, len(line.times)
    while p < end:
        engine.ensure_room(end)
        p = engine.run(line._replace(times=line.times[p:], starts=line.starts[p:]), p, end, bars)
    return engine.result(line.times, final=True)


def simulates_together(portfolio: PortfolioInput) -> bool:
    """Whether `simulate_members` takes this portfolio: one sleeve, no risk rules, no rebalancing."""
    return len(portfolio.sleeves) == 1 and not portfolio.risk and not portfolio.rebalance_ms


class Scratch:
    """Arrays `simulate_members` reuses from one call to the next, instead of fresh ones for every batch.

    A fresh array of megabytes costs its page faults and the zeroing of its pages when first written, as
    much as a member's simulation: a sweep hands the same scratch to its batches. The results of a call
    view these arrays, so they hold until the next call with the same scratch.
    """

    def __init__(self) -> None:
        """No array yet."""
        self.arrays: dict[str, np.ndarray] = {}  # role -> the array kept for it (members along axis 0)

    def take(self, role: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """An uninitialised C-contiguous array of `shape`: the first rows of the kept one when it fits."""
        kept = self.arrays.get(role)
        if kept is None or kept.dtype != dtype or kept.shape[1:] != shape[1:] or kept.shape[0] < shape[0]:
            kept = self.arrays[role] = np.empty(shape, dtype=dtype)
        return kept[: shape[0]]


def _stack(rows: Sequence[np.ndarray]) -> np.ndarray:
    """Arrays of one row each (records or not), stacked along axis 0.

    Not `np.concatenate`: its dtype promotion costs more than the rest of a member's set-up for records.
    """
    out = np.empty((len(rows), *rows[0].shape[1:]), dtype=rows[0].dtype)
    for i, row in enumerate(rows):
        out[i] = row[0]
    return out


def simulate_members(
    portfolios: Sequence[PortfolioInput], scratch: Scratch | None = None
) -> list[BacktestResult | None]:
    """`simulate` of many one-sleeve portfolios over the same bars, in one compiled call (a sweep's members).

    Each portfolio must pass `simulates_together`, and all must read the same bars (equal candle columns;
    their decisions and settings differ). The result of each is exactly `simulate(portfolio)`'s, or None for
    a member whose trade or order rows outgrew the room sized from its entry decisions (many partial fills
    under a volume cap): run it with `simulate`. Memory: per member, its decisions, equity, cash and
    exposure (26 bytes a bar) and its rows. The results view arrays of `scratch` when given (valid until
    its next use), else arrays allocated by this call.
    """
    if not portfolios:
        return []
    first = portfolios[0].sleeves[0]
    for pf in portfolios:
        sl = pf.sleeves[0]
        if not simulates_together(pf):
            raise ValueError("simulate_members takes one-sleeve portfolios without risk rules or rebalancing")
        same = (
            getattr(sl, n) is getattr(first, n) or np.array_equal(getattr(sl, n), getattr(first, n))
            for n in _COLUMNS[:6]
        )
        if sl.timeframe != first.timeframe or not all(same):
            raise ValueError(f"sleeve {sl.name}: simulate_members needs the same bars for every member")
    members = len(portfolios)
    points = len(first.time)
    none = np.empty(0, dtype=np.int64)
    line = st.Points(_closes(first), none, none, none, none)
    # Shared price rows (one sleeve's, as `_bar_arrays` passes them), each member's decision rows.
    prices = [
        np.ascontiguousarray(getattr(first, n), dtype=d).reshape(1, -1)
        for n, d in zip(_COLUMNS[:6], _DTYPES[:6], strict=True)
    ]
    room = scratch or Scratch()
    flags = [room.take(name, (members, points), np.bool_) for name in _COLUMNS[6:]]
    sleeves = [pf.sleeves[0] for pf in portfolios]
    uses_distance = _uses_distance(sleeves)
    dist = room.take("distance", (members, points if uses_distance else 1, 3), np.float64)
    dist[:] = np.nan
    for m, sl in enumerate(sleeves):
        for column, name in zip(flags, _COLUMNS[6:], strict=True):
            column[m] = getattr(sl, name)
        if uses_distance:
            dist[m] = _bar_arrays([sl]).distance[0]
    bars = st.Bars._make([*prices, *flags, dist])
    # Settings and a fresh account per member, stacked; the row room of the largest member for all.
    configs = [pack_config(pf) for pf in portfolios]
    ring = max(max(s.sizing.kelly_lookback for s in sleeves), 1)
    states = [st.new_state(c, pf.capital, ring) for c, pf in zip(configs, portfolios, strict=True)]
    entries = max(int(np.count_nonzero(s.entry_long)) + int(np.count_nonzero(s.entry_short)) for s in sleeves)
    # Rows for the most entries of a member (as `simulate` sizes them), rounded up to a power of two so
    # that the next batches' rows usually fit the same scratch.
    trades = 1 << (entries + 16 - 1).bit_length()
    config = configs[0]._replace(sleeves=_stack([c.sleeves for c in configs]))
    state = states[0]._replace(
        sleeves=_stack([s.sleeves for s in states]),
        book=_stack([s.book for s in states]),
        kelly=_stack([s.kelly for s in states]),
    )
    out = st.Outputs(
        equity=room.take("equity", (members, points), np.float64),
        cash=room.take("cash", (members, points), np.float64),
        exposure=room.take("exposure", (members, points), np.float64),
        trades=room.take("trades", (members, trades), st.TRADE),
        orders=room.take("orders", (members, 2 * trades), st.ORDER),
        events=np.empty(64, dtype=st.EVENT),
    )
    stopped = _STEP_MEMBERS(line, bars, config, state, out)
    results: list[BacktestResult | None] = []
    for m, pf in enumerate(portfolios):
        if stopped[m] != points:
            results.append(None)
            continue
        book = state.book[m]
        results.append(
            BacktestResult(
                time=line.times,
                equity=out.equity[m],
                cash=out.cash[m],
                exposure=out.exposure[m],
                trade_table=_trades(out.trades[m, : book["n_trades"]], pf.sleeves),
                order_table=_orders(out.orders[m, : book["n_orders"]], pf.sleeves),
                risk_events=(),
                sleeves=tuple(
                    SleeveInfo(s.name, s.strategy, s.symbol, s.timeframe, s.weight) for s in pf.sleeves
                ),
                capital=pf.capital,
                quote=pf.quote,
                synthetic=pf.synthetic,
            )
        )
    return results


# Snapshot format: its name and version (bump the version whenever a dtype or the layout below changes).
SNAPSHOT_FORMAT = "strat.broker.Simulator"
SNAPSHOT_VERSION = 3
# Arrays of a snapshot: the state bundle's fields, then the outputs (trimmed to what was written).
_STATE_FIELDS = ("sleeves", "book", "rule_latch", "rule_held", "kelly")
_OUTPUT_FIELDS = ("time", "equity", "cash", "exposure", "trades", "orders", "events")


def _encode(a: np.ndarray) -> dict[str, Any]:
    """An array as plain JSON values: its dtype (field names, type codes, shapes), shape and raw bytes."""
    dtype = a.dtype
    if dtype.names is None:
        descr: Any = dtype.str
    else:
        descr = [[name, dtype[name].base.str, list(dtype[name].shape)] for name in dtype.names]
    data = np.ascontiguousarray(a, dtype=dtype.newbyteorder("<")).tobytes()
    return {"dtype": descr, "shape": list(a.shape), "data": base64.b64encode(data).decode("ascii")}


def _decode(item: dict[str, Any], expected: np.dtype, what: str) -> np.ndarray:
    """The array `_encode` wrote, refused unless its dtype is `expected` (field for field)."""
    descr = item["dtype"]
    dtype = np.dtype(descr if isinstance(descr, str) else [(n, t, tuple(s)) for n, t, s in descr])
    if dtype != expected.newbyteorder("<"):
        raise ValueError(f"simulator snapshot: {what} has dtype {dtype}, this version expects {expected}")
    raw = np.frombuffer(base64.b64decode(item["data"]), dtype=dtype).reshape(item["shape"])
    return raw.astype(expected)  # a writable copy in native byte order


@dataclass(frozen=True)
class SleeveView:
    """A sleeve's account at the latest point (what a live status shows)."""

    sleeve: str  # sleeve name
    position: float  # signed base quantity: > 0 long, < 0 short, 0 flat
    avg_entry: float  # average entry price; NaN when flat
    realized_pnl: float  # closed trades' profit after fees plus the closed part of the open one, quote
    unrealized_pnl: float  # open profit at the latest close, quote
    equity: float  # the sleeve's equity at the latest mark, quote
    last_close: float  # latest close price
    halted: bool  # whether a sleeve halt is in force
    order: str  # the pending order ("entry", "exit", "scale_in") or ""


@dataclass(frozen=True)
class PendingOrder:
    """A sleeve's pending order as an exchange broker sends it (see `Simulator.pending`)."""

    sleeve: str  # sleeve name
    index: int  # sleeve index, spec order
    intent: str  # "entry", "exit" or "scale_in"
    side: int  # side of the position the order opens or closes: +1 long, -1 short
    reason: ExitReason  # why the order exists ("signal", "stop", "max_hold", "risk", ...)
    qty: float  # quantity to ask for, base units (0: nothing can be asked for)
    filled: bool  # whether part of it has been booked already

    @property
    def buy(self) -> bool:
        """Whether the order buys (an entry of a long or the exit of a short)."""
        return (self.side > 0) == (self.intent != "exit")


class Simulator:
    """The same broker driven bar by bar (replay of history, paper and live trading): `step` per point.

    The portfolio's sleeve settings and risk rules are used; its candle arrays are not (bars arrive
    through `step`), but their length sizes the first output buffers. Only the current bar of each sleeve
    is held (see the module docstring for what grows). With `external` (live trading) the orders are
    filled by an exchange: `pending` lists what to send, `book` books what the exchange reports and
    `drop` gives an order up; the step itself then fills nothing.
    """

    def __init__(self, portfolio: PortfolioInput, external: bool = False) -> None:
        """Prepare an empty account for `portfolio` (`external`: an exchange fills the orders)."""
        sleeves = portfolio.sleeves
        size = max(16, max(len(s.time) for s in sleeves) + 1)
        self.external = external  # whether an exchange fills the orders
        self._engine = _Engine(portfolio, size, 64, external)  # broker state and outputs
        self._index = {s.name: i for i, s in enumerate(sleeves)}  # sleeve name -> index
        self._tf = np.array([timeframe_ms(s.timeframe) for s in sleeves], dtype=np.int64)  # timeframes, ms
        n = len(sleeves)
        self._n = np.zeros(n, dtype=np.int64)  # bars received per sleeve (the next bar's index)
        columns = [np.zeros((n, 1), dtype=dtype) for dtype in _DTYPES]
        self._bars = st.Bars._make([*columns, np.full((n, 1, 3), np.nan)])  # each sleeve's latest bar (col 0)
        self._times = np.empty(size, dtype=np.int64)  # close time of every point stepped, UTC ms
        self._points = 0  # points stepped

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
        p = self._points
        if p and close <= self._times[p - 1]:
            raise ValueError(f"bar closing at {close} is not after the previous step ({self._times[p - 1]})")
        # Store each bar in its sleeve's row, in spec order of the sleeves.
        ordered = sorted(updates, key=lambda u: self._index[u.sleeve])
        ev_s = np.array([self._index[u.sleeve] for u in ordered], dtype=np.int64)
        if len(set(ev_s.tolist())) != len(ev_s):
            raise ValueError("a sleeve has two bars in one step")
        ev_j = self._n[ev_s].copy()
        for s, u in zip(ev_s.tolist(), ordered, strict=True):
            self._store(s, u)
        self._n[ev_s] += 1
        if p == len(self._times):
            self._times = _grow(self._times, 2 * p)
        self._times[p] = close
        self._points = p + 1
        engine = self._engine
        engine.ensure_room(p + 1)
        starts = np.array([0, len(ev_s)], dtype=np.int64)
        line = st.Points(np.array([close], dtype=np.int64), starts, ev_s, ev_j, np.zeros_like(ev_s))
        if decide is None:
            engine.run(line, p, p + 1, self._bars)
            return
        engine.run(line, p, p + 1, self._bars, phase=st.PHASE_OPEN)
        for s, j, u in zip(ev_s.tolist(), ev_j.tolist(), ordered, strict=True):
            self._store(s, decide(u, engine.trade_state(s, j, u.close)))
        # The open half may have filled orders: make room again, or the step would skip the close half.
        engine.ensure_room(p + 1)
        if engine.run(line, p, p + 1, self._bars, phase=st.PHASE_CLOSE) != p + 1:
            raise RuntimeError("the broker could not finish a point (output buffers full)")

    def _store(self, s: int, u: BarUpdate) -> None:
        """Write one bar and its decisions into sleeve s's current-bar column."""
        bars = self._bars
        values = (u.time, u.open, u.high, u.low, u.close, u.volume)
        flags = (u.entry_long, u.exit_long, u.entry_short, u.exit_short)
        for arr, value in zip(bars[:10], values + flags, strict=True):
            arr[s, 0] = value
        bars.distance[s, 0] = (u.stop_distance, u.target_distance, u.trail_distance)

    def pending(self, sized: bool = True) -> list[PendingOrder]:
        """Every sleeve's pending order, sized for an exchange at the sleeve's last close (spec order).

        Sizing applies the cap rules, which record what they veto: size each decision once; `sized`
        false leaves the quantities NaN.
        """
        engine = self._engine
        state, config = engine.state, engine.config
        found = []
        for s, name in enumerate(self._index):
            sl = state.sleeves[s]
            kind = int(sl["ord_kind"])
            if kind == st.K_NONE:
                continue
            close = int(self._bars.time[s, 0]) + int(self._tf[s])
            engine.ensure_room(self._points + 1)
            qty = _ORDER_QTY(config, state, engine.out, s, float(sl["last"]), close) if sized else math.nan
            found.append(
                PendingOrder(
                    name,
                    s,
                    INTENTS[kind],
                    int(sl["ord_side"]),
                    REASONS[int(sl["ord_reason"])],
                    float(qty),
                    bool(sl["ord_filled"]),
                )
            )
        return found

    def book(self, order: PendingOrder, qty: float, price: float, fee: float, requested: float) -> None:
        """Book an exchange fill of `order` (qty base units at `price`, `fee` in quote currency).

        The fill counts on the bar after the decision (as a simulated next-open fill would), stamped with
        the decision bar's close time. An exit that closes the whole position ends the order.
        """
        engine = self._engine
        s = order.index
        sl = engine.state.sleeves[s]
        if int(sl["ord_kind"]) == st.K_NONE:
            raise ValueError(f"sleeve {order.sleeve} has no pending order to book a fill on")
        engine.ensure_room(self._points + 1)
        close = int(self._bars.time[s, 0]) + int(self._tf[s])
        fill = Fill(
            int(self._n[s]),
            close,
            int(sl["ord_side"]),
            int(sl["ord_kind"]),
            int(sl["ord_reason"]),
            requested,
            qty,
            price,
            fee,
            not bool(sl["ord_filled"]),
        )
        _BOOK_EXTERNAL(engine.config, engine.state, engine.out, s, fill, False)

    def adopt(self, sleeve: str, intent: str, side: int, reason: str) -> PendingOrder:
        """Put an order the exchange knows back into a sleeve's slot (a restart from an older checkpoint)."""
        s = self._index[sleeve]
        sl = self._engine.state.sleeves[s]
        self.drop(sleeve)
        sl["ord_kind"] = INTENTS.index(intent)
        sl["ord_side"] = side
        sl["ord_due"] = int(self._n[s])
        sl["ord_reason"] = REASONS.index(reason)  # type: ignore[arg-type]
        return PendingOrder(sleeve, s, intent, side, reason, math.nan, False)  # type: ignore[arg-type]

    def drop(self, sleeve: str) -> None:
        """End a sleeve's pending order (filled, rejected, or given up); what was booked stays."""
        sl = self._engine.state.sleeves[self._index[sleeve]]
        sl["ord_kind"] = st.K_NONE
        sl["ord_filled"] = 0
        sl["ord_req"] = np.nan
        sl["ord_rem"] = np.nan

    def position(self, sleeve: str) -> float:
        """A sleeve's signed position, base units (> 0 long, < 0 short)."""
        sl = self._engine.state.sleeves[self._index[sleeve]]
        return float(sl["side"]) * float(sl["qty"])

    def views(self) -> list[SleeveView]:
        """Every sleeve's account at the latest point, spec order."""
        state = self._engine.state
        out, book = self._engine.out, state.book[0]
        trades = out.trades[: book["n_trades"]]
        views = []
        for s, name in enumerate(self._index):
            sl = state.sleeves[s]
            side, qty, last = int(sl["side"]), float(sl["qty"]), float(sl["last"])
            closed = float(trades["pnl"][trades["sleeve"] == s].sum())
            kind = int(sl["ord_kind"])
            views.append(
                SleeveView(
                    name,
                    side * qty,
                    float(sl["avg"]) if side else math.nan,
                    closed + (float(sl["realized"]) if side else 0.0),
                    side * qty * (last - float(sl["avg"])) if side else 0.0,
                    float(sl["equity"]),
                    last,
                    bool(sl["halted"]) or bool(book["halted"]),
                    "" if kind == st.K_NONE else INTENTS[kind],
                )
            )
        return views

    def flatten_all(self, names: Iterable[str] | None = None) -> list[str]:
        """Put an exit of every open position (of `names`, default all) into its sleeve's slot; a kill switch.

        The exits have reason "risk"; a flat sleeve's pending entry is given up. Returns the sleeves that
        held a position.
        """
        state = self._engine.state
        chosen = set(self._index if names is None else names)
        closing = []
        for s, name in enumerate(self._index):
            if name not in chosen:
                continue
            if float(state.sleeves[s]["qty"]) > 0.0:
                self.adopt(name, "exit", int(state.sleeves[s]["side"]), "risk")
                closing.append(name)
            elif int(state.sleeves[s]["ord_kind"]) != st.K_NONE:
                self.drop(name)
        return closing

    def halt(self) -> list[str]:
        """Halt the portfolio by hand: flatten every position, no entry until `reset_halt`; the flattened."""
        self._engine.state.book["halted"] = 1
        return self.flatten_all()

    @property
    def rows(self) -> tuple[int, int]:
        """How many order rows (fills) and risk event rows the broker has written so far."""
        book = self._engine.state.book[0]
        return int(book["n_orders"]), int(book["n_events"])

    def news(self, orders_from: int, events_from: int) -> tuple[OrderTable, tuple[RiskEvent, ...]]:
        """The fills and the risk events written since the given row counts (see `rows`)."""
        engine = self._engine
        n_orders, n_events = self.rows
        sleeves = (*engine.portfolio.sleeves, *engine.retired)
        return (
            _orders(engine.out.orders[orders_from:n_orders], sleeves),
            _events(engine.out.events[events_from:n_events], engine.named()),
        )

    @property
    def last_time(self) -> int:
        """Close time of the latest point stepped, UTC ms (-1 before the first)."""
        return int(self._times[self._points - 1]) if self._points else -1

    @property
    def halted(self) -> bool:
        """Whether a portfolio halt is in force."""
        return bool(self._engine.state.book["halted"][0])

    @property
    def cash(self) -> float:
        """Account cash at the latest point, quote currency."""
        return float(self._engine.state.book["cash"][0])

    def reset_halt(self) -> None:
        """Lift every halt (the manual reset): entries are allowed again from the next decision."""
        state = self._engine.state
        state.book["halted"] = 0
        state.sleeves["halted"] = 0
        for r, rule in enumerate(self._engine.portfolio.risk):
            if rule.action == "halt":
                state.rule_latch[r, :] = 0.0
                state.rule_held[r, :] = 0.0

    @property
    def equity(self) -> float:
        """Account equity at the latest point, quote currency."""
        return float(self._engine.state.book["equity"][0])

    def finish(self) -> BacktestResult:
        """The result so far, with open positions marked at their last close (stepping may continue)."""
        return self._engine.result(self._times[: self._points])

    def migrated(self, portfolio: PortfolioInput) -> Simulator:
        """This account under another version of its spec (a live reload), continuing where it is.

        Sleeves are matched by name and market: a kept sleeve carries its position, pending order,
        brackets, cooldown, halt and PnL over under its new settings; a sleeve that is new starts flat,
        and one that is gone (or moved to another market) must be flat and idle (ValueError otherwise:
        E070 is the engine's to report first). Its past rows stay in the outputs under its old name. Risk
        rules are matched by text: a rule kept keeps its state (a halt stays a halt), a new one starts
        fresh. When sleeves come or go, every sleeve's budget is reset to its weight of the equity (as a
        rebalance would); otherwise budgets move at the next rebalance.
        """
        old, new = self._engine, Simulator(portfolio, self.external)
        fresh = new._engine
        was = (*old.portfolio.sleeves, *old.retired)  # every sleeve an old row may name
        rules_was = (*old.portfolio.risk, *old.retired_rules)
        running = {(s.name, s.symbol, s.timeframe): i for i, s in enumerate(portfolio.sleeves)}
        # Old sleeve index -> new one: a running sleeve, or a place after them for one retired.
        where: dict[int, int] = {}
        retired: list[SleeveInput] = []
        for i, s in enumerate(was):
            j = running.get((s.name, s.symbol, s.timeframe)) if i < len(old.portfolio.sleeves) else None
            if j is None:
                if i < len(old.portfolio.sleeves):
                    sl = old.state.sleeves[i]
                    if float(sl["qty"]) > 0.0 or int(sl["ord_kind"]) != st.K_NONE:
                        raise ValueError(
                            f"sleeve {s.name} holds a position or an order: it cannot be dropped"
                        )
                j = len(portfolio.sleeves) + len(retired)
                retired.append(s)
            where[i] = j
        texts = [r.text for r in portfolio.risk]
        rule_at: dict[int, int] = {}
        retired_rules: list[RiskRule] = []
        for i, rule in enumerate(rules_was):
            if i < len(old.portfolio.risk) and rule.text in texts:
                rule_at[i] = texts.index(rule.text)
            else:
                rule_at[i] = len(texts) + len(retired_rules)
                retired_rules.append(rule)
        fresh.retired, fresh.retired_rules = tuple(retired), tuple(retired_rules)
        # The state: the account as it is; each kept sleeve's record, Kelly ring and rule columns moved over.
        state = fresh.state
        sleeves, kelly = state.sleeves.copy(), state.kelly.copy()
        latch, held = state.rule_latch.copy(), state.rule_held.copy()
        added = set(range(len(portfolio.sleeves))) - set(where.values())
        for i, j in where.items():
            if j >= len(portfolio.sleeves):
                continue
            sleeves[j] = old.state.sleeves[i]
            new._n[j] = self._n[i]
            if kelly.shape[1] == old.state.kelly.shape[1]:
                kelly[j] = old.state.kelly[i]
            else:
                sleeves[j]["kelly_n"] = 0  # another lookback: the ring starts over
        for j in added:
            # A new sleeve: flat, no budget until the reset below, past its warm-up (its graph decides).
            for name in ("cash", "peak", "day0", "week0", "equity"):
                sleeves[j][name] = 0.0
            new._n[j] = int(fresh.config.sleeves[j]["warmup"])
        for i, r in rule_at.items():
            if r < len(texts):
                latch[r, 0], held[r, 0] = old.state.rule_latch[i, 0], old.state.rule_held[i, 0]
                for k, j in where.items():
                    if k < len(old.portfolio.sleeves) and j < len(portfolio.sleeves):
                        latch[r, j + 1], held[r, j + 1] = (
                            old.state.rule_latch[i, k + 1],
                            old.state.rule_held[i, k + 1],
                        )
        fresh.state = state._replace(
            sleeves=sleeves, book=old.state.book.copy(), kelly=kelly, rule_latch=latch, rule_held=held
        )
        if retired or added:
            _RESET_BUDGETS(fresh.config, fresh.state)
        # The outputs, their sleeve and rule indices renumbered.
        out = old.out
        trades, orders, events = out.trades.copy(), out.orders.copy(), out.events.copy()
        remap = np.array([where[i] for i in range(len(was))], dtype=np.int64)
        book = old.state.book[0]
        # Only the rows written (the buffers hold unwritten rows after them).
        for rows, count in ((trades, book["n_trades"]), (orders, book["n_orders"])):
            rows["sleeve"][:count] = remap[rows["sleeve"][:count]]
        written = events[: book["n_events"]]
        scoped = written["scope"] >= 0
        written["scope"][scoped] = remap[written["scope"][scoped]]
        if len(written):
            renumbered = np.array([rule_at[i] for i in range(len(rules_was))], dtype=np.int64)
            written["rule"] = renumbered[written["rule"]]
        fresh.out = out._replace(
            trades=trades, orders=orders, events=events,
            equity=out.equity.copy(), cash=out.cash.copy(), exposure=out.exposure.copy(),
        )  # fmt: skip
        new._times, new._points = self._times.copy(), self._points
        for i, j in where.items():
            if j < len(portfolio.sleeves):
                # The sleeve's current bar (its close time stamps the fills of its pending order).
                for mine, theirs in zip(new._bars, self._bars, strict=True):
                    mine[j] = theirs[i]
        fresh.ensure_room(new._points + 1)
        return new

    def snapshot(self, keep_points: int | None = None) -> dict[str, Any]:
        """The simulator's whole state as plain values (JSON- and pickle-safe); see `restore`.

        `keep_points` keeps only the last that many points' outputs (close time, equity, cash, exposure),
        so that the snapshot of a long live session stays small; a restored simulator then continues with
        those points (its `finish()` starts there), everything else is whole.

        Format (version 3): {"format": SNAPSHOT_FORMAT, "version": 3, "sleeves": [names], "rules": [rule
        texts], "points": points stepped, "bars": [bars received per sleeve], "rebalance_ms": the rebalancing
        period (ms, 0 = none), "config": {field: array},
        "state": {field: array}, "outputs": {field: array}}, where "config" holds the packed settings
        (`state.Config`'s arrays, compared on restore), "state" the `state.State` arrays but the scratch,
        and "outputs" the close times, equity, cash and exposure of the points stepped and the trade,
        order and risk event rows written. Each array is {"dtype": a numpy type code or, for records,
        [[field, type code, shape], ...], "shape": [...], "data": base64 of its little-endian bytes}.
        """
        engine, p = self._engine, self._points
        book = engine.state.book[0]
        out = engine.out
        # The points whose outputs are kept: all of them, or the last `keep_points`.
        first = 0 if keep_points is None else max(p - keep_points, 0)
        outputs = {
            "time": self._times[first:p],
            "equity": out.equity[first:p],
            "cash": out.cash[first:p],
            "exposure": out.exposure[first:p],
            "trades": out.trades[: book["n_trades"]],
            "orders": out.orders[: book["n_orders"]],
            "events": out.events[: book["n_events"]],
        }
        config = engine.config
        return {
            "format": SNAPSHOT_FORMAT,
            "version": SNAPSHOT_VERSION,
            "sleeves": list(self._index),
            "rules": [rule.text for rule in engine.portfolio.risk],
            "points": p - first,
            "bars": self._n.tolist(),
            "rebalance_ms": config.rebalance_ms,
            "config": {f: _encode(getattr(config, f)) for f in ("sleeves", "rules", "program")},
            "state": {f: _encode(getattr(engine.state, f)) for f in _STATE_FIELDS},
            "outputs": {f: _encode(a) for f, a in outputs.items()},
        }

    @classmethod
    def restore(
        cls,
        portfolio: PortfolioInput,
        snapshot: dict[str, Any],
        external: bool = False,
        migrate: bool = False,
    ) -> Simulator:
        """A simulator for `portfolio` that continues exactly where the one that wrote `snapshot` stopped.

        Refuses (ValueError) a snapshot of another format or version, or of a portfolio with other
        sleeves, rules or settings (a reloaded spec's broker is `migrated`).
        """
        if snapshot.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"not a simulator snapshot (format {snapshot.get('format')!r})")
        version = snapshot.get("version")
        if version != SNAPSHOT_VERSION:
            raise ValueError(
                f"simulator snapshot version {version} cannot be restored: this version reads "
                f"version {SNAPSHOT_VERSION} only"
            )
        sim = cls(portfolio, external)
        engine = sim._engine
        if snapshot["sleeves"] != list(sim._index):
            raise ValueError("simulator snapshot: written for a portfolio with other sleeves")
        if snapshot["rules"] != [r.text for r in portfolio.risk]:
            raise ValueError("simulator snapshot: written for a portfolio with other risk rules")
        config = engine.config
        if snapshot["rebalance_ms"] != config.rebalance_ms:
            raise ValueError("simulator snapshot: written with another rebalancing period")
        for f, item in snapshot["config"].items():
            saved = _decode(item, getattr(config, f).dtype, f"config {f}")
            if saved.tobytes() != getattr(config, f).tobytes():
                raise ValueError(f"simulator snapshot: written with other settings ({f})")
        state = {
            f: _decode(snapshot["state"][f], getattr(engine.state, f).dtype, f"state {f}")
            for f in _STATE_FIELDS
        }
        engine.state = engine.state._replace(**state)
        # Outputs: the rows and points written so far, with room to go on.
        outputs = snapshot["outputs"]
        p = sim._points = int(snapshot["points"])
        sim._n[:] = snapshot["bars"]
        times = _decode(outputs["time"], sim._times.dtype, "time")
        sim._times = _grow(times, max(len(sim._times), p + 1))
        grown = {}
        for f in _OUTPUT_FIELDS[1:]:
            empty = getattr(engine.out, f)
            rows = _decode(outputs[f], empty.dtype, f)
            grown[f] = _grow(rows, max(empty.shape[0], len(rows) + 1))
        engine.out = engine.out._replace(**grown)
        engine.ensure_room(p + 1)
        return sim


def updates_from(portfolio: PortfolioInput) -> list[tuple[BarUpdate, ...]]:
    """The portfolio's bars as the per-point `Simulator.step` arguments (replay of the same history)."""
    sleeves = portfolio.sleeves
    times, starts, ev_s, ev_j, _ = _time_line(sleeves)
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


class _Named(NamedTuple):
    """A sleeve's name and market: all the output tables need of it."""

    name: str  # sleeve name
    symbol: str  # market symbol


def saved_trades(snapshot: dict[str, Any], symbols: dict[str, str]) -> TradeTable:
    """The closed trades a broker `snapshot` holds (read without the spec; see `Simulator.snapshot`).

    `symbols` maps sleeve names to their markets; rows of sleeves an earlier version of the spec ran
    (retired by a reload) are named "(removed)".
    """
    names = list(snapshot["sleeves"])
    rows = _decode(snapshot["outputs"]["trades"], st.new_outputs(1, 1).trades.dtype, "trades")
    extra = int(rows["sleeve"].max()) + 1 - len(names) if len(rows) else 0
    named = [_Named(n, symbols.get(n, "")) for n in names] + [_Named("(removed)", "")] * max(extra, 0)
    return _trades(rows, named)  # type: ignore[arg-type]
