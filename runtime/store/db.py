"""Engine creation, the declarative base of every table, and the session helper of the repositories.

The database is an SQLite file (`.strat/strat.db` under the current directory) unless a URL is given by
`--db` or the `STRAT_DB_URL` environment variable; `postgresql+psycopg://...` selects PostgreSQL. Model
modules subclass `Base`; `runtime.store.schema` registers them all and opens stores.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session


class Base(DeclarativeBase):
    """Declarative base of every table in the store."""


def new_engine(url: str) -> Engine:
    """A new engine for a resolved URL (an SQLite file's folder is created; SQLite runs in WAL mode)."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    # SQLite: a writer waits up to 30 s for another process's lock instead of failing at once.
    sqlite = url.startswith("sqlite")
    engine = create_engine(url, connect_args={"timeout": 30} if sqlite else {})
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    """Use write-ahead logging so that readers do not block the writer (and vice versa)."""
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on error."""
    with Session(engine) as session, session.begin():
        yield session
