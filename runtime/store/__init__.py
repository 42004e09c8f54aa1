"""Persistence: SQLAlchemy models and one repository class per aggregate.

`schema.open_store(url)` opens a store (every table registered and created in one place) and returns its
engine; the repositories take that engine: `candles.CandleStore`, `markets.MarketStore`, `runs.RunStore`,
`live.LiveStore` (paper and live deployments), and `feed.CachedFeed` reads candles through the store from
the exchange. SQLAlchemy is imported only inside this package; callers hold the engine without looking
inside and pass value objects in and out. This module itself stays light (no SQLAlchemy) so that a
command can find out where the store is without paying for the import.
"""

from __future__ import annotations

import os
from pathlib import Path

# Environment variable that overrides the default database URL.
URL_ENV = "STRAT_DB_URL"
# Default SQLite file, relative to the current directory.
DEFAULT_PATH = Path(".strat") / "strat.db"


def resolve_url(url: str | None = None) -> str:
    """The database URL to use: the argument, else $STRAT_DB_URL, else the default SQLite file."""
    return url or os.environ.get(URL_ENV) or f"sqlite:///{DEFAULT_PATH}"


def store_exists(url: str | None = None) -> bool:
    """Whether there may be anything stored at the URL (an SQLite file that does not exist holds nothing)."""
    resolved = resolve_url(url)
    if resolved.startswith("sqlite:///") and resolved != "sqlite:///:memory:":
        return Path(resolved.removeprefix("sqlite:///")).exists()
    return True
