"""Closed candles of live markets: one `MarketFeed` per (symbol, timeframe), polled over REST.

Every sleeve clock that reads a market shares its feed. A candle counts as closed when its close time is
at or before the exchange's clock (`ExchangeClock`): the local clock plus the offset `fetch_time` last
measured, and never earlier than the open of the newest candle the exchange has served (the forming
candle, which the exchange lists last, proves its clock has reached that open). The forming candle is
never yielded. Every call goes through `ExchangeClient.acall` (retries, error mapping).

With a websocket stream (`strat run --ws`), the closed candles come from the stream as they are pushed,
and REST fills the gaps: at start, after the stream failed or skipped a candle, and while it is silent
for longer than a bar period. Either way `MarketFeed.next_open` is the one cursor: each closed candle is
yielded once, in order, whichever path brought it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from runtime.data.candles import Candle
from runtime.data.times import wall_clock_ms
from runtime.errors import StratError
from runtime.exchange.client import ExchangeClient
from runtime.exchange.stream import CandleStream

# How often the clock offset is measured again, ms.
RESYNC_MS = 60_000


@dataclass
class ExchangeClock:
    """The exchange's clock as seen from here (UTC ms)."""

    offset_ms: int = 0  # exchange clock minus local clock at the last measurement, ms
    seen_ms: int = 0  # newest candle open time the exchange has served (its clock is at least that), ms
    synced_ms: int = 0  # local time of the last measurement, ms (0 = never)
    local: Callable[[], int] = field(default=wall_clock_ms)  # the local clock, UTC ms

    def now(self) -> int:
        """The exchange's current time, UTC ms."""
        return max(self.local() + self.offset_ms, self.seen_ms)

    async def sync(self, exchange: ExchangeClient, client: Any) -> None:
        """Measure the offset with the exchange's time endpoint (when it has one)."""
        if not client.has.get("fetchTime"):
            return
        before = self.local()
        server = int(await exchange.acall(client.fetch_time))
        after = self.local()
        # The server read its clock about half-way through the round trip.
        self.offset_ms = server - (before + after) // 2
        self.synced_ms = after

    def due(self) -> bool:
        """Whether the offset should be measured again."""
        return self.local() - self.synced_ms >= RESYNC_MS


@dataclass
class MarketFeed:
    """The closed candles of one market and timeframe, fetched from where the last one ended."""

    symbol: str  # ccxt symbol, e.g. BTC/USDT
    timeframe: str  # ccxt timeframe, e.g. 1m
    ms: int  # bar length, ms
    next_open: int  # open time of the next candle to yield, UTC ms
    last_new_ms: int = 0  # exchange time when the feed last yielded a candle, UTC ms (stale check)
    stale: bool = False  # whether the feed has gone two periods without a new closed candle
    stream: CandleStream | None = None  # the websocket candles (--ws), or None: REST polling only
    heard_ms: int = 0  # exchange time when the stream last pushed a candle update, UTC ms
    heard: int = 0  # the stream's update count at `heard_ms` (a change means it spoke again)
    filled: bool = False  # whether REST has been asked since the start (the stream's first gap filled)
    failures_told: int = 0  # stream failures already reported (see `stream_trouble`)

    async def poll(self, exchange: ExchangeClient, client: Any, clock: ExchangeClock) -> list[Candle]:
        """The candles that closed since the last poll (oldest first; empty when none did).

        Asks for at most 1000 candles from `next_open`; a longer gap is caught up over several polls.
        With a stream, its closed candles come first, and REST is asked only when a gap may be open.
        """
        got: list[Candle] = []
        if self.stream is not None:
            got, trusted = self._from_stream(clock)
            if trusted:
                return got
        try:
            page = await exchange.acall(
                lambda: client.fetch_ohlcv(self.symbol, self.timeframe, self.next_open)
            )
        except StratError:
            if got:
                return got  # the stream's candles are not lost: REST is asked again at the next poll
            raise
        self.filled = True
        if page:
            clock.seen_ms = max(clock.seen_ms, int(page[-1][0]))
        now = clock.now()
        closed = []
        for row in page:
            t = int(row[0])
            if t >= self.next_open and t + self.ms <= now:
                closed.append(Candle(t, *(float(v) for v in row[1:6])))
                self.next_open = t + self.ms
        if closed:
            self.last_new_ms = now
        return got + closed

    def _from_stream(self, clock: ExchangeClock) -> tuple[list[Candle], bool]:
        """The stream's closed candles from `next_open` on, and whether they can be trusted to be all.

        Not trusted (REST must be asked): before the first REST poll, when the stream failed since the
        last poll or is failing, when it skipped a candle, and when it has been silent for a bar period.
        """
        stream = self.stream
        assert stream is not None  # a websocket feed
        clock.seen_ms = max(clock.seen_ms, stream.seen_ms)
        now = clock.now()
        if stream.messages != self.heard:
            self.heard, self.heard_ms = stream.messages, now
        trusted = (
            self.filled and not stream.reconnected() and stream.healthy and now - self.heard_ms <= self.ms
        )
        got = []
        for candle in stream.take(self.next_open):
            if candle.time != self.next_open:
                trusted = False  # a candle was skipped: REST fills from here on
                break
            got.append(candle)
            self.next_open += self.ms
        if got:
            self.last_new_ms = now
        return got, trusted

    def stream_trouble(self) -> str | None:
        """What went wrong with the websocket since the last call (None: nothing new, or no stream)."""
        stream = self.stream
        if stream is None or stream.failures == self.failures_told:
            return None
        count = stream.failures - self.failures_told
        self.failures_told = stream.failures
        return f"{count} failure(s), the last {stream.error}; reconnecting, REST fills the gap"

    def check_stale(self, now: int) -> bool | None:
        """Update `stale`: True when the feed just went stale, False when it just recovered, else None.

        Stale means no new closed candle for two of its periods after the one that was due.
        """
        late = now - (self.next_open + self.ms) >= 2 * self.ms
        if late == self.stale:
            return None
        self.stale = late
        return late


async def wait_for_candles(
    feeds: Sequence[MarketFeed], stop: asyncio.Event, timeout_s: float, *others: asyncio.Event
) -> None:
    """Wait until `stop` or one of `others` is set, a stream has a new candle, or `timeout_s` passed."""
    waits = [asyncio.ensure_future(e.wait()) for e in (stop, *others)]
    waits += [asyncio.ensure_future(f.stream.arrived.wait()) for f in feeds if f.stream is not None]
    _, pending = await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
