"""The ccxt feed against the fake Binance: pagination, retries, timeouts, gaps, increments, closed bars."""

from __future__ import annotations

import asyncio
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fake_binance import HOUR, JAN_1_2024, FakeBinance
from sqlalchemy import Engine

from runtime.commands.source import Source
from runtime.data.candles import PRICE_COLUMNS, Candle
from runtime.data.csvfiles import read_csv
from runtime.exchange.client import ExchangeRejected, ExchangeUnavailable, RetryPolicy
from runtime.exchange.feed import ExchangeFeed
from runtime.store.candles import CandleStore
from runtime.store.feed import CachedFeed
from runtime.store.schema import open_store

T0, H = JAN_1_2024, HOUR
MakeFeed = Callable[..., ExchangeFeed]


def _eth(shared_data: Path, start: int, end: int):  # type: ignore[no-untyped-def]
    return read_csv(shared_data / "ETHUSDT-1h.csv").slice(start, end)


def _cached(engine: Engine, feed: ExchangeFeed) -> CachedFeed:
    """The store behind `engine` caching `feed`, on the feed's (the fake's) clock."""
    return CachedFeed(engine, feed.exchange_id, lambda: feed, clock=feed.clock)


def _starts(fake: FakeBinance) -> list[int]:
    return [int(q["startTime"]) for q in fake.klines_requests()]


def test_paginates_over_many_pages(fake_binance: FakeBinance, make_feed: MakeFeed, shared_data: Path) -> None:
    candles = make_feed(page_limit=7).fetch("ETH/USDT", "1h", T0, T0 + 100 * H)
    expected = _eth(shared_data, T0, T0 + 100 * H)
    assert len(candles) == 100 and candles.exchange == "binance"
    for name in ("time", *PRICE_COLUMNS):
        assert np.array_equal(getattr(candles, name), getattr(expected, name)), name
    assert _starts(fake_binance) == [T0 + 7 * k * H for k in range(15)]
    assert [q["limit"] for q in fake_binance.klines_requests()][-2:] == ["7", "2"]
    assert fake_binance.requests[0].path == "/api/v3/exchangeInfo"


def test_429_500_and_timeout_are_retried(fake_binance: FakeBinance, make_feed: MakeFeed) -> None:
    fake_binance.inject("GET /api/v3/klines", "429", "500", "timeout")
    feed = make_feed(page_limit=1000, timeout_ms=300)
    candles = feed.fetch("ETH/USDT", "1h", T0, T0 + 10 * H)
    assert candles.time.tolist() == [T0 + k * H for k in range(10)]
    assert feed.retries == 3
    assert _starts(fake_binance) == [T0] * 4


def test_persistent_failure_gives_a_clear_error(fake_binance: FakeBinance, make_feed: MakeFeed) -> None:
    fake_binance.inject("GET /api/v3/klines", *["503"] * 3)
    with pytest.raises(ExchangeUnavailable, match=r"^cannot reach http://127\.0\.0\.1:\d+ after 3 attempts"):
        make_feed(attempts=3).fetch("ETH/USDT", "1h", T0, T0 + 10 * H)
    assert len(fake_binance.klines_requests()) == 3


def test_unreachable_exchange_gives_a_clear_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: nobody listens there
    feed = ExchangeFeed(
        "binance",
        api_url=f"http://127.0.0.1:{port}",
        rate_limit=False,
        retry=RetryPolicy(attempts=5, backoff_s=0.01, connect_attempts=2),
    )
    with pytest.raises(
        ExchangeUnavailable,
        match=rf"^cannot connect to http://127\.0\.0\.1:{port} \(Connection refused; tried 2 times: ",
    ):
        feed.fetch("ETH/USDT", "1h", T0, T0 + H)


def test_unknown_symbol_is_refused_without_retrying(fake_binance: FakeBinance, make_feed: MakeFeed) -> None:
    with pytest.raises(
        ExchangeRejected, match="binance refused the request: binance does not have market symbol"
    ):
        make_feed().fetch("DOGE/USDT", "1h", T0, T0 + H)
    assert fake_binance.klines_requests() == []


def test_unclosed_last_candle_is_neither_returned_nor_stored(
    fake_binance: FakeBinance, make_feed: MakeFeed, tmp_path: Path
) -> None:
    # The fake's now is 100.5 h after T0: the 100 h candle exists but is still open.
    engine = open_store(f"sqlite:///{tmp_path / 's.db'}")
    added = _cached(engine, make_feed()).download("ETH/USDT", "1h", T0, T0 + 200 * H)
    assert added == 100
    assert int(CandleStore(engine).read("binance", "ETH/USDT", "1h").time[-1]) == T0 + 99 * H
    assert CandleStore(engine).coverage("binance", "ETH/USDT", "1h") == [(T0, T0 + 100 * H)]


def test_gap_at_the_exchange_is_stored_as_a_gap_and_not_refetched(
    fake_binance: FakeBinance, make_feed: MakeFeed, tmp_path: Path
) -> None:
    fake_binance.holes = [(T0 + 20 * H, T0 + 30 * H)]
    engine = open_store(f"sqlite:///{tmp_path / 's.db'}")
    assert _cached(engine, make_feed(page_limit=15)).download("ETH/USDT", "1h", T0, T0 + 100 * H) == 90
    stored = CandleStore(engine).read("binance", "ETH/USDT", "1h")
    assert np.flatnonzero(np.diff(stored.time) != H).tolist() == [19]
    before = len(fake_binance.klines_requests())
    assert _cached(engine, make_feed()).download("ETH/USDT", "1h", T0, T0 + 100 * H) == 0
    assert len(fake_binance.klines_requests()) == before


def test_second_download_only_asks_for_the_new_range(
    fake_binance: FakeBinance, make_feed: MakeFeed, tmp_path: Path, shared_data: Path
) -> None:
    engine = open_store(f"sqlite:///{tmp_path / 's.db'}")
    _cached(engine, make_feed(page_limit=40)).download("ETH/USDT", "1h", T0, fake_binance.now_ms)
    assert _starts(fake_binance) == [T0, T0 + 40 * H, T0 + 80 * H]
    fake_binance.requests.clear()
    fake_binance.now_ms += 50 * H  # time passes: 50 more hourly candles have closed
    added = _cached(engine, make_feed(page_limit=40)).download("ETH/USDT", "1h", T0, fake_binance.now_ms)
    assert added == 50
    assert _starts(fake_binance) == [T0 + 100 * H, T0 + 140 * H]
    stored = CandleStore(engine).read("binance", "ETH/USDT", "1h")
    assert np.array_equal(stored.close, _eth(shared_data, T0, T0 + 150 * H).close)


def test_loader_reads_the_store_then_the_exchange(
    fake_binance: FakeBinance, make_feed: MakeFeed, tmp_path: Path, shared_data: Path
) -> None:
    source = Source(db_url=f"sqlite:///{tmp_path / 's.db'}")
    first = source.load("BINANCE:ETH/USDT", "1h", T0 + 10 * H, T0 + 60 * H, feed=make_feed())
    assert np.array_equal(first.candles.close, _eth(shared_data, T0 + 10 * H, T0 + 60 * H).close)
    asked = len(fake_binance.klines_requests())
    again = source.load("ETH/USDT", "1h", T0 + 20 * H, T0 + 30 * H, feed=make_feed())
    assert len(again.candles) == 10 and len(fake_binance.klines_requests()) == asked
    # Open end: up to the fake's now, closed bars only.
    recent = source.load("ETH/USDT", "1h", T0 + 90 * H, None, feed=make_feed())
    assert recent.candles.time.tolist() == [T0 + k * H for k in range(90, 100)]


def test_loader_resamples_a_finer_stored_timeframe(
    fake_binance: FakeBinance, make_feed: MakeFeed, tmp_path: Path, shared_data: Path
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    five = read_csv(shared_data / "ETHUSDT-5m.csv").slice(T0, T0 + 48 * H)
    CandleStore(open_store(url)).write(five, exchange="binance", covered=(T0, T0 + 48 * H))
    hourly = Source(db_url=url).load("ETH/USDT", "1h", T0, T0 + 48 * H, feed=make_feed()).candles
    assert np.array_equal(hourly.volume, _eth(shared_data, T0, T0 + 48 * H).volume)
    assert fake_binance.requests == []


def test_stream_yields_each_candle_once_it_has_closed(fake_binance: FakeBinance, make_feed: MakeFeed) -> None:
    async def collect() -> list[Candle]:
        got: list[Candle] = []
        stream = make_feed().stream("ETH/USDT", "1h", since_ms=T0 + 98 * H, poll_s=0.02)
        async for candle in stream:
            got.append(candle)
            if len(got) == 2:
                fake_binance.now_ms += 2 * H  # two more hours pass
            if len(got) == 4:
                break
        await stream.aclose()
        return got

    got = asyncio.run(asyncio.wait_for(collect(), 10))
    assert [c.time for c in got] == [T0 + k * H for k in (98, 99, 100, 101)]
    assert got[0] == Candle(T0 + 98 * H, 2237.94, 2251.2, 2231.71, 2240.4, 19014.2827)


def test_fake_records_unknown_endpoints(fake_binance: FakeBinance) -> None:
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"{fake_binance.url}/fapi/v1/exchangeInfo", timeout=5)
    assert fake_binance.unknown == ["GET /fapi/v1/exchangeInfo"]
    fake_binance.unknown.clear()  # expected here; any other test calling it fails in the fixture
