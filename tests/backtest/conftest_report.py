"""Helpers for the metrics, output, report and run-store tests: small hand-built results and a bare S1.

`s1_result` is an independent, bare-numpy implementation of strategy S1 of DESIGN.md (SMA 10/30 cross,
long-only, all-in with the fee inside the budget, fill at the next open, 0.1% fee per side) that returns a
`BacktestResult`, so the metrics can be checked on real data without the simulator.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from runtime.broker.result import (
    BacktestResult,
    Order,
    OrderTable,
    RiskEvent,
    SleeveInfo,
    Trade,
    TradeTable,
)

# One hour in milliseconds.
HOUR = 3_600_000
# 2024-01-01 00:00 UTC in milliseconds.
T0 = 1_704_067_200_000


@dataclass(frozen=True)
class Candles:
    """Candle arrays of one symbol, as the report expects them."""

    time: np.ndarray  # int64 open times, UTC ms
    open: np.ndarray  # float64 open prices
    high: np.ndarray  # float64 high prices
    low: np.ndarray  # float64 low prices
    close: np.ndarray  # float64 close prices


def small_result(synthetic: bool = False) -> BacktestResult:
    """A four-bar, two-sleeve run: one closed winning BTC trade and one ETH short still open."""
    time = T0 + HOUR * np.arange(1, 5, dtype=np.int64)
    trades = (
        Trade(
            "trend",
            "BTC/USDT",
            "long",
            T0 + HOUR,
            100.0,
            T0 + 3 * HOUR,
            110.0,
            1.0,
            9.79,
            0.0979,
            0.21,
            "take_profit",
            1,
            3,
            -0.01,
            0.1,
        ),
        Trade(
            "revert",
            "ETH/USDT",
            "short",
            T0 + 2 * HOUR,
            50.0,
            None,
            45.0,
            2.0,
            9.9,
            0.099,
            0.1,
            "end",
            2,
            3,
            -0.02,
            0.12,
        ),
    )
    orders = (
        Order(T0 + HOUR, "trend", "BTC/USDT", "buy", "entry", "signal", 1.0, 1.0, 100.0, 0.1),
        Order(T0 + 2 * HOUR, "revert", "ETH/USDT", "sell", "entry", "signal", 2.0, 2.0, 50.0, 0.1),
        Order(T0 + 3 * HOUR, "trend", "BTC/USDT", "sell", "exit", "take_profit", 1.0, 1.0, 110.0, 0.11),
    )
    events = (
        RiskEvent(
            T0 + 3 * HOUR, "portfolio", "halt when drawdown > 15%, then stop", "halt", (("drawdown", 0.16),)
        ),
    )
    sleeves = (
        SleeveInfo("trend", "ma_cross", "BTC/USDT", "1h", 0.6),
        SleeveInfo("revert", "rsi_reversion", "ETH/USDT", "1h", 0.4),
    )
    return BacktestResult(
        time=time,
        equity=np.array([100.0, 110.0, 99.0, 120.0]),
        cash=np.array([100.0, 10.0, 109.0, 120.0]),
        exposure=np.array([0.0, 0.9, 0.1, 0.75]),
        trade_table=TradeTable.of(trades),
        order_table=OrderTable.of(orders),
        risk_events=events,
        sleeves=sleeves,
        capital=100.0,
        quote="USDT",
        synthetic=synthetic,
    )


def load_candles(path: Path) -> Candles:
    """Read a candle CSV of ../shared/data."""
    frame = pd.read_csv(path)
    return Candles(*(frame[c].to_numpy() for c in ("timestamp", "open", "high", "low", "close")))


def _excursions(
    candles: Candles, first: int, end: int, entry: float, exit_price: float
) -> tuple[float, float]:
    """(mae, mfe) of a long entered at bar `first`'s open and held through the bars before `end`."""
    low = min(float(candles.low[first:end].min()), exit_price)
    high = max(float(candles.high[first:end].max()), exit_price)
    return min(low / entry - 1.0, 0.0), max(high / entry - 1.0, 0.0)


def s1_result(candles: Candles, capital: float = 10_000.0, fee: float = 0.001) -> BacktestResult:
    """Bare-numpy S1 over one symbol's candles (bar close time = open time + 1 h)."""
    close, opens = candles.close, candles.open
    n = len(close)
    fast = pd.Series(close).rolling(10).mean().to_numpy()
    slow = pd.Series(close).rolling(30).mean().to_numpy()
    above = fast > slow
    cross_up = np.zeros(n, dtype=bool)
    cross_down = np.zeros(n, dtype=bool)
    cross_up[1:] = above[1:] & ~above[:-1] & ~np.isnan(slow[:-1])
    cross_down[1:] = ~above[1:] & above[:-1]
    cash, qty = capital, 0.0
    equity = np.empty(n)
    cash_at = np.empty(n)
    exposure = np.zeros(n)
    trades: list[Trade] = []
    orders: list[Order] = []
    entry = (0, 0.0, 0.0)  # (bar, price, fee) of the open trade
    for t in range(n):
        # Fill at this bar's open what the previous close decided.
        if t > 0 and qty == 0.0 and cross_up[t - 1]:
            qty = cash / (opens[t] * (1 + fee))
            entry = (t, float(opens[t]), qty * opens[t] * fee)
            cash -= qty * opens[t] + entry[2]
            orders.append(
                Order(
                    int(candles.time[t]),
                    "main",
                    "BTC/USDT",
                    "buy",
                    "entry",
                    "signal",
                    qty,
                    qty,
                    float(opens[t]),
                    entry[2],
                )
            )
        elif t > 0 and qty > 0.0 and cross_down[t - 1]:
            exit_fee = qty * opens[t] * fee
            cash += qty * opens[t] - exit_fee
            pnl = qty * (opens[t] - entry[1]) - entry[2] - exit_fee
            trades.append(
                Trade(
                    "main",
                    "BTC/USDT",
                    "long",
                    int(candles.time[entry[0]]),
                    entry[1],
                    int(candles.time[t]),
                    float(opens[t]),
                    qty,
                    pnl,
                    pnl / (qty * entry[1]),
                    entry[2] + exit_fee,
                    "signal",
                    entry[0],
                    t,
                    *_excursions(candles, entry[0], t, entry[1], float(opens[t])),
                )
            )
            orders.append(
                Order(
                    int(candles.time[t]),
                    "main",
                    "BTC/USDT",
                    "sell",
                    "exit",
                    "signal",
                    qty,
                    qty,
                    float(opens[t]),
                    exit_fee,
                )
            )
            qty = 0.0
        equity[t] = cash + qty * close[t]
        cash_at[t] = cash
        exposure[t] = qty * close[t] / equity[t]
    if qty > 0.0:
        pnl = qty * (close[-1] - entry[1]) - entry[2]
        trades.append(
            Trade(
                "main",
                "BTC/USDT",
                "long",
                int(candles.time[entry[0]]),
                entry[1],
                None,
                float(close[-1]),
                qty,
                pnl,
                pnl / (qty * entry[1]),
                entry[2],
                "end",
                entry[0],
                n - 1,
                *_excursions(candles, entry[0], n, entry[1], float(close[-1])),
            )
        )
    return BacktestResult(
        time=candles.time + HOUR,
        equity=equity,
        cash=cash_at,
        exposure=exposure,
        trade_table=TradeTable.of(trades),
        order_table=OrderTable.of(orders),
        risk_events=(),
        sleeves=(SleeveInfo("main", "s1", "BTC/USDT", "1h", 1.0),),
        capital=capital,
        quote="USDT",
        synthetic=False,
    )
