"""Fixtures of the market-data tests: the fake Binance server, feeds on it, throwaway stores, the CLI."""

from __future__ import annotations

import argparse
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
