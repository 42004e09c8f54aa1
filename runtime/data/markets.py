"""Exchange trading rules of a market (quantity step, minimum quantity and order value).

They come from the exchange adapter (`runtime.exchange`) when candles are downloaded and are kept in the
store, so that a later backtest of the same symbol respects them; without them a backtest trades
fractional units freely.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MarketRules:
    """Trading rules of one market on one exchange."""

    exchange: str  # ccxt exchange id, "binance"
    symbol: str  # market symbol, "BTC/USDT"
    amount_step: float  # quantity increment, base units (0 = any fraction)
    min_qty: float  # smallest order quantity, base units
    min_notional: float  # smallest order value, quote currency
    tick_size: float = 0.0  # price increment, quote currency (0 = unknown or any)
