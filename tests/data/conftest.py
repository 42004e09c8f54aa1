"""Fixtures of the market-data tests: the fake Binance server, feeds on it, throwaway stores, the CLI."""

from __future__ import annotations

import argparse
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fake_binance import HOUR, JAN_1_2024, FakeBinance

from runtime.exchange.client import RetryPolicy
from runtime.exchange.feed import ExchangeFeed


@pytest.fixture
def fake_binance(shared_data: Path) -> Iterator[FakeBinance]:
    """A fake Binance on 127.0.0.1 serving the real candles; fails the test on any unknown endpoint."""
    server = FakeBinance(shared_data, now_ms=JAN_1_2024 + 100 * HOUR + HOUR // 2, retry_after_s=0).start()
    yield server
    server.stop()
    assert server.unknown == []


@pytest.fixture
def make_feed(fake_binance: FakeBinance) -> Callable[..., ExchangeFeed]:
    """Build an ExchangeFeed on the fake: no throttling, fast retries, the fake's clock."""

    def make(page_limit: int = 1000, attempts: int = 4, timeout_ms: int = 300) -> ExchangeFeed:
        """A feed with small pages and quick backoff so fault tests stay fast."""
        return ExchangeFeed(
            "binance",
            api_url=fake_binance.url,
            rate_limit=False,
            retry=RetryPolicy(attempts=attempts, backoff_s=0.01, timeout_ms=timeout_ms),
            page_limit=page_limit,
            clock=lambda: fake_binance.now_ms,
        )

    return make


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


@pytest.fixture
def strat() -> Callable[..., int]:
    """Run `strat <argv>` through the data commands' parser and return the exit code."""
    from runtime.commands import data as commands

    def run(*argv: str) -> int:
        """Parse and dispatch like runtime.cli.main, with only the data commands registered."""
        parser = argparse.ArgumentParser(prog="strat")
        commands.register(parser.add_subparsers(dest="command"))
        args = parser.parse_args(list(argv))
        return int(args.handler(args))

    return run
