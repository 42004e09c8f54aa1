"""Every table of the store, registered in one place, and the one way to open a store.

Importing this module imports every model module, so `Base.metadata` knows all tables; `open_store`
creates the engine of a URL once per process and all tables with it (`create_schema`). Repositories
(`CandleStore`, `MarketStore`, `RunStore`) take the engine it returns.
"""

from __future__ import annotations

from sqlalchemy import Engine

# The model modules: importing them registers their tables on Base.
from runtime.store import candles, markets, resolve_url, runs  # noqa: F401
from runtime.store.db import Base, new_engine

# Open engines by resolved URL (one per database and process: creating one per call would leak pools).
_OPEN: dict[str, Engine] = {}


def create_schema(engine: Engine) -> None:
    """Create every table the store knows that the database lacks (existing ones are left as they are)."""
    Base.metadata.create_all(engine)


def open_store(url: str | None = None) -> Engine:
    """The engine of the store at `url` (see `resolve_url`), its tables created on the first open."""
    resolved = resolve_url(url)
    engine = _OPEN.get(resolved)
    if engine is None:
        engine = new_engine(resolved)
        create_schema(engine)
        _OPEN[resolved] = engine
    return engine


def close_store(url: str | None = None) -> None:
    """Close and forget the engine of a URL (tests use it to drop throwaway databases)."""
    engine = _OPEN.pop(resolve_url(url), None)
    if engine is not None:
        engine.dispose()
