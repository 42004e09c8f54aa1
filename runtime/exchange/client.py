"""One ccxt exchange with this project's options, retry policy and error mapping: the only ccxt import.

Every call goes through `ExchangeClient.call` (or `acall` on the asyncio client), which retries network
errors, 429 and 5xx answers with exponential backoff and maps ccxt's errors to `ExchangeUnavailable`
(gave up after every retry) and `ExchangeRejected` (the exchange refused; retrying cannot help). A client
that has never connected and cannot connect at all (connection refused, unknown host, no route: an
offline machine) gives up after `RetryPolicy.connect_attempts`, in about a second, instead of backing off
through every attempt; once a call has succeeded, such failures count as transient like any other.
"""

from __future__ import annotations

import asyncio
import errno
import re
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import ccxt
import ccxt.async_support as ccxt_async

from runtime.data.candles import DataError
from runtime.data.markets import MarketRules

# Result type of a retried exchange call.
T = TypeVar("T")


class ExchangeUnavailable(DataError):
    """The exchange could not be reached or kept failing after every retry."""


class ExchangeRejected(DataError):
    """The exchange answered with an error that retrying cannot fix (unknown symbol, bad request)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before giving up on the exchange."""

    attempts: int = 6  # calls per request before giving up (1 = no retry)
    # calls before giving up when no connection can be made at all and none ever was (see the module)
    connect_attempts: int = 2
    backoff_s: float = 0.5  # wait before the first retry, seconds; doubled after each further failure
    backoff_max_s: float = 30.0  # longest wait between retries, seconds
    timeout_ms: int = 10_000  # HTTP timeout of one call, ms

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (0-based)."""
        return float(min(self.backoff_s * 2**attempt, self.backoff_max_s))


class ExchangeClient:
    """The synchronous ccxt client of one exchange (public endpoints, no API key) and its retry policy."""

    def __init__(
        self,
        exchange_id: str = "binance",
        *,
        api_url: str | None = None,
        rate_limit: bool = True,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Create the client.

        Args:
            exchange_id: ccxt exchange id, e.g. "binance", "kraken".
            api_url: send every REST call to this base URL instead (a proxy or a local test server).
            rate_limit: let ccxt space calls by the exchange's published rate limit.
            retry: retry and timeout policy.
        """
        if exchange_id not in ccxt.exchanges:
            raise ExchangeRejected(
                f"unknown exchange {exchange_id!r}; ccxt knows e.g. binance, bybit, kraken, okx"
            )
        self.exchange_id = exchange_id  # ccxt exchange id
        self.api_url = api_url  # REST base URL override, or None for the exchange's own
        self.rate_limit = rate_limit  # whether ccxt throttles calls
        self.retry = retry or RetryPolicy()  # retry and timeout policy
        self.sync = self._configure(getattr(ccxt, exchange_id))  # synchronous ccxt client
        self.retries = 0  # failed calls that were retried so far (for reports and tests)
        self.connected = False  # whether a call has succeeded (the exchange is reachable from here)

    def asynchronous(self) -> Any:
        """A new asyncio ccxt client with the same options (the caller closes it)."""
        return self._configure(getattr(ccxt_async, self.exchange_id))

    def _configure(self, cls: Any) -> Any:
        """Instantiate a ccxt client class with this client's options and URL override."""
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

    def call(self, fn: Callable[[], T]) -> T:
        """Run one exchange call, retrying network errors, 429 and 5xx with exponential backoff."""
        for attempt in range(self.retry.attempts):
            try:
                result = fn()
                self.connected = True
                return result
            except ccxt.NetworkError as error:
                self._give_up_or_count(attempt, error)
                time.sleep(self.retry.delay(attempt))
            except ccxt.ExchangeError as error:
                raise ExchangeRejected(f"{self.exchange_id} refused the request: {error}") from error
        raise AssertionError("unreachable: the last failed attempt raises")

    async def acall(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Async twin of `call`: one awaited exchange call with the same retry policy."""
        for attempt in range(self.retry.attempts):
            try:
                result = await fn()
                self.connected = True
                return result
            except ccxt.NetworkError as error:
                self._give_up_or_count(attempt, error)
                await asyncio.sleep(self.retry.delay(attempt))
            except ccxt.ExchangeError as error:
                raise ExchangeRejected(f"{self.exchange_id} refused the request: {error}") from error
        raise AssertionError("unreachable: the last failed attempt raises")

    def _give_up_or_count(self, attempt: int, error: Exception) -> None:
        """Raise ExchangeUnavailable after the last attempt; otherwise count the retry.

        The last attempt comes early (`RetryPolicy.connect_attempts`) when no connection can be made
        and none ever was: waiting out the whole backoff would not make an offline machine online.
        """
        where = self.api_url or f"{self.exchange_id}'s API"
        cause = None if self.connected else _connection_failure(error)
        if cause is not None and attempt + 1 >= min(self.retry.connect_attempts, self.retry.attempts):
            raise ExchangeUnavailable(
                f"cannot connect to {where} ({cause}; tried {attempt + 1} times: {str(error)[:200]})"
            ) from error
        if attempt + 1 >= self.retry.attempts:
            raise ExchangeUnavailable(
                f"cannot reach {where} after {self.retry.attempts} attempts "
                f"({type(error).__name__}: {str(error)[:200]})"
            ) from error
        self.retries += 1

    def rules(self, symbol: str) -> MarketRules | None:
        """The market's trading rules from ccxt's market data (None when the exchange has no such market)."""
        markets = self.call(self.sync.load_markets)
        market = markets.get(symbol) if isinstance(markets, dict) else None
        return _rules_from_ccxt(self.exchange_id, symbol, market) if isinstance(market, dict) else None


# OS errors that mean no connection could be made at all (as opposed to one that broke or timed out).
_NO_CONNECTION = frozenset({errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH})


def _connection_failure(error: BaseException) -> str | None:
    """Why no connection could be made ("connection refused", an unknown host), or None for other errors.

    ccxt wraps the socket's error (through requests/urllib3 or aiohttp) as the cause of its NetworkError;
    the chain of causes is searched for a failed name lookup or a refused or unroutable connection.
    """
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, socket.gaierror) or (isinstance(link, OSError) and link.errno in _NO_CONNECTION):
            return link.strerror or type(link).__name__
        link = link.__cause__ or link.__context__
    return None


def _rules_from_ccxt(exchange: str, symbol: str, market: dict[str, object]) -> MarketRules:
    """Read a ccxt market structure (precision in TICK_SIZE mode, limits) into rules; absent values are 0."""

    def number(value: object) -> float:
        """A float from a possibly missing ccxt number."""
        return float(value) if isinstance(value, int | float | str) and value != "" else 0.0

    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    amount = limits.get("amount") or {} if isinstance(limits, dict) else {}
    cost = limits.get("cost") or {} if isinstance(limits, dict) else {}
    return MarketRules(
        exchange,
        symbol,
        amount_step=number(precision.get("amount") if isinstance(precision, dict) else None),
        min_qty=number(amount.get("min") if isinstance(amount, dict) else None),
        min_notional=number(cost.get("min") if isinstance(cost, dict) else None),
    )


def _rebase(urls: Any, base: str) -> Any:
    """Point every REST URL of a ccxt `urls['api']` tree at `base`, keeping each path."""
    if isinstance(urls, dict):
        return {key: _rebase(value, base) for key, value in urls.items()}
    match = re.match(r"^https?://[^/]+(.*)$", urls) if isinstance(urls, str) else None
    return base + match.group(1) if match else urls
