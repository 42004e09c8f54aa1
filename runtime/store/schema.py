"""Every table of the store, registered in one place, and the one way to open a store.

Importing this module imports every model module, so `Base.metadata` knows all tables; `open_store`
creates the engine of a URL once per process and all tables with it (`create_schema`). Repositories
(`CandleStore`, `LiveStore`, `MarketStore`, `RunStore`) take the engine it returns.
"""

from __future__ import annotations

import time

from sqlalchemy import Engine, inspect, make_url, text
from sqlalchemy.exc import (
    ArgumentError,
    NoSuchModuleError,
    OperationalError,
    ProgrammingError,
    SQLAlchemyError,
)

# The model modules: importing them registers their tables on Base.
from runtime.errors import StratError
from runtime.store import candles, live, markets, resolve_url, runs, store_exists  # noqa: F401
from runtime.store.db import Base, new_engine

# Open engines by resolved URL (one per database and process: creating one per call would leak pools).
_OPEN: dict[str, Engine] = {}


def create_schema(engine: Engine) -> None:
    """Create every table the store knows that the database lacks, and the columns an older store lacks.

    A store written by an earlier version keeps its rows: a column added since (e.g. the trades' `mae`)
    is added empty (NULL for the old rows), so that saving into it works again.
    """
    Base.metadata.create_all(engine)
    existing = inspect(engine)
    quote = engine.dialect.identifier_preparer.quote
    with engine.begin() as connection:
        for table in Base.metadata.sorted_tables:
            have = {column["name"] for column in existing.get_columns(table.name)}
            for column in table.columns:
                if column.name not in have:
                    kind = column.type.compile(dialect=engine.dialect)
                    connection.execute(
                        text(f"ALTER TABLE {quote(table.name)} ADD COLUMN {quote(column.name)} {kind}")
                    )


class StoreError(StratError):
    """The store at a URL cannot be opened (the message names the URL, never its password)."""


def find_store(url: str | None = None) -> Engine | None:
    """`open_store` for read-only commands: None for a store that does not exist yet, creating nothing.

    Nothing (no file, no folder, no table) is created just to look.
    """
    return open_store(url) if store_exists(url) else None


def open_store(url: str | None = None) -> Engine:
    """The engine of the store at `url` (see `resolve_url`), its tables created on the first open.

    Raises StoreError for a URL that is not a database URL or a database that cannot be reached.
    """
    resolved = resolve_url(url)
    engine = _OPEN.get(resolved)
    if engine is None:
        shown = _shown(resolved)
        try:
            engine = new_engine(resolved)
            _create_schema_once(engine)
        except ArgumentError as error:
            raise StoreError(f"{shown} is not a database URL ({error})") from None
        except (SQLAlchemyError, OSError) as error:
            reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
            raise StoreError(f"cannot open the store at {shown}: {reason}") from None
        _OPEN[resolved] = engine
    return engine


def check_url(url: str | None) -> None:
    """Refuse up front a `--db` value that is not a database URL SQLAlchemy can drive (StoreError)."""
    if url is None:
        return
    try:
        make_url(url).get_dialect()
    except (ArgumentError, NoSuchModuleError) as error:
        raise StoreError(f"--db {_shown(url)} is not a database URL ({error})") from None


def _create_schema_once(engine: Engine) -> None:
    """Create the tables, tolerating other processes creating them at the same moment (first use).

    Several processes may see a table missing and all create it: all but one fail on "already exists"
    (or, adding a column, "duplicate column"). Each pass creates only what is still missing, so passing
    again until one succeeds converges (one pass per table at most).
    """
    for attempt in range(len(Base.metadata.tables) * 2 + 1):
        try:
            create_schema(engine)
            return
        except (OperationalError, ProgrammingError) as error:
            text_ = str(error)
            if "locked" in text_:
                # Another process holds the database past the busy timeout of one statement: wait a bit.
                time.sleep(0.05 * (attempt + 1))
            elif "already exists" not in text_ and "duplicate column" not in text_:
                raise
    create_schema(engine)


def _shown(url: str) -> str:
    """A URL as it may be printed: its password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def close_store(url: str | None = None) -> None:
    """Close and forget the engine of a URL (tests use it to drop throwaway databases)."""
    engine = _OPEN.pop(resolve_url(url), None)
    if engine is not None:
        engine.dispose()
