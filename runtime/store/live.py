"""Paper and live deployments: their identity, spec versions, order intents, fills, checkpoints and events.

A deployment (one portfolio or strategy traded in one mode on one exchange account) owns every other row
through its key. Order intents are written ahead of the request that sends them (`write_intent`), so a
killed process finds each order it may have sent by its client id; fills are booked once per exchange
trade (`record_fill`). A checkpoint (`checkpoint`) stores, in one transaction, the broker snapshot, the
engine's state, the intents it changed, its events, an equity point and the feeds' last bars: a crash
leaves either all of it or none. Snapshots and engine state are JSON text the store does not look into.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from sqlalchemy import BigInteger, Engine, Integer, String, Text, UniqueConstraint, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from runtime.store.db import Base, Real, dialect_insert, session_scope

# Intent statuses of an order whose outcome is not final yet (resolved against the exchange on start).
UNFINISHED = ("pending", "open", "partial", "unknown")


@dataclass(frozen=True)
class Deployment:
    """One portfolio (or strategy) traded in one mode on one exchange account."""

    key: str  # f"{name}:{mode}:{exchange}:{account}" (see `deployment_key`)
    name: str  # portfolio or strategy name
    mode: str  # "paper" or "live"
    exchange: str  # ccxt exchange id, "binance"
    account: str  # non-secret account fingerprint ("paper" for paper)
    spec_path: str  # spec file as given on the command line
    spec_sha: str  # sha256 hex of the spec text in force
    state: str  # "running", "stopped" or "halted"
    pid: int  # process id of the engine that last ran it
    host: str  # host name of that process
    started_ms: int  # when that process started it, UTC ms
    heartbeat_ms: int  # last sign of life of that process, UTC ms
    baseline: tuple[tuple[str, float], ...]  # (asset, exchange balance) when the deployment was created


# A deployment stored as running whose engine wrote no heartbeat for this long is shown as stopped, ms.
HEARTBEAT_STALE_MS = 60_000


def shown_state(d: Deployment, now_ms: int) -> str:
    """The state to show: "running" only with a heartbeat in the last `HEARTBEAT_STALE_MS`."""
    if d.state == "running" and now_ms - d.heartbeat_ms > HEARTBEAT_STALE_MS:
        return "stopped"
    return d.state


def deployment_key(name: str, mode: str, exchange: str, account: str) -> str:
    """The key of a deployment: `name:mode:exchange:account`."""
    return f"{name}:{mode}:{exchange}:{account}"


@dataclass(frozen=True)
class SpecVersion:
    """One version of a deployment's spec text."""

    sha: str  # sha256 hex of text
    text: str  # the spec's full text
    time_ms: int  # when it was first put in force, UTC ms


@dataclass(frozen=True)
class Intent:
    """An order the engine decided to send, written before it is sent, and its outcome so far."""

    client_id: str  # deterministic client order id (primary key)
    deployment: str  # deployment key
    sleeve: str  # sleeve name
    symbol: str  # market symbol, "BTC/USDT"
    bar_close_ms: int  # close time of the bar that decided it, UTC ms
    intent: str  # "entry", "scale_in" or "exit"
    reason: str  # why (the exit reason, the rule), for the event log
    side: str  # "buy" or "sell"
    qty: float  # requested quantity, base units
    # "pending" (written, not yet acknowledged), "open", "partial", "filled", "canceled", "rejected",
    # "missed" (never sent) or "unknown"
    status: str
    order_id: str  # exchange order id, "" until known
    filled: float  # quantity the exchange reports filled, base units
    booked: float  # quantity already booked into the broker state, base units
    avg_price: float  # average fill price, quote currency (NaN when nothing filled)
    fee: float  # fees paid, quote currency
    created_ms: int  # when it was written, UTC ms
    updated_ms: int  # when it last changed, UTC ms
    error: str  # the exchange's or the engine's last error about it, "" when none


@dataclass(frozen=True)
class FillRow:
    """One exchange trade (a fill, possibly partial) of one of our orders."""

    deployment: str  # deployment key
    client_id: str  # client order id of the order it filled
    trade_id: str  # exchange trade id
    sleeve: str  # sleeve name
    symbol: str  # market symbol
    side: str  # "buy" or "sell"
    qty: float  # filled quantity, base units
    price: float  # fill price, quote currency
    fee: float  # fee charged, in fee_asset
    fee_asset: str  # asset the fee was charged in, "BNB"
    time_ms: int  # exchange time of the trade, UTC ms


@dataclass(frozen=True)
class LiveEvent:
    """Something that happened to a deployment, for the event log and the live view."""

    time_ms: int  # when, UTC ms
    # "start", "stop", "fill", "order", "rejected", "error", "stale", "recovered", "missed", "reconcile",
    # "risk", "alert", "reload", ...
    kind: str
    sleeve: str  # sleeve name, "" for the whole deployment
    message: str  # one line for people
    who: str = "engine"  # who caused it: "engine", or the user/channel that commanded it


@dataclass(frozen=True)
class SleeveStatus:
    """One sleeve's position and flags at a checkpoint (what `strat status` shows)."""

    sleeve: str  # sleeve name
    symbol: str  # market symbol
    timeframe: str  # bar length, "1h"
    position: float  # signed quantity, base units (negative short)
    avg_entry: float  # average entry price, quote currency (NaN when flat)
    realized_pnl: float  # realized profit after fees, quote currency
    unrealized_pnl: float  # open position's profit at the last close, quote currency
    paused: bool  # whether new entries are paused (stale data, a disagreeing position, a command)
    halted: bool  # whether a risk rule halted it
    last_bar_ms: int  # close time of the last processed bar, UTC ms
    open_orders: tuple[Intent, ...] = ()  # its orders not finished yet
    held: tuple[str, ...] = ()  # why entries are held: "paused" (a command), "stale" (a feed), "frozen"
    last_close: float = math.nan  # the last close of its market, quote currency (NaN before the first)


@dataclass(frozen=True)
class Checkpoint:
    """The persisted state of a running deployment, from which a restarted engine resumes."""

    deployment: str  # deployment key
    time_ms: int  # when it was taken, UTC ms
    snapshot: str  # JSON text of the broker Simulator snapshot (opaque to the store)
    engine: str  # JSON text of the engine's own state (opaque to the store)
    feeds: tuple[tuple[str, str, int], ...]  # (symbol, timeframe, close time of the last processed bar ms)
    sleeves: tuple[SleeveStatus, ...]  # every sleeve's status
    equity: float  # account equity, quote currency
    cash: float  # account cash, quote currency


class DeploymentRow(Base):
    """One deployment (the fields of `Deployment`)."""

    __tablename__ = "live_deployments"

    key: Mapped[str] = mapped_column(String(400), primary_key=True)  # name:mode:exchange:account
    name: Mapped[str] = mapped_column(String(200))  # portfolio or strategy name
    mode: Mapped[str] = mapped_column(String(8))  # "paper" or "live"
    exchange: Mapped[str] = mapped_column(String(64))  # ccxt exchange id
    account: Mapped[str] = mapped_column(String(128))  # non-secret account fingerprint
    spec_path: Mapped[str] = mapped_column(Text)  # spec file as given
    spec_sha: Mapped[str] = mapped_column(String(64))  # sha256 hex of the spec text in force
    state: Mapped[str] = mapped_column(String(16))  # "running", "stopped" or "halted"
    pid: Mapped[int] = mapped_column(Integer)  # process id of the engine that last ran it
    host: Mapped[str] = mapped_column(String(255))  # host name of that process
    started_ms: Mapped[int] = mapped_column(BigInteger)  # start of that process's run, UTC ms
    heartbeat_ms: Mapped[int] = mapped_column(BigInteger)  # last sign of life, UTC ms
    baseline: Mapped[str] = mapped_column(Text)  # JSON [[asset, balance], ...] at creation


class SpecVersionRow(Base):
    """One spec text a deployment ran, once per sha256."""

    __tablename__ = "live_spec_versions"

    deployment: Mapped[str] = mapped_column(String(400), primary_key=True)  # deployment key
    sha: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of text
    text: Mapped[str] = mapped_column(Text)  # the spec's full text
    time_ms: Mapped[int] = mapped_column(BigInteger)  # when it was first put in force, UTC ms


class IntentRow(Base):
    """One order intent (the fields of `Intent`)."""

    __tablename__ = "live_intents"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)  # client order id
    deployment: Mapped[str] = mapped_column(String(400), index=True)  # deployment key
    sleeve: Mapped[str] = mapped_column(String(200))  # sleeve name
    symbol: Mapped[str] = mapped_column(String(64))  # market symbol
    bar_close_ms: Mapped[int] = mapped_column(BigInteger)  # close time of the deciding bar, UTC ms
    intent: Mapped[str] = mapped_column(String(16))  # "entry", "scale_in" or "exit"
    reason: Mapped[str] = mapped_column(Text)  # why
    side: Mapped[str] = mapped_column(String(8))  # "buy" or "sell"
    qty: Mapped[float] = mapped_column(Real, nullable=True)  # requested quantity, base units
    status: Mapped[str] = mapped_column(String(16))  # see `Intent.status`
    order_id: Mapped[str] = mapped_column(String(128))  # exchange order id, "" until known
    filled: Mapped[float] = mapped_column(Real, nullable=True)  # reported filled quantity, base units
    booked: Mapped[float] = mapped_column(Real, nullable=True)  # quantity booked in the broker, base units
    avg_price: Mapped[float] = mapped_column(Real, nullable=True)  # average fill price, quote
    fee: Mapped[float] = mapped_column(Real, nullable=True)  # fees, quote currency
    created_ms: Mapped[int] = mapped_column(BigInteger)  # when written, UTC ms
    updated_ms: Mapped[int] = mapped_column(BigInteger)  # when last changed, UTC ms
    error: Mapped[str] = mapped_column(Text)  # last error about it, "" when none


class LiveFillRow(Base):
    """One exchange trade of one of our orders (the fields of `FillRow`), once per (client id, trade id)."""

    __tablename__ = "live_fills"
    __table_args__ = (UniqueConstraint("client_id", "trade_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # insertion order
    deployment: Mapped[str] = mapped_column(String(400), index=True)  # deployment key
    client_id: Mapped[str] = mapped_column(String(64))  # client order id of the order filled
    trade_id: Mapped[str] = mapped_column(String(128))  # exchange trade id
    sleeve: Mapped[str] = mapped_column(String(200))  # sleeve name
    symbol: Mapped[str] = mapped_column(String(64))  # market symbol
    side: Mapped[str] = mapped_column(String(8))  # "buy" or "sell"
    qty: Mapped[float] = mapped_column(Real, nullable=True)  # filled quantity, base units
    price: Mapped[float] = mapped_column(Real, nullable=True)  # fill price, quote currency
    fee: Mapped[float] = mapped_column(Real, nullable=True)  # fee, in fee_asset
    fee_asset: Mapped[str] = mapped_column(String(32))  # asset the fee was charged in
    time_ms: Mapped[int] = mapped_column(BigInteger)  # exchange time of the trade, UTC ms


class EventRow(Base):
    """One event of a deployment (the fields of `LiveEvent`)."""

    __tablename__ = "live_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # event id, increasing
    deployment: Mapped[str] = mapped_column(String(400), index=True)  # deployment key
    time_ms: Mapped[int] = mapped_column(BigInteger)  # when, UTC ms
    kind: Mapped[str] = mapped_column(String(32))  # "fill", "error", ...
    sleeve: Mapped[str] = mapped_column(String(200))  # sleeve name, "" for the deployment
    message: Mapped[str] = mapped_column(Text)  # one line for people
    who: Mapped[str] = mapped_column(String(200))  # "engine" or who commanded it


class CheckpointRow(Base):
    """The last checkpoint of a deployment (one row each, replaced by the next)."""

    __tablename__ = "live_checkpoints"

    deployment: Mapped[str] = mapped_column(String(400), primary_key=True)  # deployment key
    time_ms: Mapped[int] = mapped_column(BigInteger)  # when it was taken, UTC ms
    snapshot: Mapped[str] = mapped_column(Text)  # broker snapshot, JSON (opaque)
    engine: Mapped[str] = mapped_column(Text)  # engine state, JSON (opaque)
    feeds: Mapped[str] = mapped_column(Text)  # JSON [[symbol, timeframe, last bar close ms], ...]
    sleeves: Mapped[str] = mapped_column(Text)  # JSON list of SleeveStatus objects
    equity: Mapped[float] = mapped_column(Real, nullable=True)  # account equity, quote currency
    cash: Mapped[float] = mapped_column(Real, nullable=True)  # account cash, quote currency


class EquityRow(Base):
    """One equity snapshot of a deployment (one per checkpoint)."""

    __tablename__ = "live_equity"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # insertion order
    deployment: Mapped[str] = mapped_column(String(400), index=True)  # deployment key
    time_ms: Mapped[int] = mapped_column(BigInteger)  # checkpoint time, UTC ms
    equity: Mapped[float] = mapped_column(Real, nullable=True)  # account equity, quote currency
    cash: Mapped[float] = mapped_column(Real, nullable=True)  # account cash, quote currency


class FeedRow(Base):
    """The last processed bar of one feed of a deployment."""

    __tablename__ = "live_feeds"

    deployment: Mapped[str] = mapped_column(String(400), primary_key=True)  # deployment key
    symbol: Mapped[str] = mapped_column(String(64), primary_key=True)  # market symbol
    timeframe: Mapped[str] = mapped_column(String(8), primary_key=True)  # bar length
    last_bar_ms: Mapped[int] = mapped_column(BigInteger)  # close time of the last processed bar, UTC ms


# Field names of the value objects stored one column each under the same name.
_DEPLOYMENT_FIELDS = tuple(f.name for f in fields(Deployment))
_INTENT_FIELDS = tuple(f.name for f in fields(Intent))
_FILL_FIELDS = tuple(f.name for f in fields(FillRow))
_EVENT_FIELDS = tuple(f.name for f in fields(LiveEvent))


class LiveStore:
    """Read and write paper/live deployments in a store (an engine from `schema.open_store`).

    Every method is one transaction, committed before it returns.
    """

    def __init__(self, engine: Engine) -> None:
        """Use the store behind `engine`."""
        self.engine = engine  # SQLAlchemy engine of the database

    # Deployments.

    def save_deployment(self, d: Deployment) -> None:
        """Insert a deployment, or replace every field of the one with its key."""
        row = {**asdict(d), "baseline": json.dumps([list(pair) for pair in d.baseline])}
        with session_scope(self.engine) as session:
            _upsert(session, DeploymentRow, [row], ("key",))

    def deployment(self, key: str) -> Deployment | None:
        """The deployment with this key, or None."""
        found = self._deployments(DeploymentRow.key == key)
        return found[0] if found else None

    def deployments(self) -> list[Deployment]:
        """Every deployment, by key."""
        return self._deployments()

    def _deployments(self, *where: Any) -> list[Deployment]:
        """The deployments matching `where`, by key."""
        columns = (getattr(DeploymentRow, name) for name in _DEPLOYMENT_FIELDS)
        with session_scope(self.engine) as session:
            rows = session.execute(select(*columns).where(*where).order_by(DeploymentRow.key)).all()
        return [
            Deployment(
                **{
                    **row._asdict(),
                    "baseline": tuple((str(a), float(b)) for a, b in json.loads(row.baseline)),
                }
            )
            for row in rows
        ]

    def set_state(self, key: str, state: str, heartbeat_ms: int) -> None:
        """Record a deployment's state ("running", "stopped", "halted") and a heartbeat."""
        self._update_deployment(key, state=state, heartbeat_ms=heartbeat_ms)

    def heartbeat(self, key: str, ms: int) -> None:
        """Record that the engine of a deployment is alive at `ms` (UTC ms)."""
        self._update_deployment(key, heartbeat_ms=ms)

    def _update_deployment(self, key: str, **values: Any) -> None:
        """Set columns of a deployment row (nothing happens for an unknown key)."""
        with session_scope(self.engine) as session:
            session.execute(update(DeploymentRow).where(DeploymentRow.key == key).values(**values))

    # Spec versions.

    def save_spec_version(self, key: str, sha: str, text: str, time_ms: int) -> None:
        """Remember a spec text a deployment runs; saving the same sha again keeps the first record."""
        row = {"deployment": key, "sha": sha, "text": text, "time_ms": time_ms}
        with session_scope(self.engine) as session:
            _upsert(session, SpecVersionRow, [row], ("deployment", "sha"), replace=False)

    def spec_versions(self, key: str) -> list[SpecVersion]:
        """The spec versions of a deployment, oldest first."""
        with session_scope(self.engine) as session:
            rows = session.execute(
                select(SpecVersionRow.sha, SpecVersionRow.text, SpecVersionRow.time_ms)
                .where(SpecVersionRow.deployment == key)
                .order_by(SpecVersionRow.time_ms, SpecVersionRow.sha)
            ).all()
        return [SpecVersion(*row) for row in rows]

    # Order intents.

    def write_intent(self, i: Intent) -> Intent:
        """Write an intent ahead of sending it; return the stored one.

        When an intent with this client id exists (written before, or by another process at the same
        moment) it is left unchanged and returned: the caller sees what was decided first.
        """
        with session_scope(self.engine) as session:
            _upsert(session, IntentRow, [asdict(i)], ("client_id",), replace=False)
            stored = _intents(session, IntentRow.client_id == i.client_id)
        return stored[0]

    def update_intent(self, i: Intent) -> None:
        """Replace the stored intent with this client id (inserted when absent, e.g. an adopted order)."""
        with session_scope(self.engine) as session:
            _upsert(session, IntentRow, [asdict(i)], ("client_id",))

    def intent(self, client_id: str) -> Intent | None:
        """The intent with this client id, or None."""
        with session_scope(self.engine) as session:
            found = _intents(session, IntentRow.client_id == client_id)
        return found[0] if found else None

    def intents(self, key: str, unfinished: bool = False) -> list[Intent]:
        """A deployment's intents (only those not final yet when `unfinished`), oldest first."""
        where = [IntentRow.deployment == key]
        if unfinished:
            where.append(IntentRow.status.in_(UNFINISHED))
        with session_scope(self.engine) as session:
            return _intents(session, *where)

    # Fills.

    def record_fill(self, f: FillRow) -> bool:
        """Store an exchange trade unless its (client id, trade id) is stored; whether it was new."""
        with session_scope(self.engine) as session:
            return _upsert(session, LiveFillRow, [asdict(f)], ("client_id", "trade_id"), replace=False) == 1

    def fills(self, key: str) -> list[FillRow]:
        """A deployment's fills in the order they were recorded."""
        columns = (getattr(LiveFillRow, name) for name in _FILL_FIELDS)
        with session_scope(self.engine) as session:
            rows = session.execute(
                select(*columns).where(LiveFillRow.deployment == key).order_by(LiveFillRow.id)
            ).all()
        return [FillRow(*row) for row in rows]

    # Checkpoints.

    def checkpoint(
        self, c: Checkpoint, intents: tuple[Intent, ...] = (), events: tuple[LiveEvent, ...] = ()
    ) -> None:
        """Persist a checkpoint in one transaction: all of it lands or none of it.

        Replaces the deployment's checkpoint, replaces the given intents, appends the events and one
        equity point (time, equity, cash), and records each feed's last processed bar.
        """
        key = c.deployment
        row = {
            "deployment": key,
            "time_ms": c.time_ms,
            "snapshot": c.snapshot,
            "engine": c.engine,
            "feeds": json.dumps([list(feed) for feed in c.feeds]),
            "sleeves": json.dumps([asdict(sleeve) for sleeve in c.sleeves]),
            "equity": c.equity,
            "cash": c.cash,
        }
        feeds = [
            {"deployment": key, "symbol": symbol, "timeframe": timeframe, "last_bar_ms": ms}
            for symbol, timeframe, ms in c.feeds
        ]
        with session_scope(self.engine) as session:
            _upsert(session, CheckpointRow, [row], ("deployment",))
            _upsert(session, IntentRow, [asdict(i) for i in intents], ("client_id",))
            _add_events(session, key, events)
            session.add(EquityRow(deployment=key, time_ms=c.time_ms, equity=c.equity, cash=c.cash))
            _upsert(session, FeedRow, feeds, ("deployment", "symbol", "timeframe"))

    def last_checkpoint(self, key: str) -> Checkpoint | None:
        """The last checkpoint of a deployment, or None before the first."""
        with session_scope(self.engine) as session:
            row = session.get(CheckpointRow, key)
            if row is None:
                return None
            return Checkpoint(
                deployment=row.deployment,
                time_ms=row.time_ms,
                snapshot=row.snapshot,
                engine=row.engine,
                feeds=tuple((str(s), str(tf), int(ms)) for s, tf, ms in json.loads(row.feeds)),
                sleeves=tuple(_sleeve(saved) for saved in json.loads(row.sleeves)),
                equity=row.equity,
                cash=row.cash,
            )

    def feeds(self, key: str) -> list[tuple[str, str, int]]:
        """Every feed a deployment processed, as (symbol, timeframe, last bar close ms), sorted."""
        with session_scope(self.engine) as session:
            rows = session.execute(
                select(FeedRow.symbol, FeedRow.timeframe, FeedRow.last_bar_ms)
                .where(FeedRow.deployment == key)
                .order_by(FeedRow.symbol, FeedRow.timeframe)
            ).all()
        return [(str(s), str(tf), int(ms)) for s, tf, ms in rows]

    # Events and equity.

    def add_events(self, key: str, events: tuple[LiveEvent, ...] | list[LiveEvent]) -> None:
        """Append events to a deployment's log."""
        with session_scope(self.engine) as session:
            _add_events(session, key, events)

    def events(self, key: str, limit: int = 100, since_id: int = 0) -> list[tuple[int, LiveEvent]]:
        """The newest `limit` events with an id above `since_id`, as (id, event), newest last."""
        columns = (getattr(EventRow, name) for name in _EVENT_FIELDS)
        with session_scope(self.engine) as session:
            rows = session.execute(
                select(EventRow.id, *columns)
                .where(EventRow.deployment == key, EventRow.id > since_id)
                .order_by(EventRow.id.desc())
                .limit(limit)
            ).all()
        return [(row[0], LiveEvent(*row[1:])) for row in reversed(rows)]

    def equity(self, key: str) -> list[tuple[int, float, float]]:
        """A deployment's equity snapshots as (time ms, equity, cash), oldest first."""
        with session_scope(self.engine) as session:
            rows = session.execute(
                select(EquityRow.time_ms, EquityRow.equity, EquityRow.cash)
                .where(EquityRow.deployment == key)
                .order_by(EquityRow.id)
            ).all()
        return [(int(t), e, c) for t, e, c in rows]


def _upsert(
    session: Session,
    model: type[Base],
    rows: list[dict[str, Any]],
    keys: tuple[str, ...],
    replace: bool = True,
) -> int:
    """Insert rows; on a conflict on `keys` replace the other columns, or keep the stored row.

    Returns how many rows were written (inserted or replaced; a row kept as stored does not count).
    """
    if not rows:
        return 0
    table = model.__table__
    statement = dialect_insert(session)(table)
    if replace:
        changed = {name: statement.excluded[name] for name in rows[0] if name not in keys}
        statement = statement.on_conflict_do_update(index_elements=list(keys), set_=changed)
    else:
        statement = statement.on_conflict_do_nothing(index_elements=list(keys))
    # RETURNING yields one row per row written: the drivers' row counts are not reliable for this.
    returning = statement.returning(*(table.c[name] for name in keys))
    return len(session.execute(returning, rows).all())


def _intents(session: Session, *where: Any) -> list[Intent]:
    """The intents matching `where`, oldest first (ties by client id)."""
    columns = (getattr(IntentRow, name) for name in _INTENT_FIELDS)
    rows = session.execute(
        select(*columns).where(*where).order_by(IntentRow.created_ms, IntentRow.client_id)
    ).all()
    return [Intent(*row) for row in rows]


def _add_events(session: Session, key: str, events: tuple[LiveEvent, ...] | list[LiveEvent]) -> None:
    """Append events to a deployment's log inside the caller's transaction."""
    session.add_all(EventRow(deployment=key, **asdict(event)) for event in events)


def _typed(cls: type, saved: dict[str, Any]) -> dict[str, Any]:
    """The fields of a JSON-decoded value object, its float fields as floats (a caller may pass 0 for 0.0)."""
    kinds = {f.name: f.type for f in fields(cls)}
    return {name: float(value) if kinds[name] == "float" else value for name, value in saved.items()}


def _sleeve(saved: dict[str, Any]) -> SleeveStatus:
    """A SleeveStatus decoded from its checkpoint JSON."""
    orders = tuple(Intent(**_typed(Intent, order)) for order in saved.pop("open_orders"))
    held = tuple(saved.pop("held", ()))
    return SleeveStatus(**_typed(SleeveStatus, saved), open_orders=orders, held=held)
