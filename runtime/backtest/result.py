"""Typed, immutable results of a simulation: what the broker did and how the account evolved.

These value objects are the contract between the simulator (which produces them) and everything that
reads them: metrics, the report, the run store and the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
class SleeveInfo:
    """Static description of one sleeve in a run."""

    name: str  # sleeve name
    strategy: str  # name of the strategy template it instantiates
    symbol: str  # market symbol
    timeframe: str  # base timeframe, e.g. "1h"
    weight: float  # target share of equity, a fraction (0.4 = 40%)


@dataclass(frozen=True)
class BacktestResult:
    """Everything a simulation produced; arrays are indexed by the portfolio's time line."""

    time: np.ndarray  # int64 close times (UTC ms) of the union of all sleeves' bars
    equity: np.ndarray  # float64 account equity at each time, positions marked at the last close
    cash: np.ndarray  # float64 free cash at each time
    exposure: np.ndarray  # float64 gross position value / equity at each time (fraction)
    trades: tuple[Trade, ...]  # round trips in order of entry
    orders: tuple[Order, ...]  # filled orders in time order
    risk_events: tuple[RiskEvent, ...]  # risk actions in time order
    sleeves: tuple[SleeveInfo, ...]  # the sleeves, in spec order
    capital: float  # starting cash, quote currency
    quote: str  # quote currency, e.g. "USDT"
    synthetic: bool  # True when any input candles came from the synthetic generator
