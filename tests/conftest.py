"""Shared test fixtures: where the real candle data lives, and the repository root."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# The repository root (the folder holding grammar.lark).
ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path | None:
    """The folder of real Binance candles: $STRAT_DATA_DIR, else ../shared/data; None when absent."""
    path = Path(os.environ.get("STRAT_DATA_DIR", ROOT.parent / "shared" / "data"))
    return path if (path / "BTCUSDT-1h.csv").exists() else None


def pytest_configure(config: pytest.Config) -> None:
    """Take Ctrl-C (SIGINT) as at a terminal, however the test run was started.

    A shell without job control starts a background command with SIGINT ignored, and an ignored signal
    stays ignored in every process started from it: the tests' Ctrl-C of a `strat` process would do
    nothing. The default handler here is inherited as the default disposition by those processes.
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real candle folder; skips the test cleanly when it is not there."""
    path = data_dir()
    if path is None:
        pytest.skip("real candle data (../shared/data) is not available")
    return path


@pytest.fixture(autouse=True, scope="session")
def _private_store(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Point the default store at a throwaway SQLite file, so no test reads or writes the user's store."""
    os.environ["STRAT_DB_URL"] = f"sqlite:///{tmp_path_factory.mktemp('store') / 'strat.db'}"


def _postgres_url() -> str | None:
    """The PostgreSQL URL CI exports, or None."""
    return os.environ.get("STRAT_TEST_PG_URL")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: an SQLite file, and a PostgreSQL schema when a server is available."""
    from runtime.store.schema import close_store

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'strat.db'}"
        yield url
        close_store(url)
        return
    base = _postgres_url()
    if base is None:
        pytest.skip("no PostgreSQL server (STRAT_TEST_PG_URL is unset)")
    import sqlalchemy

    # A throwaway database per test, dropped afterwards.
    name = f"strat_test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    url = base.rsplit("/", 1)[0] + f"/{name}"
    yield url
    close_store(url)
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE {name}")
    admin.dispose()
