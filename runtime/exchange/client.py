"""One ccxt exchange with this project's options, retry policy and error mapping.

Every call goes through `ExchangeClient.call` (or `acall` on the asyncio client), which retries network
errors, 429 and 5xx answers with exponential backoff (a rate-limit answer's Retry-After is waited out,
up to `RetryPolicy.retry_after_max_s`) and maps ccxt's errors to `ExchangeUnavailable` (gave up after
every retry) and `ExchangeRejected` (the exchange refused; retrying cannot help) or their finer kinds
(`AuthenticationFailed`, `InsufficientBalance`, `FilterRejected`). A write (`acall(..., write=...)`) is
retried only when it certainly did not execute (rate limited, no connection made); any other network
failure raises `OrderUncertain`. A client that has never connected and cannot connect at all (connection
refused, unknown host, no route: an offline machine) gives up after `RetryPolicy.connect_attempts`, in
about a second, instead of backing off through every attempt; once a call has succeeded, such failures
count as transient like any other. With API credentials, no message or log line of this module or of
ccxt's shows the key or the secret (they are scrubbed).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cached_property
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


class OrderUncertain(ExchangeUnavailable):
    """A write's outcome is unknown (timeout, 5xx, dropped connection): look it up before resending."""


class AuthenticationFailed(ExchangeRejected):
    """The exchange refused the API key or the signature (wrong key or secret, missing permission)."""


class InsufficientBalance(ExchangeRejected):
    """The account has not enough free funds for the order."""


class FilterRejected(ExchangeRejected):
    """The order breaks a market filter: lot size, minimum quantity or notional, price tick."""


# ccxt error classes mapped to the finer refusals, most specific first.
_REFUSALS: tuple[tuple[type[Exception], type[ExchangeRejected]], ...] = (
    (ccxt.AuthenticationError, AuthenticationFailed),
    (ccxt.InsufficientFunds, InsufficientBalance),
)
# Messages of filter refusals (Binance's "Filter failure: ...", and ccxt's own precision check).
_FILTER = re.compile(r"Filter failure|LOT_SIZE|PRICE_FILTER|NOTIONAL|minimum amount precision")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before giving up on the exchange."""

    attempts: int = 6  # calls per request before giving up (1 = no retry)
    # calls before giving up when no connection can be made at all and none ever was (see the module)
    connect_attempts: int = 2
    backoff_s: float = 0.5  # wait before the first retry, seconds; doubled after each further failure
    backoff_max_s: float = 30.0  # longest wait between retries, seconds
    timeout_ms: int = 10_000  # HTTP timeout of one call, ms
    # longest Retry-After of a rate-limit answer that is waited out, seconds; a longer one gives up
    retry_after_max_s: float = 120.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (0-based)."""
        return float(min(self.backoff_s * 2**attempt, self.backoff_max_s))


class ExchangeClient:
    """The ccxt clients of one exchange (sync and asyncio, with an optional API key) and its retry policy."""

    def __init__(
        self,
        exchange_id: str = "binance",
        *,
        api_url: str | None = None,
        rate_limit: bool = True,
        retry: RetryPolicy | None = None,
        api_key: str = "",
        secret: str = "",
        sandbox: bool = False,
    ) -> None:
        """Create the client.

        Args:
            exchange_id: ccxt exchange id, e.g. "binance", "kraken".
            api_url: send every REST call to this base URL instead (a proxy or a local test server).
            rate_limit: let ccxt space calls by the exchange's published rate limit.
            retry: retry and timeout policy.
            api_key: API key for private endpoints ("" for public data only).
            secret: the key's secret.
            sandbox: use the exchange's testnet (ccxt's sandbox mode; `api_url` still rewrites it).
        """
        if exchange_id not in ccxt.exchanges:
            raise ExchangeRejected(
                f"unknown exchange {exchange_id!r}; ccxt knows e.g. binance, bybit, kraken, okx"
            )
        self.exchange_id = exchange_id  # ccxt exchange id
        self.api_url = api_url  # REST base URL override, or None for the exchange's own
        self.rate_limit = rate_limit  # whether ccxt throttles calls
        self.retry = retry or RetryPolicy()  # retry and timeout policy
        self.sandbox = sandbox  # whether the exchange's testnet is used
        # ccxt's credential options ({} without a key); never shown (see _scrub)
        self._auth = {"apiKey": api_key, "secret": secret} if api_key or secret else {}
        self.retries = 0  # failed calls that were retried so far (for reports and tests)
        self.waited_s = 0.0  # seconds slept between retries so far (for reports and tests)
        self.connected = False  # whether a call has succeeded (the exchange is reachable from here)

    @cached_property
    def sync(self) -> Any:
        """The synchronous ccxt client, made on first use."""
        return self._configure(getattr(ccxt, self.exchange_id))

    def asynchronous(self) -> Any:
        """A new asyncio ccxt client with the same options (the caller closes it)."""
        return self._configure(getattr(ccxt_async, self.exchange_id))

    def streaming(self) -> Any:
        """A new ccxt.pro (websocket) client with the same options, or None when ccxt.pro lacks the exchange.

        The caller closes it. With `api_url`, the websocket URLs point at the same host (see `_rebase`).
        """
        # Imported on first use: only a websocket session needs ccxt.pro.
        import ccxt.pro as ccxt_pro

        cls = getattr(ccxt_pro, self.exchange_id, None) if self.exchange_id in ccxt_pro.exchanges else None
        return None if cls is None else self._configure(cls)

    def _configure(self, cls: Any) -> Any:
        """Instantiate a ccxt client class with this client's options and URL override."""
        options: dict[str, Any] = {"fetchCurrencies": False, "fetchMargins": False}
        if self.exchange_id.startswith("binance"):
            # Spot only: otherwise load_markets also asks the futures endpoints for their markets.
            options["fetchMarkets"] = {"types": ["spot"]}
            # Open orders of every symbol are asked for on purpose (reconciliation), not by mistake.
            options["warnOnFetchOpenOrdersWithoutSymbol"] = False
        client = cls(
            {
                "enableRateLimit": self.rate_limit,
                "timeout": self.retry.timeout_ms,
                "options": options,
                **self._auth,
            }
        )
        if self._auth:
            # ccxt logs request headers (the API key) at DEBUG: its lines are scrubbed first.
            client.logger = _ScrubbingLog(client.logger, self._scrub)
        # Sandbox replaces the URL tree wholesale, so it comes before the rewrite.
        if self.sandbox:
            if not client.urls.get("test"):
                raise ExchangeRejected(f"{self.exchange_id} has no sandbox (testnet) in ccxt")
            client.set_sandbox_mode(True)
        if self.api_url is not None:
            client.urls["api"] = _rebase(client.urls["api"], self.api_url.rstrip("/"))
        return client

    def _scrub(self, text: str) -> str:
        """Text with the API key, the secret and request signatures blanked out."""
        for value in self._auth.values():
            if value:
                text = text.replace(value, "***")
        return re.sub(r"signature=[0-9a-fA-F]+", "signature=***", text)

    def _clean(self, error: BaseException) -> None:
        """Scrub the messages of an error and of its causes in place (they may echo URLs and params)."""
        seen: set[int] = set()
        link: BaseException | None = error
        while link is not None and id(link) not in seen:
            seen.add(id(link))
            link.args = tuple(self._scrub(a) if isinstance(a, str) else a for a in link.args)
            link = link.__cause__ or link.__context__

    def _refusal(self, error: Exception) -> ExchangeRejected:
        """Our refusal error for a ccxt ExchangeError (its finer kind when known)."""
        text = str(error)
        kind = next((ours for theirs, ours in _REFUSALS if isinstance(error, theirs)), None)
        if kind is None:
            kind = FilterRejected if _FILTER.search(text) else ExchangeRejected
        return kind(f"{self.exchange_id} refused the request: {text}")

    def call(self, fn: Callable[[], T]) -> T:
        """Run one exchange call, retrying network errors, 429 and 5xx with exponential backoff."""
        for attempt in range(self.retry.attempts):
            try:
                result = fn()
                self.connected = True
                return result
            except ccxt.NetworkError as error:
                time.sleep(self._retry_wait(attempt, error, None, self.sync))
            except ccxt.ExchangeError as error:
                self._clean(error)
                raise self._refusal(error) from error
        raise AssertionError("unreachable: the last failed attempt raises")

    async def acall(
        self, fn: Callable[[], Awaitable[T]], *, write: str | None = None, client: Any = None
    ) -> T:
        """Async twin of `call`: one awaited exchange call with the same retry policy.

        Args:
            fn: the call.
            write: None for a read; for a write (an order), what it is, e.g. "market buy 0.1 BTC/USDT
                (client id x)": it is then retried only when it certainly did not execute, and any
                other network failure raises OrderUncertain naming it.
            client: the ccxt client `fn` calls, whose last answer's Retry-After header is honoured.
        """
        for attempt in range(self.retry.attempts):
            try:
                result = await fn()
                self.connected = True
                return result
            except ccxt.NetworkError as error:
                await asyncio.sleep(self._retry_wait(attempt, error, write, client))
            except ccxt.ExchangeError as error:
                self._clean(error)
                raise self._refusal(error) from error
        raise AssertionError("unreachable: the last failed attempt raises")

    def _retry_wait(self, attempt: int, error: Exception, write: str | None, client: Any) -> float:
        """Seconds to wait before retrying a failed call, or raise when it must not be retried.

        A rate-limit answer (429/418, ccxt's DDoSProtection) is waited out by its Retry-After header
        (giving up when that is longer than `retry_after_max_s`); it never executed, so writes retry
        too. A write whose request may have reached the exchange raises OrderUncertain.
        """
        self._clean(error)
        delay = self.retry.delay(attempt)
        if isinstance(error, ccxt.DDoSProtection | ccxt.RateLimitExceeded):
            retry_after = _retry_after(client)
            if retry_after > self.retry.retry_after_max_s:
                raise ExchangeUnavailable(
                    f"{self.exchange_id} rate-limits this client for {retry_after:g} s "
                    f"(more than the {self.retry.retry_after_max_s:g} s waited out): {str(error)[:200]}"
                ) from error
            delay = max(delay, retry_after)
        elif (
            write is not None
            and _connection_failure(error) is None
            and not isinstance(error, ccxt.InvalidNonce)
        ):
            raise OrderUncertain(
                f"{write}: outcome unknown ({type(error).__name__}: {str(error)[:200]}); "
                "look the order up by its client id before resending"
            ) from error
        self._give_up_or_count(attempt, error)
        self.waited_s += delay
        return delay

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


def _retry_after(client: Any) -> float:
    """Seconds asked for by the Retry-After header of the client's last answer (0 when absent).

    ccxt keeps the headers of the last answer on the client; with concurrent calls on one client another
    answer may have replaced them, in which case the plain backoff applies.
    """
    headers = getattr(client, "last_response_headers", None) or {}
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return 0.0


class _ScrubbingLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """ccxt's logger for a client with credentials: each line is formatted and scrubbed before logging."""

    def __init__(self, logger: logging.Logger, scrub: Callable[[str], str]) -> None:
        """Wrap ccxt's logger with the client's scrubbing function."""
        super().__init__(logger, {})
        self.scrub = scrub  # blanks the credentials out of a text

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        """Log msg % args, scrubbed, when the level is enabled."""
        if self.isEnabledFor(level):
            self.logger.log(level, self.scrub(str(msg) % args if args else str(msg)))


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
        tick_size=number(precision.get("price") if isinstance(precision, dict) else None),
    )


def _rebase(urls: Any, base: str) -> Any:
    """Point every URL of a ccxt `urls['api']` tree at `base`, keeping each path.

    A websocket URL goes to the same host over ws(s), under a folder named after the first label of its
    own host (wss://stream.binance.com:9443/ws -> ws://HOST/stream/ws): ccxt.pro tells Binance's spot
    streams from the futures ones by `/stream` in the URL.
    """
    if isinstance(urls, dict):
        return {key: _rebase(value, base) for key, value in urls.items()}
    match = re.match(r"^(https?|wss?)://([^/:]+)(?::\d+)?(.*)$", urls) if isinstance(urls, str) else None
    if match is None:
        return urls
    scheme, host, path = match.groups()
    if scheme.startswith("ws"):
        return f"{re.sub(r'^http', 'ws', base)}/{host.split('.')[0]}{path}"
    return base + path
