"""Exchange trading rules of a market (quantity step, minimum quantity and order value).

They come from ccxt's market data when candles are downloaded and are kept in the store, so that a later
backtest of the same symbol respects them; without them a backtest trades fractional units freely.
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


def rules_from_ccxt(exchange: str, symbol: str, market: dict[str, object]) -> MarketRules:
    """Read a ccxt market structure (precision in TICK_SIZE mode, limits) into rules; absent values are 0."""

    def number(value: object) -> float:
        """A float from a possibly missing ccxt number."""
        return float(value) if isinstance(value, int | float | str) and value != "" else 0.0

    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    amount = limits.get("amount") or {} if isinstance(limits, dict) else {}
    cost = limits.get("cost") or {} if isinstance(limits, dict) else {}
    return MarketRules(
        exchange,
        symbol,
        amount_step=number(precision.get("amount") if isinstance(precision, dict) else None),
        min_qty=number(amount.get("min") if isinstance(amount, dict) else None),
        min_notional=number(cost.get("min") if isinstance(cost, dict) else None),
    )
