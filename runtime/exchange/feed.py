"""Closed candles from an exchange: history page by page (`fetch`) and live by REST polling (`stream`).

`ExchangeFeed.fetch` downloads history through ccxt's public OHLCV endpoint; `ExchangeFeed.stream` polls
the same endpoint through ccxt's asyncio client and yields each candle once it has closed. Every call
goes through `ExchangeClient`, which retries and maps errors. A candle whose period has not ended by the
feed's clock is never returned.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from functools import partial

import numpy as np

from dsl.units import timeframe_ms
from runtime.data.candles import Candle, Candles
from runtime.data.markets import MarketRules
from runtime.data.times import wall_clock_ms
from runtime.exchange.client import ExchangeClient, RetryPolicy

# Called after each page with (candles fetched so far, candles expected in the whole range).
Progress = Callable[[int, int], None]


class ExchangeFeed:
    """Public candle data of one ccxt exchange (no API key needed)."""

    def __init__(
        self,
        exchange_id: str = "binance",
        *,
        api_url: str | None = None,
        rate_limit: bool = True,
        retry: RetryPolicy | None = None,
        page_limit: int = 1000,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        """Create the feed.

        Args:
            exchange_id: ccxt exchange id, e.g. "binance", "kraken".
            api_url: send every REST call to this base URL instead (a proxy or a local test server).
            rate_limit: let ccxt space calls by the exchange's published rate limit.
            retry: retry and timeout policy.
            page_limit: candles asked for per request (Binance serves at most 1000).
            clock: current UTC time in ms; decides which candles have closed.
        """
        # The ccxt client every call goes through (retries, error mapping).
        self.exchange = ExchangeClient(exchange_id, api_url=api_url, rate_limit=rate_limit, retry=retry)
        self.exchange_id = exchange_id  # ccxt exchange id
        self.page_limit = page_limit  # candles per request
        self.clock = clock  # current UTC time, ms

    @property
    def retries(self) -> int:
        """Failed calls that were retried so far (for reports and tests)."""
        return self.exchange.retries

    def fetch(
        self, symbol: str, timeframe: str, start_ms: int, end_ms: int, progress: Progress | None = None
    ) -> Candles:
        """Download the closed candles with start_ms <= open time < end_ms, page by page.

        Raises ExchangeUnavailable when the exchange cannot be reached after all retries and
        ExchangeRejected when it refuses the request (e.g. an unknown symbol).
        """
        step = timeframe_ms(timeframe)
        since = -(-start_ms // step) * step
        expected = max(0, -(-(end_ms - since) // step))
        pages: list[np.ndarray] = []
        fetched = 0
        client = self.exchange.sync
        self.exchange.call(client.load_markets)
        while since < end_ms:
            limit = int(min(self.page_limit, -(-(end_ms - since) // step)))
            page = self.exchange.call(partial(client.fetch_ohlcv, symbol, timeframe, since, limit))
            rows = np.array([row[:6] for row in page], dtype=np.float64).reshape(-1, 6)
            rows = rows[(rows[:, 0] >= since) & (rows[:, 0] < end_ms)]
            if not len(rows):
                break
            # Only candles whose whole period has passed; an open one ends the download.
            closed = rows[rows[:, 0] + step <= self.clock()]
            pages.append(closed)
            fetched += len(closed)
            if progress is not None:
                progress(fetched, expected)
            if len(closed) < len(rows):
                break
            since = int(rows[-1, 0]) + step
        table = np.concatenate(pages) if pages else np.zeros((0, 6))
        return Candles.from_arrays(
            self.exchange_id, symbol, timeframe, table[:, 0].astype(np.int64), list(table[:, 1:].T)
        )

    def rules(self, symbol: str) -> MarketRules | None:
        """The market's trading rules (None when the exchange has no such market)."""
        return self.exchange.rules(symbol)

    async def stream(
        self, symbol: str, timeframe: str, *, since_ms: int | None = None, poll_s: float = 5.0
    ) -> AsyncIterator[Candle]:
        """Yield each candle of (symbol, timeframe) once it has closed, forever, by REST polling.

        Starts with the candle opening at `since_ms` (default: the next candle to close). Polls at
        most every `poll_s` seconds and sleeps until the next close when nothing is due.
        """
        step = timeframe_ms(timeframe)
        next_open = since_ms if since_ms is not None else self.clock() // step * step
        client = self.exchange.asynchronous()
        try:
            await self.exchange.acall(client.load_markets)
            while True:
                if next_open + step <= self.clock():
                    fetch = partial(client.fetch_ohlcv, symbol, timeframe, next_open)
                    page = await self.exchange.acall(fetch)
                    for row in page:
                        if row[0] >= next_open and row[0] + step <= self.clock():
                            yield Candle(int(row[0]), *(float(v) for v in row[1:6]))
                            next_open = int(row[0]) + step
                # Sleep until the next candle should have closed, bounded by the poll interval.
                wait_s = (next_open + step - self.clock()) / 1000
                await asyncio.sleep(min(max(wait_s, 0.0), poll_s) or poll_s / 10)
        finally:
            await client.close()
