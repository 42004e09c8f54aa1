"""Closed candles pushed by an exchange's websocket (ccxt.pro `watch_ohlcv`), for the live feeds.

`CandleStream` keeps one ccxt.pro client watching one market and timeframe in a background task and
buffers each candle once it has closed: when the exchange marks it closed (Binance's kline `"x": true`) or
a candle with a newer open time arrives. A failed watch (dropped connection, exchange error) is retried
with a capped exponential backoff; meanwhile the stream is not `healthy`, and `reconnected()` tells the
reader once that candles may have been missed, so that it fills the gap by REST.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import ccxt

from runtime.data.candles import Candle
from runtime.exchange.client import ExchangeClient

# Wait before the first reconnection attempt, seconds (doubled after each further failure).
BACKOFF_S = 0.1
# Longest wait between two reconnection attempts, seconds.
BACKOFF_MAX_S = 10.0


class CandleStream:
    """The websocket candles of one (symbol, timeframe): closed ones buffered until taken."""

    def __init__(self, exchange: ExchangeClient, client: Any, symbol: str, timeframe: str) -> None:
        """Watch `symbol` `timeframe` with `client` (from `CandleStream.open`) once `start` is called."""
        self.exchange = exchange  # whose options and error scrubbing the client shares
        self.client = client  # the ccxt.pro client (owned: closed by `close`)
        self.symbol = symbol  # ccxt symbol, e.g. BTC/USDT
        self.timeframe = timeframe  # ccxt timeframe, e.g. 1m
        self.closed: dict[int, Candle] = {}  # closed candles not yet taken, by open time (UTC ms)
        self.forming: Candle | None = None  # the newest candle seen, not yet closed
        self.seen_ms = 0  # newest open time the exchange has pushed (its clock is at least that), UTC ms
        self.messages = 0  # candle updates received so far (to tell a silent stream)
        self.healthy = False  # whether the last watch succeeded (False before the first and after a failure)
        self.failures = 0  # failed watches so far (for reports and tests)
        self.error = ""  # the last failure, one line ("" when none)
        self.arrived = asyncio.Event()  # set when a closed candle is buffered; cleared by `take`
        self._marked: set[int] = set()  # open times the exchange marked closed (Binance's "x"), UTC ms
        self._outage = False  # whether a watch failed since `reconnected` was last asked
        self._task: asyncio.Task[None] | None = None  # the watching task, once started

    @classmethod
    def open(cls, exchange: ExchangeClient, symbol: str, timeframe: str) -> CandleStream | None:
        """A stream of `symbol` `timeframe`, or None when the exchange has no websocket candles in ccxt."""
        client = exchange.streaming()
        if client is None or not client.has.get("watchOHLCV"):
            return None
        stream = cls(exchange, client, symbol, timeframe)
        # Binance's kline events say whether the candle has closed; ccxt drops that flag, so it is read here.
        handle = getattr(client, "handle_ohlcv", None)
        if handle is not None:

            def marked(ws: Any, message: Any) -> Any:
                """Note a kline the exchange marks closed, then let ccxt handle the message."""
                kline = message.get("k") if isinstance(message, dict) else None
                if isinstance(kline, dict) and kline.get("x") is True and kline.get("i") == timeframe:
                    stream._marked.add(int(kline["t"]))
                return handle(ws, message)

            client.handle_ohlcv = marked
        return stream

    def start(self) -> None:
        """Start watching in a background task of the running event loop."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._watch())

    async def close(self) -> None:
        """Stop watching and close the client."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.client.close()

    def take(self, since: int) -> list[Candle]:
        """The buffered closed candles opening at or after `since`, oldest first (older ones are dropped)."""
        out = [self.closed[t] for t in sorted(self.closed) if t >= since]
        self.closed.clear()
        self.arrived.clear()
        return out

    def reconnected(self) -> bool:
        """Whether the stream failed (and so may have missed candles) since this was last asked."""
        outage, self._outage = self._outage, False
        return outage

    async def _watch(self) -> None:
        """Watch forever; on a failure wait (capped exponential backoff) and watch again."""
        attempt = 0
        while True:
            # A failure of any kind is waited out, never fatal: REST covers the meantime.
            try:
                rows = await self.client.watch_ohlcv(self.symbol, self.timeframe)
            except Exception as error:
                if isinstance(error, ccxt.BaseError):
                    self.exchange._clean(error)
                self.healthy, self._outage = False, True
                self.failures += 1
                self.error = f"{type(error).__name__}: {str(error)[:200]}"
                await asyncio.sleep(min(BACKOFF_S * 2**attempt, BACKOFF_MAX_S))
                attempt += 1
                continue
            attempt = 0
            self.healthy = True
            self._receive(rows)

    def _receive(self, rows: list[list[Any]]) -> None:
        """Book candle updates: a newer open closes the forming candle; a marked one closes itself."""
        for row in sorted(rows, key=lambda r: int(r[0])):
            candle = Candle(int(row[0]), *(float(v) for v in row[1:6]))
            self.messages += 1
            if self.forming is not None and candle.time > self.forming.time:
                self._close(self.forming)
            if self.forming is None or candle.time >= self.forming.time:
                self.forming = candle
            self.seen_ms = max(self.seen_ms, candle.time)
        # A candle the exchange marked closed needs no newer candle; marks of older candles are spent,
        # those of candles not received yet wait for them.
        for t in sorted(self._marked):
            if self.forming is not None and self.forming.time == t:
                self._close(self.forming)
                self.forming = None
            if t <= self.seen_ms:
                self._marked.discard(t)

    def _close(self, candle: Candle) -> None:
        """Buffer a closed candle and wake the reader."""
        self.closed[candle.time] = candle
        self.arrived.set()
