"""Engine, declarative base and session helper shared by every table of the store.

The database is an SQLite file (`.strat/strat.db` under the current directory) unless a URL is given by
`--db` or the `STRAT_DB_URL` environment variable; `postgresql+psycopg://...` selects PostgreSQL. Other
modules add their tables by subclassing `Base`; `engine_for` creates all known tables on first use.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session

from runtime.store import resolve_url

# Engines already created in this process, by URL (creating one per call would leak pools).
_ENGINES: dict[str, Engine] = {}


class Base(DeclarativeBase):
    """Declarative base of every table in the store."""


def engine_for(url: str | None = None) -> Engine:
    """Return the (cached) engine for a URL, creating the SQLite folder and all tables on first use."""
    resolved = resolve_url(url)
    if resolved in _ENGINES:
        return _ENGINES[resolved]
    if resolved.startswith("sqlite:///") and resolved != "sqlite:///:memory:":
        Path(resolved.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(resolved)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    # Importing the table modules registers them on Base before the tables are created.
    import runtime.store.candles
    import runtime.store.markets  # noqa: F401

    Base.metadata.create_all(engine)
    _ENGINES[resolved] = engine
    return engine


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    """Use write-ahead logging so that readers do not block the writer (and vice versa)."""
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def dispose(url: str | None = None) -> None:
    """Close and forget the engine of a URL (tests use it to drop throwaway databases)."""
    engine = _ENGINES.pop(resolve_url(url), None)
    if engine is not None:
        engine.dispose()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on error."""
    with Session(engine) as session, session.begin():
        yield session
