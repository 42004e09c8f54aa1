"""Typed, immutable results of a simulation: what the broker did and how the account evolved.

These value objects are the contract between the simulator (which produces them) and everything that
reads them: metrics, the report, the run store and the CLI. Trades and orders are held as columns
(`TradeTable`, `OrderTable`: one numpy array per field), because a long run has tens of thousands of them
and the metrics and CSV writers work on whole columns; `BacktestResult.trades` / `.orders` build the
`Trade` / `Order` objects from the columns on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from functools import cached_property
from typing import Any, Literal, TypeVar

import numpy as np

# Why a position was closed, as written to trades.csv.
ExitReason = Literal["signal", "stop_loss", "take_profit", "trailing_stop", "max_hold", "risk", "end"]


@dataclass(frozen=True)
class Trade:
    """One round trip (or one still open at the end), in the quote currency."""

    sleeve: str  # sleeve name ("main" for a strategy run on its own)
    symbol: str  # market symbol, "BTC/USDT"
    side: Literal["long", "short"]  # direction of the position
    entry_time: int  # open time (UTC ms) of the bar whose open filled the entry
    entry_price: float  # average fill price of the entry, slippage included
    exit_time: int | None  # open time (UTC ms) of the exit fill bar; None while open at the end
    exit_price: float  # average exit fill price; the last close when still open (marked, not sold)
    qty: float  # base-currency quantity (fractional units allowed)
    pnl: float  # profit in quote currency after all fees of this trade
    ret: float  # pnl as a fraction of the entry notional (0.05 = +5%)
    fees: float  # fees paid on entry and exit, quote currency (no exit fee while open)
    exit_reason: ExitReason  # why it was closed; "end" when still open
    entry_bar: int  # index of the entry fill bar on the sleeve's own clock
    exit_bar: int  # index of the exit fill bar (the last bar when still open)
    # Excursions: the worst / best price the position saw (its fills, every bar held through from its open
    # to its close, the mark when still open) as a return on entry_price, from the position's side.
    mae: float  # maximum adverse excursion, <= 0 (-0.03: the price went 3% against the position)
    mfe: float  # maximum favourable excursion, >= 0


@dataclass(frozen=True)
class Order:
    """A market order the simulated broker filled (possibly partially across several bars)."""

    time: int  # open time (UTC ms) of the fill bar
    sleeve: str  # sleeve that sent it
    symbol: str  # market symbol
    side: Literal["buy", "sell"]  # order direction
    intent: Literal["entry", "exit", "scale_in", "rebalance"]  # why the order exists
    reason: str  # the rule or bracket that caused it ("signal", "stop_loss", "risk", ...)
    requested_qty: float  # base quantity asked for
    filled_qty: float  # base quantity filled on this bar
    price: float  # fill price, slippage included
    fee: float  # fee paid, quote currency


@dataclass(frozen=True)
class RiskEvent:
    """A risk rule that acted: halt, pause, flatten, or a cap that vetoed or shrank an order."""

    time: int  # close time (UTC ms) of the bar on which the rule fired
    scope: str  # "portfolio" or the sleeve's name
    rule: str  # the rule as written in the spec, e.g. "halt when drawdown > 15%"
    action: Literal["halt", "pause", "flatten", "cap"]  # what it did
    values: tuple[tuple[str, float], ...]  # the metrics it saw, as (name, value) pairs


@dataclass(frozen=True)
class Alert:
    """An `alert "text" when C` of a sleeve's strategy that fired: C held at the close of a base bar."""

    time: int  # close time (UTC ms) of the bar at whose close the condition held
    sleeve: str  # sleeve name ("main" for a strategy run on its own)
    strategy: str  # name of the strategy template the alert belongs to
    symbol: str  # market symbol, "BTC/USDT"
    text: str  # the alert's text as written


@dataclass(frozen=True)
class SleeveInfo:
    """Static description of one sleeve in a run."""

    name: str  # sleeve name
    strategy: str  # name of the strategy template it instantiates
    symbol: str  # market symbol
    timeframe: str  # base timeframe, e.g. "1h"
    weight: float  # target share of equity, a fraction (0.4 = 40%)


# A row type built from a table's columns.
_Row = TypeVar("_Row")


def _objects(cls: type[_Row], columns: dict[str, list[Any]]) -> tuple[_Row, ...]:
    """Instances of a frozen dataclass from per-field columns, built without per-field __setattr__."""
    names = tuple(columns)
    new = object.__new__
    out = []
    for values in zip(*columns.values(), strict=True):
        obj = new(cls)
        obj.__dict__.update(zip(names, values, strict=True))
        out.append(obj)
    return tuple(out)


# Columns holding text (object arrays of str) and whole numbers (int64); the rest are float64 but `closed`.
_TEXT_COLUMNS = frozenset(("sleeve", "symbol", "side", "exit_reason", "intent", "reason"))
_INT_COLUMNS = frozenset(("time", "entry_time", "exit_time", "entry_bar", "exit_bar"))


def _column(name: str, values: Sequence[object]) -> np.ndarray:
    """The column `name` of a table built from row objects."""
    if name in _TEXT_COLUMNS:
        out = np.empty(len(values), dtype=object)
        out[:] = list(values)
        return out
    dtype = np.int64 if name in _INT_COLUMNS else np.bool_ if name == "closed" else np.float64
    return np.array(values, dtype=dtype).reshape(len(values))


@dataclass(frozen=True)
class TradeTable:
    """Every trade of a run as columns, row i being the i-th `Trade` (in order of entry)."""

    sleeve: np.ndarray  # object (str) sleeve name of each trade
    symbol: np.ndarray  # object (str) market symbol
    side: np.ndarray  # object (str) "long" or "short"
    entry_time: np.ndarray  # int64 open time (UTC ms) of the entry fill bar
    entry_price: np.ndarray  # float64 average entry fill price
    exit_time: np.ndarray  # int64 open time (UTC ms) of the exit fill bar; 0 where `closed` is False
    closed: np.ndarray  # bool False for the trade still open at the end (Trade.exit_time None)
    exit_price: np.ndarray  # float64 average exit fill price (the last close when still open)
    qty: np.ndarray  # float64 base-currency quantity
    pnl: np.ndarray  # float64 profit after all fees of the trade, quote currency
    ret: np.ndarray  # float64 pnl as a fraction of the entry notional
    fees: np.ndarray  # float64 fees paid on entry and exit, quote currency
    exit_reason: np.ndarray  # object (str) an ExitReason
    entry_bar: np.ndarray  # int64 index of the entry fill bar on the sleeve's clock
    exit_bar: np.ndarray  # int64 index of the exit fill bar (the last bar when still open)
    mae: np.ndarray  # float64 maximum adverse excursion, a return on the entry price (<= 0)
    mfe: np.ndarray  # float64 maximum favourable excursion, a return on the entry price (>= 0)

    def __len__(self) -> int:
        """Number of trades."""
        return len(self.entry_time)

    @classmethod
    def of(cls, trades: Sequence[Trade]) -> TradeTable:
        """The table of some `Trade` objects (hand-built results, runs read back from the store)."""
        columns = {f.name: [getattr(t, f.name) for t in trades] for f in fields(Trade)}
        columns["closed"] = [t is not None for t in columns["exit_time"]]
        columns["exit_time"] = [t or 0 for t in columns["exit_time"]]
        return cls(**{f.name: _column(f.name, columns[f.name]) for f in fields(cls)})

    def rows(self) -> tuple[Trade, ...]:
        """The trades as `Trade` objects."""
        columns = {f.name: getattr(self, f.name).tolist() for f in fields(Trade)}
        columns["exit_time"] = [
            t if done else None for t, done in zip(columns["exit_time"], self.closed.tolist(), strict=True)
        ]
        return _objects(Trade, columns)


@dataclass(frozen=True)
class OrderTable:
    """Every filled order of a run as columns, row i being the i-th `Order` (in time order)."""

    time: np.ndarray  # int64 open time (UTC ms) of the fill bar
    sleeve: np.ndarray  # object (str) sleeve that sent it
    symbol: np.ndarray  # object (str) market symbol
    side: np.ndarray  # object (str) "buy" or "sell"
    intent: np.ndarray  # object (str) "entry", "exit", "scale_in" or "rebalance"
    reason: np.ndarray  # object (str) the rule or bracket that caused it
    requested_qty: np.ndarray  # float64 base quantity asked for
    filled_qty: np.ndarray  # float64 base quantity filled on this bar
    price: np.ndarray  # float64 fill price, slippage included
    fee: np.ndarray  # float64 fee paid, quote currency

    def __len__(self) -> int:
        """Number of orders."""
        return len(self.time)

    @classmethod
    def of(cls, orders: Sequence[Order]) -> OrderTable:
        """The table of some `Order` objects."""
        return cls(**{f.name: _column(f.name, [getattr(o, f.name) for o in orders]) for f in fields(cls)})

    def rows(self) -> tuple[Order, ...]:
        """The orders as `Order` objects."""
        return _objects(Order, {f.name: getattr(self, f.name).tolist() for f in fields(Order)})


@dataclass(frozen=True)
class BacktestResult:
    """Everything a simulation produced; arrays are indexed by the portfolio's time line."""

    time: np.ndarray  # int64 close times (UTC ms) of the union of all sleeves' bars
    equity: np.ndarray  # float64 account equity at each time, positions marked at the last close
    cash: np.ndarray  # float64 free cash at each time
    exposure: np.ndarray  # float64 gross position value / equity at each time (fraction)
    trade_table: TradeTable  # round trips in order of entry, as columns
    order_table: OrderTable  # filled orders in time order, as columns
    risk_events: tuple[RiskEvent, ...]  # risk actions in time order
    sleeves: tuple[SleeveInfo, ...]  # the sleeves, in spec order
    capital: float  # starting cash, quote currency
    quote: str  # quote currency, e.g. "USDT"
    synthetic: bool  # True when any input candles came from the synthetic generator
    alerts: tuple[Alert, ...] = ()  # alerts that fired, in time order (sleeves in spec order at one time)

    def since(self, start: int | None) -> BacktestResult:
        """The result over the points closing after `start` (UTC ms; None: all of it), e.g. after --from.

        The points before are the warm-up: read for the indicators, never traded (no decision may fill
        before the start), so the equity there is the flat capital and nothing else is cut.
        """
        if start is None:
            return self
        first = int(np.searchsorted(self.time, start, side="right"))
        if first == 0:
            return self
        return replace(
            self, time=self.time[first:], equity=self.equity[first:], cash=self.cash[first:],
            exposure=self.exposure[first:],
        )  # fmt: skip

    @cached_property
    def trades(self) -> tuple[Trade, ...]:
        """Round trips in order of entry, as objects (built from `trade_table` on first use)."""
        return self.trade_table.rows()

    @cached_property
    def orders(self) -> tuple[Order, ...]:
        """Filled orders in time order, as objects (built from `order_table` on first use)."""
        return self.order_table.rows()
