"""Saved backtest runs: the spec as run, its parameters, data range, summary, trades and equity curve.

One row per run in `backtest_runs` (the headline metrics as columns so that listing never loads the large
parts; the summary as JSON; the equity curve as two zlib-compressed little-endian arrays), and one row per
trade in `backtest_run_trades`.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import (
    BigInteger,
    Double,
    Engine,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    insert,
    select,
)
from sqlalchemy.orm import Mapped, mapped_column

from runtime.backtest.metrics import Summary
from runtime.broker.result import BacktestResult, Trade
from runtime.data.times import wall_clock_ms
from runtime.store.db import Base, session_scope


class RunRow(Base):
    """One saved run."""

    __tablename__ = "backtest_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # run id shown by `strat runs`
    created_at: Mapped[int] = mapped_column(BigInteger, index=True)  # wall-clock save time, UTC ms
    spec_name: Mapped[str] = mapped_column(String(200), index=True)  # spec file stem, e.g. "portfolio"
    spec_path: Mapped[str] = mapped_column(Text)  # spec path as given on the command line
    spec_hash: Mapped[str] = mapped_column(String(64), index=True)  # sha256 hex of spec_text
    spec_text: Mapped[str] = mapped_column(Text)  # the spec's full text as run
    mode: Mapped[str] = mapped_column(String(16))  # "backtest" or "replay"
    params_json: Mapped[str] = mapped_column(Text)  # JSON list of [name, value] parameter overrides
    data_start: Mapped[int] = mapped_column(BigInteger)  # open time of the first bar, UTC ms
    data_end: Mapped[int] = mapped_column(BigInteger)  # close time of the last bar, UTC ms
    total_return: Mapped[float] = mapped_column(Double)  # summary.total_return (fraction)
    max_drawdown: Mapped[float] = mapped_column(Double)  # summary.max_drawdown (fraction)
    sharpe: Mapped[float | None] = mapped_column(Double, nullable=True)  # summary.sharpe
    summary_json: Mapped[str] = mapped_column(Text)  # the full Summary as JSON
    equity_time: Mapped[bytes] = mapped_column(LargeBinary)  # zlib of int64 LE bar close times, UTC ms
    equity: Mapped[bytes] = mapped_column(LargeBinary)  # zlib of float64 LE equity at each bar
    report: Mapped[str | None] = mapped_column(Text, nullable=True)  # absolute path of its report.html


class RunTradeRow(Base):
    """One trade of a saved run (the fields of `runtime.broker.result.Trade`)."""

    __tablename__ = "backtest_run_trades"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # row id
    # The run it belongs to; trades go with their run.
    run_id: Mapped[int] = mapped_column(ForeignKey("backtest_runs.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)  # position in the run's trade list (entry order)
    sleeve: Mapped[str] = mapped_column(String(200))  # sleeve name
    symbol: Mapped[str] = mapped_column(String(64))  # market symbol
    side: Mapped[str] = mapped_column(String(8))  # "long" or "short"
    entry_time: Mapped[int] = mapped_column(BigInteger)  # entry fill bar open time, UTC ms
    entry_price: Mapped[float] = mapped_column(Double)  # average entry fill price
    exit_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # exit fill bar open, UTC ms
    exit_price: Mapped[float] = mapped_column(Double)  # average exit price (last close when open)
    qty: Mapped[float] = mapped_column(Double)  # base quantity
    pnl: Mapped[float] = mapped_column(Double)  # profit after fees, quote currency
    ret: Mapped[float] = mapped_column(Double)  # pnl / entry notional
    fees: Mapped[float] = mapped_column(Double)  # fees paid, quote currency
    exit_reason: Mapped[str] = mapped_column(String(32))  # why it closed ("end" when still open)
    entry_bar: Mapped[int] = mapped_column(Integer)  # entry fill bar index on the sleeve's clock
    exit_bar: Mapped[int] = mapped_column(Integer)  # exit fill bar index on the sleeve's clock
    mae: Mapped[float] = mapped_column(Double)  # maximum adverse excursion, return on the entry price
    mfe: Mapped[float] = mapped_column(Double)  # maximum favourable excursion, return on the entry price


@dataclass(frozen=True, eq=False)
class RunRecord:
    """Everything saved about one run."""

    spec_name: str  # spec file stem, e.g. "portfolio"
    spec_path: str  # spec path as given on the command line
    spec_text: str  # the spec's full text as run
    params: tuple[tuple[str, str], ...]  # parameter overrides (--set name=value) as written
    data_start: int  # open time of the first bar, UTC ms
    data_end: int  # close time of the last bar, UTC ms
    summary: Summary  # every metric of the run
    trades: tuple[Trade, ...]  # the run's trades in entry order
    equity_time: np.ndarray  # int64 bar close times, UTC ms
    equity: np.ndarray  # float64 equity at each bar, quote currency
    mode: str = "backtest"  # "backtest" or "replay"
    created_at: int = field(default_factory=wall_clock_ms)  # wall-clock save time, UTC ms
    report: str = ""  # absolute path of the run's report.html ("" when none was written)

    @property
    def spec_hash(self) -> str:
        """Sha256 hex digest of the spec text."""
        return hashlib.sha256(self.spec_text.encode("utf-8")).hexdigest()

    @classmethod
    def from_result(
        cls,
        result: BacktestResult,
        summary: Summary,
        *,
        spec_path: str,
        spec_text: str,
        params: tuple[tuple[str, str], ...] = (),
        mode: str = "backtest",
        report: str = "",
    ) -> RunRecord:
        """Build the record of a finished run (the spec name is the file's stem)."""
        name = spec_path.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".strat")
        return cls(
            spec_name=name,
            spec_path=spec_path,
            spec_text=spec_text,
            params=params,
            data_start=int(result.time[0]) - summary.bar_ms,
            data_end=int(result.time[-1]),
            summary=summary,
            trades=result.trades,
            equity_time=np.asarray(result.time, dtype=np.int64),
            equity=np.asarray(result.equity, dtype=np.float64),
            mode=mode,
            report=report,
        )


@dataclass(frozen=True)
class RunListing:
    """The headline of one saved run, as `strat runs` lists it."""

    id: int  # run id
    created_at: int  # wall-clock save time, UTC ms
    spec_name: str  # spec file stem
    mode: str  # "backtest" or "replay"
    data_start: int  # open time of the first bar, UTC ms
    data_end: int  # close time of the last bar, UTC ms
    total_return: float  # fraction
    max_drawdown: float  # fraction
    sharpe: float | None  # annualised Sharpe ratio; None when undefined
    synthetic: bool = False  # whether any of its candles came from the synthetic market
    report: str = ""  # absolute path of its report.html ("" when none was written)


@dataclass(frozen=True)
class StoredRun:
    """A run read back from the store."""

    id: int  # run id
    record: RunRecord  # what was saved


def _pack(values: np.ndarray, dtype: str) -> bytes:
    """Compress an array as little-endian values of `dtype`."""
    return zlib.compress(np.ascontiguousarray(values, dtype=dtype).tobytes(), level=1)


def _unpack(blob: bytes, dtype: str) -> np.ndarray:
    """Inverse of `_pack`."""
    return np.frombuffer(zlib.decompress(blob), dtype=dtype).copy()


# Trade fields stored as columns of the same name.
_TRADE_FIELDS = tuple(Trade.__dataclass_fields__)


class RunStore:
    """Save and read back backtest runs in a store (an engine from `runtime.store.schema.open_store`)."""

    def __init__(self, engine: Engine) -> None:
        """Use the store behind `engine`."""
        self.engine = engine  # SQLAlchemy engine of the database

    def save(self, record: RunRecord) -> int:
        """Save a run and return its id."""
        summary = record.summary
        with session_scope(self.engine) as session:
            row = RunRow(
                created_at=record.created_at,
                spec_name=record.spec_name,
                spec_path=record.spec_path,
                spec_hash=record.spec_hash,
                spec_text=record.spec_text,
                mode=record.mode,
                params_json=json.dumps([list(p) for p in record.params]),
                data_start=record.data_start,
                data_end=record.data_end,
                total_return=summary.total_return,
                max_drawdown=summary.max_drawdown,
                sharpe=summary.sharpe,
                summary_json=summary.model_dump_json(),
                equity_time=_pack(record.equity_time, "<i8"),
                equity=_pack(record.equity, "<f8"),
                report=record.report or None,
            )
            session.add(row)
            session.flush()
            run_id = row.id
            # One executemany for all trades (runs can hold tens of thousands).
            if record.trades:
                session.execute(
                    insert(RunTradeRow),
                    [
                        {"run_id": run_id, "seq": i, **{f: getattr(t, f) for f in _TRADE_FIELDS}}
                        for i, t in enumerate(record.trades)
                    ],
                )
        return run_id

    def latest(self, limit: int = 50) -> tuple[RunListing, ...]:
        """The newest saved runs first, at most `limit` of them."""
        columns = (
            RunRow.id,
            RunRow.created_at,
            RunRow.spec_name,
            RunRow.mode,
            RunRow.data_start,
            RunRow.data_end,
            RunRow.total_return,
            RunRow.max_drawdown,
            RunRow.sharpe,
            RunRow.summary_json,
            RunRow.report,
        )
        with session_scope(self.engine) as session:
            rows = session.execute(select(*columns).order_by(RunRow.id.desc()).limit(limit)).all()
        # Whether a run was synthetic is read from its saved summary (no column of its own).
        return tuple(
            RunListing(
                run_id,
                created,
                spec,
                mode,
                start,
                end,
                ret,
                dd,
                sharpe,
                bool(json.loads(saved)["synthetic"]),
                report or "",
            )
            for run_id, created, spec, mode, start, end, ret, dd, sharpe, saved, report in rows
        )

    def get(self, run_id: int) -> StoredRun | None:
        """One saved run with its trades and equity curve; None when no run has that id."""
        with session_scope(self.engine) as session:
            row = session.get(RunRow, run_id)
            if row is None:
                return None
            trades = session.scalars(
                select(RunTradeRow).where(RunTradeRow.run_id == run_id).order_by(RunTradeRow.seq)
            ).all()
            record = RunRecord(
                spec_name=row.spec_name,
                spec_path=row.spec_path,
                spec_text=row.spec_text,
                params=tuple((str(k), str(v)) for k, v in json.loads(row.params_json)),
                data_start=row.data_start,
                data_end=row.data_end,
                summary=Summary.model_validate_json(row.summary_json),
                trades=tuple(Trade(**{f: getattr(t, f) for f in _TRADE_FIELDS}) for t in trades),
                equity_time=_unpack(row.equity_time, "<i8"),
                equity=_unpack(row.equity, "<f8"),
                mode=row.mode,
                created_at=row.created_at,
                report=row.report or "",
            )
        return StoredRun(id=run_id, record=record)
