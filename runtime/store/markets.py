"""Stored exchange trading rules (one row per exchange and market), refreshed at every download."""

from __future__ import annotations

from sqlalchemy import Engine, Float, String, select
from sqlalchemy.orm import Mapped, mapped_column

from runtime.data.markets import MarketRules
from runtime.store.db import Base, session_scope


class MarketRow(Base):
    """The trading rules of one market."""

    __tablename__ = "market_rules"

    exchange: Mapped[str] = mapped_column(String(64), primary_key=True)  # ccxt exchange id
    symbol: Mapped[str] = mapped_column(String(64), primary_key=True)  # market symbol, "BTC/USDT"
    amount_step: Mapped[float] = mapped_column(Float)  # quantity increment, base units
    min_qty: Mapped[float] = mapped_column(Float)  # smallest order quantity, base units
    min_notional: Mapped[float] = mapped_column(Float)  # smallest order value, quote currency


class MarketStore:
    """Read and write the trading rules of markets in a store (an engine from `schema.open_store`)."""

    def __init__(self, engine: Engine) -> None:
        """Use the store behind `engine`."""
        self.engine = engine  # SQLAlchemy engine of the database

    def save(self, rules: MarketRules) -> None:
        """Insert or replace the rules of a market."""
        with session_scope(self.engine) as session:
            session.merge(
                MarketRow(
                    exchange=rules.exchange,
                    symbol=rules.symbol,
                    amount_step=rules.amount_step,
                    min_qty=rules.min_qty,
                    min_notional=rules.min_notional,
                )
            )

    def get(self, exchange: str, symbol: str) -> MarketRules | None:
        """The stored rules of a market, or None when it was never downloaded."""
        with session_scope(self.engine) as session:
            row = session.scalars(
                select(MarketRow).where(MarketRow.exchange == exchange, MarketRow.symbol == symbol)
            ).first()
            if row is None:
                return None
            return MarketRules(row.exchange, row.symbol, row.amount_step, row.min_qty, row.min_notional)
