"""Candle tables: series, columnar blocks of candles, and the time ranges already fetched.

Candles are stored in blocks of up to `BLOCK_BARS` consecutive bar slots, each column a little-endian
array in a binary field. One row per candle would be the textbook layout, but turning 1,000,000 rows into
Python objects and back costs about 1.6 s on this machine while the target for loading them is under 1 s;
blocks load at memory speed and still upsert and read by time range. The coverage table remembers which
ranges were fetched from the exchange, so a gap in the exchange's own data is not asked for again.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from sqlalchemy import BigInteger, Engine, ForeignKey, Integer, LargeBinary, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from dsl.units import timeframe_ms
from runtime.data.candles import PRICE_COLUMNS, Candles
from runtime.store.db import Base, dialect_insert, session_scope

# Bar slots per block: a block covers BLOCK_BARS * bar length of time, aligned to the epoch.
BLOCK_BARS = 4096
# Column names of a block, in storage order, with their numpy dtypes (explicitly little-endian).
_COLUMNS: tuple[tuple[str, str], ...] = (("time", "<i8"), *((name, "<f8") for name in PRICE_COLUMNS))


class CandleSeries(Base):
    """One market and timeframe from one source (ccxt exchange id, or the name given at import)."""

    __tablename__ = "candle_series"
    __table_args__ = (UniqueConstraint("exchange", "symbol", "timeframe"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)  # surrogate key
    exchange: Mapped[str] = mapped_column(String(64))  # ccxt exchange id, "binance"
    symbol: Mapped[str] = mapped_column(String(64))  # market symbol, "BTC/USDT"
    timeframe: Mapped[str] = mapped_column(String(8))  # bar length, "1h"


class CandleBlock(Base):
    """Up to BLOCK_BARS candles of one series, stored column by column."""

    __tablename__ = "candle_blocks"

    # owning series
    series_id: Mapped[int] = mapped_column(
        ForeignKey("candle_series.id", ondelete="CASCADE"), primary_key=True
    )
    start: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # first slot's open time, UTC ms
    first: Mapped[int] = mapped_column(BigInteger)  # open time of the first stored candle, UTC ms
    last: Mapped[int] = mapped_column(BigInteger)  # open time of the last stored candle, UTC ms
    rows: Mapped[int] = mapped_column(Integer)  # number of candles in the block
    time: Mapped[bytes] = mapped_column(LargeBinary)  # int64 open times, UTC ms
    open: Mapped[bytes] = mapped_column(LargeBinary)  # float64 opening prices
    high: Mapped[bytes] = mapped_column(LargeBinary)  # float64 highest prices
    low: Mapped[bytes] = mapped_column(LargeBinary)  # float64 lowest prices
    close: Mapped[bytes] = mapped_column(LargeBinary)  # float64 closing prices
    volume: Mapped[bytes] = mapped_column(LargeBinary)  # float64 volumes, base currency


class CandleCoverage(Base):
    """A time range whose candles were fetched (present ones stored, absent ones absent at the source)."""

    __tablename__ = "candle_coverage"

    # owning series
    series_id: Mapped[int] = mapped_column(
        ForeignKey("candle_series.id", ondelete="CASCADE"), primary_key=True
    )
    start: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # first open time covered, UTC ms
    end: Mapped[int] = mapped_column(BigInteger)  # end of the range (exclusive), UTC ms


@dataclass(frozen=True)
class StoredSeries:
    """What the store holds for one market and timeframe (`strat data list`)."""

    exchange: str  # source id
    symbol: str  # market symbol
    timeframe: str  # bar length
    first: int | None  # first open time, UTC ms (None when no candle is stored)
    last: int | None  # last open time, UTC ms
    rows: int  # number of stored candles


class CandleStore:
    """Read and write candles in a store (an engine from `runtime.store.schema.open_store`)."""

    def __init__(self, engine: Engine) -> None:
        """Use the store behind `engine`."""
        self.engine = engine  # SQLAlchemy engine of the database

    def write(
        self, candles: Candles, *, exchange: str | None = None, covered: tuple[int, int] | None = None
    ) -> int:
        """Upsert candles (a later value replaces a stored one) and record `covered` as fetched.

        `exchange` names the source in the store (default: the candles' own). Returns rows written.
        """
        step = candles.timeframe_ms
        span = BLOCK_BARS * step
        with session_scope(self.engine) as session:
            series_id = self._series_id(
                session, exchange or candles.exchange, candles.symbol, candles.timeframe
            )
            if len(candles):
                starts = candles.time // span * span
                bounds = np.flatnonzero(np.r_[True, starts[1:] != starts[:-1], True])
                stored = self._blocks(session, series_id, int(starts[0]), int(starts[-1]) + span)
                rows = []
                for lo, hi in itertools.pairwise(bounds):
                    block = candles.take(slice(int(lo), int(hi)))
                    old = stored.get(int(starts[lo]))
                    rows.append(_encode(series_id, int(starts[lo]), _merge(old, block) if old else block))
                self._upsert(session, rows)
            if covered is not None:
                self._cover(session, series_id, covered)
        return len(candles)

    def read(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> Candles:
        """Return stored candles with start_ms <= open time < end_ms (None: unbounded), sorted."""
        with session_scope(self.engine) as session:
            series_id = self._find_series(session, exchange, symbol, timeframe)
            if series_id is None:
                return Candles.empty(exchange, symbol, timeframe)
            query = select(*(getattr(CandleBlock, name) for name, _ in _COLUMNS)).where(
                CandleBlock.series_id == series_id
            )
            if start_ms is not None:
                query = query.where(CandleBlock.last >= start_ms)
            if end_ms is not None:
                query = query.where(CandleBlock.first < end_ms)
            blocks = session.execute(query.order_by(CandleBlock.start)).all()
        if not blocks:
            return Candles.empty(exchange, symbol, timeframe)
        columns = [
            np.concatenate([np.frombuffer(block[i], dtype=dtype) for block in blocks])
            for i, (_, dtype) in enumerate(_COLUMNS)
        ]
        return Candles.from_arrays(exchange, symbol, timeframe, columns[0], columns[1:]).slice(
            start_ms, end_ms
        )

    def coverage(self, exchange: str, symbol: str, timeframe: str) -> list[tuple[int, int]]:
        """The merged ranges [start, end) already fetched for a series, sorted."""
        with session_scope(self.engine) as session:
            series_id = self._find_series(session, exchange, symbol, timeframe)
            if series_id is None:
                return []
            rows = session.execute(
                select(CandleCoverage.start, CandleCoverage.end)
                .where(CandleCoverage.series_id == series_id)
                .order_by(CandleCoverage.start)
            ).all()
        return [(int(a), int(b)) for a, b in rows]

    def missing(
        self, exchange: str, symbol: str, timeframe: str, start_ms: int, end_ms: int
    ) -> list[tuple[int, int]]:
        """The parts of [start_ms, end_ms) not yet fetched, bar-aligned, sorted."""
        step = timeframe_ms(timeframe)
        return subtract(
            (start_ms // step * step, -(-end_ms // step) * step), self.coverage(exchange, symbol, timeframe)
        )

    def list_series(self) -> list[StoredSeries]:
        """Every stored series with its first and last open time and row count."""
        from sqlalchemy import func

        with session_scope(self.engine) as session:
            rows = session.execute(
                select(
                    CandleSeries.exchange,
                    CandleSeries.symbol,
                    CandleSeries.timeframe,
                    func.min(CandleBlock.first),
                    func.max(CandleBlock.last),
                    func.coalesce(func.sum(CandleBlock.rows), 0),
                )
                .outerjoin(CandleBlock, CandleBlock.series_id == CandleSeries.id)
                .group_by(CandleSeries.id)
                .order_by(CandleSeries.exchange, CandleSeries.symbol, CandleSeries.timeframe)
            ).all()
        return [
            StoredSeries(e, s, tf, None if a is None else int(a), None if b is None else int(b), int(n))
            for e, s, tf, a, b, n in rows
        ]

    @staticmethod
    def _find_series(session: Session, exchange: str, symbol: str, timeframe: str) -> int | None:
        """The id of a series, or None when it was never stored."""
        return session.execute(
            select(CandleSeries.id).where(
                CandleSeries.exchange == exchange,
                CandleSeries.symbol == symbol,
                CandleSeries.timeframe == timeframe,
            )
        ).scalar_one_or_none()

    def _series_id(self, session: Session, exchange: str, symbol: str, timeframe: str) -> int:
        """The id of a series, created if new (race-free: insert-or-ignore, then select)."""
        insert = dialect_insert(session)
        session.execute(
            insert(CandleSeries)
            .values(exchange=exchange, symbol=symbol, timeframe=timeframe)
            .on_conflict_do_nothing(index_elements=["exchange", "symbol", "timeframe"])
        )
        found = self._find_series(session, exchange, symbol, timeframe)
        assert found is not None  # it was just inserted or already there
        return found

    @staticmethod
    def _blocks(session: Session, series_id: int, start: int, end: int) -> dict[int, Candles]:
        """Stored blocks of a series whose start lies in [start, end), decoded, by block start."""
        rows = session.execute(
            select(CandleBlock.start, *(getattr(CandleBlock, name) for name, _ in _COLUMNS)).where(
                CandleBlock.series_id == series_id, CandleBlock.start >= start, CandleBlock.start < end
            )
        ).all()
        return {
            int(row[0]): Candles.from_arrays(
                "",
                "",
                "1m",
                np.frombuffer(row[1], dtype=_COLUMNS[0][1]),
                [np.frombuffer(row[i + 2], dtype=dtype) for i, (_, dtype) in enumerate(_COLUMNS[1:])],
            )
            for row in rows
        }

    @staticmethod
    def _upsert(session: Session, rows: list[dict[str, object]]) -> None:
        """Insert block rows, replacing blocks that already exist (dialect-specific upsert)."""
        insert = dialect_insert(session)
        statement = insert(CandleBlock)
        replace = ("first", "last", "rows", *(name for name, _ in _COLUMNS))
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["series_id", "start"],
                set_={name: statement.excluded[name] for name in replace},
            ),
            rows,
        )

    @staticmethod
    def _cover(session: Session, series_id: int, covered: tuple[int, int]) -> None:
        """Add a fetched range to a series' coverage, merging it with touching or overlapping ones."""
        rows = session.execute(
            select(CandleCoverage.start, CandleCoverage.end).where(CandleCoverage.series_id == series_id)
        ).all()
        merged = merge_ranges([(int(a), int(b)) for a, b in rows] + [covered])
        session.query(CandleCoverage).filter(CandleCoverage.series_id == series_id).delete()
        session.add_all(CandleCoverage(series_id=series_id, start=a, end=b) for a, b in merged)


def _merge(old: Candles, new: Candles) -> Candles:
    """Union of two sorted series of one block; on equal open times the new candle wins."""
    joined = Candles.concat([old.with_columns(), new.with_columns()]) if len(old) else new
    order = np.argsort(joined.time, kind="stable")
    ordered = joined.take(order)
    # Keep the last row of each open time: stable sorting leaves the new one after the old one.
    keep = np.r_[ordered.time[1:] != ordered.time[:-1], True]
    return ordered.take(keep)


def _encode(series_id: int, start: int, block: Candles) -> dict[str, object]:
    """One `candle_blocks` row for the candles of one block."""
    row: dict[str, object] = {
        "series_id": series_id,
        "start": start,
        "first": int(block.time[0]),
        "last": int(block.time[-1]),
        "rows": len(block),
    }
    for name, dtype in _COLUMNS:
        row[name] = np.ascontiguousarray(getattr(block, name), dtype=dtype).tobytes()
    return row


def merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge overlapping or touching [start, end) ranges into a sorted disjoint list."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(r for r in ranges if r[1] > r[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def subtract(span: tuple[int, int], covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of [start, end) outside the sorted disjoint `covered` ranges."""
    start, end = span
    gaps: list[tuple[int, int]] = []
    for a, b in covered:
        if b <= start or a >= end:
            continue
        if a > start:
            gaps.append((start, a))
        start = max(start, b)
    if start < end:
        gaps.append((start, end))
    return gaps
