"""The exchange adapter for candles: the only module that imports ccxt.

`ExchangeFeed.fetch` downloads history page by page through ccxt's public OHLCV endpoint, retrying
network errors, 429 and 5xx answers with exponential backoff; `ExchangeFeed.stream` polls the same
endpoint through ccxt's asyncio client and yields each candle once it has closed. A candle whose period
has not ended by the feed's clock is never returned.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import ccxt
import ccxt.async_support as ccxt_async
import numpy as np

from dsl.units import timeframe_ms
from runtime.data.candles import Candle, Candles, ExchangeRejected, ExchangeUnavailable
from runtime.data.markets import MarketRules, rules_from_ccxt

# Result type of a retried exchange call.
T = TypeVar("T")
# Called after each page with (candles fetched so far, candles expected in the whole range).
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before giving up on the exchange."""

    attempts: int = 6  # calls per request before giving up (1 = no retry)
    backoff_s: float = 0.5  # wait before the first retry, seconds; doubled after each further failure
    backoff_max_s: float = 30.0  # longest wait between retries, seconds
    timeout_ms: int = 10_000  # HTTP timeout of one call, ms

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (0-based)."""
        return float(min(self.backoff_s * 2**attempt, self.backoff_max_s))


def _wall_clock_ms() -> int:
    """The current UTC time in ms."""
    return time.time_ns() // 1_000_000


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
        clock: Callable[[], int] = _wall_clock_ms,
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
        if exchange_id not in ccxt.exchanges:
            raise ValueError(f"unknown exchange {exchange_id!r}; ccxt knows e.g. binance, bybit, kraken, okx")
        self.exchange_id = exchange_id  # ccxt exchange id
        self.api_url = api_url  # REST base URL override, or None for the exchange's own
        self.rate_limit = rate_limit  # whether ccxt throttles calls
        self.retry = retry or RetryPolicy()  # retry and timeout policy
        self.page_limit = page_limit  # candles per request
        self.clock = clock  # current UTC time, ms
        self.client = self._configure(getattr(ccxt, exchange_id))  # synchronous ccxt client
        self.retries = 0  # failed calls that were retried so far (for reports and tests)

    def _configure(self, cls: Any) -> Any:
        """Instantiate a ccxt client class with this feed's options and URL override."""
        options: dict[str, Any] = {"fetchCurrencies": False, "fetchMargins": False}
        if self.exchange_id.startswith("binance"):
            # Spot only: otherwise load_markets also asks the futures endpoints for their markets.
            options["fetchMarkets"] = {"types": ["spot"]}
        client = cls(
            {"enableRateLimit": self.rate_limit, "timeout": self.retry.timeout_ms, "options": options}
        )
        if self.api_url is not None:
            client.urls["api"] = _rebase(client.urls["api"], self.api_url.rstrip("/"))
        return client

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
        self._call(self.client.load_markets)
        while since < end_ms:
            limit = int(min(self.page_limit, -(-(end_ms - since) // step)))
            page = self._call(partial(self.client.fetch_ohlcv, symbol, timeframe, since, limit))
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
        """The market's trading rules from ccxt's market data (None when the exchange has no such market)."""
        markets = self._call(self.client.load_markets)
        market = markets.get(symbol) if isinstance(markets, dict) else None
        return rules_from_ccxt(self.exchange_id, symbol, market) if isinstance(market, dict) else None

    def _call(self, fn: Callable[[], T]) -> T:
        """Run one exchange call, retrying network errors, 429 and 5xx with exponential backoff."""
        for attempt in range(self.retry.attempts):
            try:
                return fn()
            except ccxt.NetworkError as error:
                self._give_up_or_count(attempt, error)
                time.sleep(self.retry.delay(attempt))
            except ccxt.ExchangeError as error:
                raise ExchangeRejected(f"{self.exchange_id} refused the request: {error}") from error
        raise AssertionError("unreachable: the last failed attempt raises")

    def _give_up_or_count(self, attempt: int, error: Exception) -> None:
        """Raise ExchangeUnavailable after the last attempt; otherwise count the retry."""
        if attempt + 1 >= self.retry.attempts:
            where = self.api_url or f"{self.exchange_id}'s API"
            raise ExchangeUnavailable(
                f"cannot reach {where} after {self.retry.attempts} attempts "
                f"({type(error).__name__}: {str(error)[:200]})"
            ) from error
        self.retries += 1

    async def stream(
        self, symbol: str, timeframe: str, *, since_ms: int | None = None, poll_s: float = 5.0
    ) -> AsyncIterator[Candle]:
        """Yield each candle of (symbol, timeframe) once it has closed, forever, by REST polling.

        Starts with the candle opening at `since_ms` (default: the next candle to close). Polls at
        most every `poll_s` seconds and sleeps until the next close when nothing is due.
        """
        step = timeframe_ms(timeframe)
        next_open = since_ms if since_ms is not None else self.clock() // step * step
        client = self._configure(getattr(ccxt_async, self.exchange_id))
        try:
            await self._acall(client.load_markets)
            while True:
                if next_open + step <= self.clock():
                    page = await self._acall(partial(client.fetch_ohlcv, symbol, timeframe, next_open))
                    for row in page:
                        if row[0] >= next_open and row[0] + step <= self.clock():
                            yield Candle(int(row[0]), *(float(v) for v in row[1:6]))
                            next_open = int(row[0]) + step
                # Sleep until the next candle should have closed, bounded by the poll interval.
                wait_s = (next_open + step - self.clock()) / 1000
                await asyncio.sleep(min(max(wait_s, 0.0), poll_s) or poll_s / 10)
        finally:
            await client.close()

    async def _acall(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Async twin of `_call`: one awaited exchange call with the same retry policy."""
        for attempt in range(self.retry.attempts):
            try:
                return await fn()
            except ccxt.NetworkError as error:
                self._give_up_or_count(attempt, error)
                await asyncio.sleep(self.retry.delay(attempt))
            except ccxt.ExchangeError as error:
                raise ExchangeRejected(f"{self.exchange_id} refused the request: {error}") from error
        raise AssertionError("unreachable: the last failed attempt raises")


def _rebase(urls: Any, base: str) -> Any:
    """Point every REST URL of a ccxt `urls['api']` tree at `base`, keeping each path."""
    if isinstance(urls, dict):
        return {key: _rebase(value, base) for key, value in urls.items()}
    match = re.match(r"^https?://[^/]+(.*)$", urls) if isinstance(urls, str) else None
    return base + match.group(1) if match else urls
