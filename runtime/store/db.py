"""Engine creation, the declarative base of every table, and the session helper of the repositories.

The database is an SQLite file (`.strat/strat.db` under the current directory) unless a URL is given by
`--db` or the `STRAT_DB_URL` environment variable; `postgresql+psycopg://...` selects PostgreSQL. Model
modules subclass `Base`; `runtime.store.schema` registers them all and opens stores.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Double, Engine, TypeDecorator, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session


class Base(DeclarativeBase):
    """Declarative base of every table in the store."""


class Real(TypeDecorator[float]):
    """A float column that keeps NaN on every database: NaN is stored as NULL and read back as NaN.

    SQLite turns a bound NaN into NULL by itself, so storing NULL everywhere gives one rule for both
    databases (a column of this type is nullable; NULL means "no value", e.g. the entry price when flat).
    """

    impl = Double  # a 64-bit IEEE double: values round-trip exactly
    cache_ok = True  # stateless: statements using it may be cached

    def process_bind_param(self, value: float | None, dialect: Any) -> float | None:
        """NaN (and None) as NULL; anything else as a float."""
        return None if value is None or math.isnan(value) else float(value)

    def process_result_value(self, value: float | None, dialect: Any) -> float:
        """NULL as NaN."""
        return math.nan if value is None else float(value)


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


def dialect_insert(session: Session):  # type: ignore[no-untyped-def]
    """The `insert` construct with ON CONFLICT support (upserts) for the session's database."""
    name = session.get_bind().dialect.name
    if name == "sqlite":
        return sqlite.insert
    if name == "postgresql":
        return postgresql.insert
    raise ValueError(f"the store supports sqlite and postgresql, not {name}")
