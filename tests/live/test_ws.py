"""Candles over the websocket (`strat run --ws`): ccxt.pro's `watch_ohlcv` against the fake's kline streams.

`CandleStream` is driven directly against the fake (closed candles, a dropped connection and the
reconnection); then whole paper sessions with `--ws` run as `strat` processes: they trade exactly like the
REST-polling session on the same candles, and a websocket dropped mid-session loses no bar and steps none
twice (REST fills what closed while it was down).
"""

from __future__ import annotations

import asyncio
import csv
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fake_binance import FakeBinance, candles
from test_paper import HOUR, SPEC, T0, _env, _status, _wait_for_bar

from runtime.data.candles import Candle
from runtime.exchange.client import ExchangeClient, _rebase
from runtime.exchange.stream import CandleStream
from runtime.live.feeds import ExchangeClock, MarketFeed

BARS = 120  # bars each session trades


async def _until(check: Callable[[], bool]) -> None:
    """Wait (at most 10 s) until `check()` holds."""
    for _ in range(1000):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


def test_rebase_points_websocket_urls_at_the_same_host_under_their_host_label() -> None:
    """REST URLs keep their path; websocket ones go to ws://HOST/<first host label><path>."""
    urls = {
        "public": "https://api.binance.com/api/v3",
        "ws": {"spot": "wss://stream.binance.com:9443/ws", "test": "wss://stream.testnet.binance.vision/ws"},
    }
    assert _rebase(urls, "http://127.0.0.1:8080") == {
        "public": "http://127.0.0.1:8080/api/v3",
        "ws": {"spot": "ws://127.0.0.1:8080/stream/ws", "test": "ws://127.0.0.1:8080/stream/ws"},
    }
    assert _rebase("https://proxy.example/x", "https://here") == "https://here/x"


def test_candle_stream_buffers_closed_candles_and_reports_a_reconnection(fake_exchange: FakeBinance) -> None:
    """Closed candles arrive once the clock passes their close; a dropped stream reconnects and says so."""
    start = fake_exchange.now_ms
    fake_exchange.set_candles("BTC/USDT", "1h", candles([100.0 + i for i in range(10)], start=start))

    async def scenario() -> None:
        """Watch, advance, drop, advance again."""
        stream = CandleStream.open(
            ExchangeClient(api_url=fake_exchange.url, rate_limit=False), "BTC/USDT", "1h"
        )
        assert stream is not None
        stream.start()
        try:
            await _until(lambda: bool(fake_exchange.subscriptions))
            fake_exchange.advance(2 * HOUR)
            await _until(lambda: len(stream.closed) == 2)
            assert stream.healthy and stream.seen_ms == start + 2 * HOUR
            assert stream.take(start + HOUR) == [Candle(start + HOUR, 101.0, 111.0, 91.0, 106.0, 1.0)]
            assert not stream.reconnected()
            fake_exchange.drop_websockets()
            await _until(lambda: not stream.healthy)
            await _until(lambda: fake_exchange.ws_connections == 2 and len(fake_exchange.subscriptions) == 2)
            fake_exchange.advance(HOUR)
            await _until(lambda: bool(stream.closed))
            assert stream.healthy and stream.reconnected() and not stream.reconnected()
            assert [c.time for c in stream.take(0)] == [start + 2 * HOUR]
        finally:
            await stream.close()

    asyncio.run(scenario())
    assert fake_exchange.subscriptions == ["btcusdt@kline_1h", "btcusdt@kline_1h"]


def test_the_feed_asks_rest_only_at_start_after_a_silent_bar_and_after_a_reconnection(
    fake_exchange: FakeBinance,
) -> None:
    """A websocket feed: REST at start, then the stream alone until it is silent a bar or reconnects."""
    start = fake_exchange.now_ms
    fake_exchange.set_candles(
        "BTC/USDT", "1h", candles([100.0 + i for i in range(12)], start=start - 2 * HOUR)
    )
    exchange = ExchangeClient(api_url=fake_exchange.url, rate_limit=False)
    # The exchange's clock is the fake's (as if measured with no offset).
    clock = ExchangeClock(local=lambda: fake_exchange.now_ms)

    async def scenario() -> list[tuple[list[int], int]]:
        """Poll after each move of the fake's clock: (open times yielded, klines requests) per poll."""
        stream = CandleStream.open(exchange, "BTC/USDT", "1h")
        assert stream is not None
        stream.start()
        feed = MarketFeed("BTC/USDT", "1h", HOUR, start - 2 * HOUR, stream=stream)
        client = exchange.asynchronous()
        polls = []

        async def poll() -> None:
            """Poll once; note what came and how many REST requests it took."""
            before = len(fake_exchange.klines_requests())
            got = await feed.poll(exchange, client, clock)
            polls.append(
                ([(c.time - start) // HOUR for c in got], len(fake_exchange.klines_requests()) - before)
            )

        try:
            await _until(lambda: bool(fake_exchange.subscriptions))
            await poll()  # at start: REST
            for _ in range(2):  # pushed: the stream alone
                fake_exchange.advance(HOUR)
                await _until(lambda: bool(stream.closed))
                await poll()
            fake_exchange.mute = True
            fake_exchange.advance(HOUR)
            await poll()  # silent for a bar: nothing due yet
            fake_exchange.advance(HOUR)
            await poll()  # silent for two: REST fills
            fake_exchange.mute = False
            fake_exchange.advance(HOUR)
            await _until(lambda: bool(stream.closed))
            await poll()  # pushed again: the stream alone
            fake_exchange.drop_websockets()
            await _until(lambda: len(fake_exchange.subscriptions) == 2)
            fake_exchange.advance(HOUR)
            await _until(lambda: bool(stream.closed))
            await poll()  # after a reconnection: REST once
            fake_exchange.advance(HOUR)
            await _until(lambda: bool(stream.closed))
            await poll()
        finally:
            await stream.close()
            await client.close()
        return polls

    assert asyncio.run(scenario()) == [
        ([-2, -1], 1),
        ([0], 0),
        ([1], 0),
        ([], 0),
        ([2, 3], 1),
        ([4], 0),
        ([5], 1),
        ([6], 0),
    ]


@pytest.fixture
def market(shared_data: Path) -> Iterator[FakeBinance]:
    """The fake exchange serving the real BTC/USDT candles, its clock half-way into the bar before T0."""
    server = FakeBinance(data_dir=shared_data, now_ms=T0 - HOUR // 2).start()
    yield server
    server.stop()
    assert not server.unknown


def _paper(
    market: FakeBinance,
    tmp_path: Path,
    name: str,
    *flags: str,
    during: Callable[[int], None] = lambda i: None,
) -> Path:
    """Run a paper session over BARS bars (the fake's clock moved an hour at a time); its output folder.

    `during(i)` runs before the i-th move of the clock.
    """
    work = tmp_path / name
    work.mkdir()
    (work / "spec.strat").write_text(SPEC)
    db = f"sqlite:///{work / 'store.db'}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "run", "spec.strat", "--paper",
         "--api", "127.0.0.1:0", "--exchange-url", market.url,
         "--db", db, "--out", "out", "--poll", "50ms", *flags],
        cwd=work, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (_status(db)["deployments"] if (work / "store.db").exists() else []):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the paper session did not start"
            time.sleep(0.1)
        if "--ws" in flags:
            # Subscribed before the clock moves (else the first bars would come by REST only).
            while not market.subscriptions:
                assert time.monotonic() < deadline, "no websocket subscription"
                time.sleep(0.02)
        for i in range(BARS + 1):
            during(i)
            market.advance(HOUR)
            time.sleep(0.01)
        _wait_for_bar(db, T0 + BARS * HOUR, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return work / "out"


def _equity_times(out: Path) -> list[str]:
    """The time column of equity.csv."""
    with (out / "equity.csv").open() as f:
        return [row[0] for row in csv.reader(f)][1:]


def test_a_websocket_session_trades_like_the_polling_session(market: FakeBinance, tmp_path: Path) -> None:
    """Same candles by websocket or by REST: the same trades, orders and equity, byte for byte."""
    rest = _paper(market, tmp_path, "rest")
    market.now_ms = T0 - HOUR // 2
    before = len(market.klines_requests())
    ws = _paper(market, tmp_path, "ws", "--ws")
    assert market.subscriptions == ["btcusdt@kline_1h"]
    # The websocket brought the bars: REST was asked far less often than once a bar.
    assert len(market.klines_requests()) - before < BARS
    trades = (rest / "trades.csv").read_text()
    assert trades.count("\n") > 3  # the sessions traded
    for name in ("trades.csv", "orders.csv", "equity.csv"):
        assert (ws / name).read_text() == (rest / name).read_text(), name


def test_a_dropped_websocket_loses_no_bar(market: FakeBinance, tmp_path: Path) -> None:
    """Bars closing while the websocket is down come by REST: each bar once, in order."""
    dropped: list[int] = []  # how many klines requests the fake had seen at the first drop

    def resubscribed(connections: int) -> None:
        """Wait until the client has reconnected and subscribed again (`connections` in all)."""
        deadline = time.monotonic() + 10
        while len(market.subscriptions) < connections:
            assert time.monotonic() < deadline, "the websocket did not reconnect"
            time.sleep(0.01)

    def drop(i: int) -> None:
        """Drop the websocket before the 20th hour and keep it silent for 3 hours; drop it again at 30."""
        if i == 20:
            market.mute = True
            dropped.append(len(market.klines_requests()))
            market.drop_websockets()
        elif i == 23:
            resubscribed(2)
            market.mute = False
        elif i == 30:
            market.drop_websockets()
        elif i == 31:
            resubscribed(3)

    out = _paper(market, tmp_path, "ws", "--ws", during=drop)
    assert market.ws_connections == 3 and market.subscriptions == ["btcusdt@kline_1h"] * 3
    # The bars that closed during the silent hours (opening at T0 + 18h to T0 + 20h) came by REST.
    starts = {int(q["startTime"]) for q in market.klines_requests()[dropped[0] :]}
    assert starts & {T0 + h * HOUR for h in (18, 19, 20)}
    # One equity row per bar close, from the first bar's to the last one's: none missing, none twice.
    expected = [
        datetime.fromtimestamp((T0 + k * HOUR) / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for k in range(BARS + 1)
    ]
    assert _equity_times(out) == expected
    # Each drop is an event saying what happened and that REST fills the gap.
    events = [line for line in (out / "events.csv").read_text().splitlines() if ",stream," in line]
    assert len(events) == 2
    assert all(
        "BTC/USDT 1h websocket: 1 failure(s), the last " in e and "REST fills the gap" in e for e in events
    )
