"""The trading half of the exchange adapter: orders, fills and balances of one account, through ccxt.

`TradingClient` wraps one asyncio ccxt client with API credentials (`ExchangeClient` sets it up: options,
sandbox, URL rewrite, retries, error mapping, scrubbing of the credentials). Orders carry the caller's
client order id; a market order is never resent after an uncertain outcome (`OrderUncertain`): the caller
looks it up by client id first (`order_by_client_id`), because Binance refuses a duplicate client id only
while the first order is open, so a blind retry of a filled market order trades twice. Refusals that
retrying cannot fix (`InsufficientBalance`, `FilterRejected`, `AuthenticationFailed`, `ExchangeRejected`)
are raised at once; reads are retried like every other exchange call.

Credentials come from `load_credentials` (environment, then `.strat/secrets.toml`); `Credentials` never
shows its key or secret, only a fingerprint of the key.
"""

from __future__ import annotations

import hashlib
import math
import os
import tomllib
from dataclasses import dataclass, field, replace
from decimal import ROUND_FLOOR, Decimal
from functools import partial
from pathlib import Path
from typing import Any

import ccxt

from runtime.data.markets import MarketRules
from runtime.data.times import wall_clock_ms
from runtime.errors import StratError
from runtime.exchange.client import (
    AuthenticationFailed,
    ExchangeClient,
    ExchangeRejected,
    ExchangeUnavailable,
    FilterRejected,
    InsufficientBalance,
    OrderUncertain,
    RetryPolicy,
    _rules_from_ccxt,
)

__all__ = [
    "AuthenticationFailed",
    "Balance",
    "Credentials",
    "CredentialsError",
    "ExchangeOrder",
    "ExchangeRejected",
    "ExchangeTrade",
    "ExchangeUnavailable",
    "FilterRejected",
    "InsufficientBalance",
    "OrderUncertain",
    "TradingClient",
    "load_credentials",
]

DAY_MS = 86_400_000  # widest time window of Binance's account-trades endpoint, ms
TRADES_PAGE = 1000  # account trades asked for per request (Binance's maximum)


class CredentialsError(StratError):
    """The credentials file or environment is unusable (the message names the file, never a value)."""


@dataclass(frozen=True)
class Credentials:
    """An API key and its secret; repr and str show only a fingerprint of the key."""

    api_key: str = field(repr=False)  # the exchange API key
    secret: str = field(repr=False)  # its HMAC secret

    @property
    def account(self) -> str:
        """Short non-secret fingerprint of the key, e.g. "sha256:ab12cd34" (identifies the account)."""
        return "sha256:" + hashlib.sha256(self.api_key.encode()).hexdigest()[:8]

    def __repr__(self) -> str:
        """Only the key's fingerprint: never the key or the secret."""
        return f"Credentials(account={self.account})"

    __str__ = __repr__


@dataclass(frozen=True)
class ExchangeTrade:
    """One fill of one of the account's orders, as the exchange reports it."""

    trade_id: str  # exchange trade id
    order_id: str  # exchange order id
    client_id: str  # the order's client order id ("" when the exchange did not say)
    symbol: str  # market symbol, "BTC/USDT"
    side: str  # "buy" or "sell"
    qty: float  # filled quantity, base units
    price: float  # fill price, quote per base
    fee: float  # fee charged, fee_asset units
    fee_asset: str  # asset the fee was charged in ("" when none)
    time_ms: int  # fill time, UTC ms (exchange clock)


@dataclass(frozen=True)
class ExchangeOrder:
    """One order of the account and its fills so far."""

    client_id: str  # client order id
    order_id: str  # exchange order id
    symbol: str  # market symbol, "BTC/USDT"
    side: str  # "buy" or "sell"
    type: str  # "market" or "limit"
    status: str  # "open", "closed", "canceled", "rejected" or "expired"
    amount: float  # ordered quantity, base units
    filled: float  # filled quantity, base units
    average: float  # average fill price, quote per base (nan when nothing filled)
    fee: float  # total fee, fee_asset units (fees in another asset are in `trades`)
    fee_asset: str  # asset of `fee` ("" when no fee)
    trades: tuple[ExchangeTrade, ...]  # its fills (empty when the exchange did not list them)
    time_ms: int  # creation time, UTC ms (exchange clock)


@dataclass(frozen=True)
class Balance:
    """One asset of the account."""

    asset: str  # asset code, "USDT"
    free: float  # available, asset units
    locked: float  # held by open orders, asset units


class TradingClient:
    """Orders, fills and balances of one exchange account through one asyncio ccxt client."""

    def __init__(
        self,
        exchange_id: str,
        credentials: Credentials,
        *,
        api_url: str | None = None,
        sandbox: bool = False,
        retry: RetryPolicy | None = None,
        rate_limit: bool = True,
    ) -> None:
        """Create the client (no request is made before `start`).

        Args:
            exchange_id: ccxt exchange id, e.g. "binance".
            credentials: the account's API key and secret.
            api_url: send every REST call to this base URL instead (a testnet mirror or a local server).
            sandbox: trade on the exchange's testnet (ccxt's sandbox mode).
            retry: retry and timeout policy.
            rate_limit: let ccxt space calls by the exchange's published rate limit.
        """
        self.credentials = credentials  # the account's key and secret (shown only as a fingerprint)
        # options, retries, error mapping and scrubbing of the credentials
        self.exchange = ExchangeClient(
            exchange_id,
            api_url=api_url,
            rate_limit=rate_limit,
            retry=retry,
            api_key=credentials.api_key,
            secret=credentials.secret,
            sandbox=sandbox,
        )
        self.client: Any = self.exchange.asynchronous()  # the asyncio ccxt client
        self.clock_offset_ms = 0  # exchange clock minus local clock, ms (set by server_time)
        self._client_ids: dict[str, str] = {}  # exchange order id -> client order id, as learnt
        self.trades_page = TRADES_PAGE  # account trades asked for per request

    async def start(self) -> None:
        """Load the (spot) markets and sync the clock offset."""
        await self._read(self.client.load_markets)
        await self.server_time()

    async def close(self) -> None:
        """Close the HTTP session."""
        await self.client.close()

    async def server_time(self) -> int:
        """The exchange clock, ms; updates `clock_offset_ms` and the timestamps of signed requests."""
        before = wall_clock_ms()
        server = int(await self._read(self.client.fetch_time))
        self.clock_offset_ms = server - (before + wall_clock_ms()) // 2
        # ccxt signs with local time minus this difference: signed requests then follow the exchange clock.
        self.client.options["timeDifference"] = -self.clock_offset_ms
        return server

    def rules(self, symbol: str) -> MarketRules:
        """The market's trading rules (lot step, minimum quantity and notional, tick size)."""
        market = (self.client.markets or {}).get(symbol)
        if not isinstance(market, dict):
            raise ExchangeRejected(f"{self.exchange.exchange_id} has no spot market {symbol!r}")
        return _rules_from_ccxt(self.exchange.exchange_id, symbol, market)

    def round_qty(self, symbol: str, qty: float) -> float:
        """The quantity rounded down to the lot step; 0.0 when that is under the minimum quantity."""
        rules = self.rules(symbol)
        exact = Decimal(repr(qty))
        if rules.amount_step > 0:
            step = Decimal(repr(rules.amount_step))
            exact = (exact / step).to_integral_value(ROUND_FLOOR) * step
        rounded = float(exact)
        return rounded if rounded > 0 and rounded >= rules.min_qty else 0.0

    async def place_market(self, symbol: str, side: str, qty: float, client_id: str) -> ExchangeOrder:
        """Send a market order with this client id and return it with its fills.

        qty should already be rounded with `round_qty` (ccxt truncates it to the lot step silently).

        Raises OrderUncertain when it may or may not have executed (never resent here),
        InsufficientBalance, FilterRejected, AuthenticationFailed or ExchangeRejected when refused.
        Rate-limit answers and connections that could not be made are retried.
        """
        params = {"newClientOrderId": client_id, "newOrderRespType": "FULL"}
        create = partial(self.client.create_order, symbol, "market", side, qty, None, params)
        what = f"market {side} {qty:g} {symbol} (client id {client_id})"
        raw = await self.exchange.acall(create, write=what, client=self.client)
        return self._order(raw, client_id)

    async def order_by_client_id(self, symbol: str, client_id: str) -> ExchangeOrder | None:
        """The order with this client id (the latest one) and its fills; None when the exchange has none."""

        async def lookup() -> Any:
            """fetch_order by client id; None for an unknown order."""
            try:
                return await self.client.fetch_order(None, symbol, {"origClientOrderId": client_id})
            except ccxt.OrderNotFound:
                return None

        raw = await self._read(lookup)
        if raw is None:
            return None
        order = self._order(raw, client_id)
        if order.filled > 0 and not order.trades:
            trades = await self._read(
                partial(self.client.fetch_my_trades, symbol, None, None, {"orderId": order.order_id})
            )
            order = self._with_trades(order, tuple(self._trade(t, order) for t in trades))
        return order

    async def open_orders(self, symbol: str | None = None) -> list[ExchangeOrder]:
        """The account's open orders (of one symbol, or of all)."""
        raw = await self._read(partial(self.client.fetch_open_orders, symbol))
        return [self._order(o) for o in raw]

    async def my_trades(self, symbol: str, since_ms: int) -> list[ExchangeTrade]:
        """Every fill of the symbol at or after since_ms, oldest first, with its order's client id.

        Binance serves time windows of at most 24 h: the windows are walked forward from since_ms to the
        exchange's now until one holds a fill, then everything after that fill is paged by trade id (an
        empty day costs one request: pass a recent since_ms).
        """
        now = await self.server_time()
        raw: list[dict[str, Any]] = []
        start = since_ms
        while start <= now and not raw:
            window = {"endTime": start + DAY_MS - 1}
            raw = await self._read(
                partial(self.client.fetch_my_trades, symbol, start, self.trades_page, window)
            )
            start += DAY_MS
        page = raw
        while page:
            after = {"fromId": int(page[-1]["id"]) + 1}
            page = await self._read(
                partial(self.client.fetch_my_trades, symbol, None, self.trades_page, after)
            )
            raw += page
            page = page if len(page) == self.trades_page else []
        # Binance's trade rows do not name the client id: learn it from each order not seen yet.
        for order_id in dict.fromkeys(
            str(t["order"]) for t in raw if str(t["order"]) not in self._client_ids
        ):
            found = await self._read(partial(self.client.fetch_order, order_id, symbol))
            self._client_ids[order_id] = str(found.get("clientOrderId") or "")
        return [self._trade(t) for t in raw]

    async def balances(self) -> list[Balance]:
        """The account's non-zero balances, by asset."""
        raw = await self._read(self.client.fetch_balance)
        assets = raw.get("total") or {}
        found = [Balance(a, _float(raw[a].get("free")), _float(raw[a].get("used"))) for a in sorted(assets)]
        return [b for b in found if b.free or b.locked]

    async def cancel(self, symbol: str, client_id: str) -> ExchangeOrder | None:
        """Cancel the open order with this client id; None when it is not open (unknown, filled, canceled).

        Cancelling is retried like a read: a repeated cancel of a canceled order is harmless (None).
        """

        async def cancel() -> Any:
            """cancel_order by client id; None when the exchange has no such open order."""
            try:
                return await self.client.cancel_order(None, symbol, {"origClientOrderId": client_id})
            except ccxt.OrderNotFound:
                return None

        raw = await self._read(cancel)
        return None if raw is None else self._order(raw, client_id)

    async def _read(self, fn: Any) -> Any:
        """One retried read through the exchange client (Retry-After honoured)."""
        return await self.exchange.acall(fn, client=self.client)

    def _order(self, raw: dict[str, Any], client_id: str | None = None) -> ExchangeOrder:
        """An ExchangeOrder from a ccxt order (client_id: the one it was placed or looked up with)."""
        order_id = str(raw["id"])
        # A cancel's answer carries the cancel request's own id; the order's is origClientOrderId.
        info = raw.get("info") or {}
        cid = client_id or str(info.get("origClientOrderId") or raw.get("clientOrderId") or "")
        self._client_ids[order_id] = cid
        filled = _float(raw.get("filled"))
        base = ExchangeOrder(
            client_id=cid,
            order_id=order_id,
            symbol=str(raw["symbol"]),
            side=str(raw["side"]),
            type=str(raw["type"]),
            status=str(raw["status"]),
            amount=_float(raw.get("amount")),
            filled=filled,
            average=_float(raw.get("average")) if filled > 0 else math.nan,
            fee=0.0,
            fee_asset="",
            trades=(),
            time_ms=int(raw.get("timestamp") or 0),
        )
        return self._with_trades(base, tuple(self._trade(t, base) for t in raw.get("trades") or ()))

    @staticmethod
    def _with_trades(order: ExchangeOrder, trades: tuple[ExchangeTrade, ...]) -> ExchangeOrder:
        """The order with these fills and their total fee (in the first fill's fee asset)."""
        asset = next((t.fee_asset for t in trades if t.fee_asset), "")
        fee = sum(t.fee for t in trades if t.fee_asset == asset)
        return replace(order, trades=trades, fee=fee, fee_asset=asset)

    def _trade(self, raw: dict[str, Any], order: ExchangeOrder | None = None) -> ExchangeTrade:
        """An ExchangeTrade from a ccxt trade; the order fills in what an order's fill list omits."""
        fee = raw.get("fee") or {}
        order_id = str(raw.get("order") or (order.order_id if order else ""))
        return ExchangeTrade(
            trade_id=str(raw["id"]),
            order_id=order_id,
            client_id=order.client_id if order else self._client_ids.get(order_id, ""),
            symbol=str(raw.get("symbol") or (order.symbol if order else "")),
            side=str(raw.get("side") or (order.side if order else "")),
            qty=_float(raw.get("amount")),
            price=_float(raw.get("price")),
            fee=_float(fee.get("cost")),
            fee_asset=str(fee.get("currency") or ""),
            time_ms=int(raw.get("timestamp") or (order.time_ms if order else 0)),
        )


def _float(value: object) -> float:
    """A float from a possibly missing ccxt number (0.0 when absent)."""
    return float(value) if isinstance(value, int | float | str) and value != "" else 0.0


def load_credentials(exchange_id: str, root: Path) -> Credentials | None:
    """The exchange's credentials: STRAT_<EXCHANGE>_API_KEY/_API_SECRET, else root/.strat/secrets.toml.

    The file holds a table per exchange: `[binance]` with `api_key` and `api_secret`. None when neither
    place has them; CredentialsError (naming the file or variable, never a value) when half are given
    or the file is malformed.
    """
    prefix = f"STRAT_{exchange_id.upper()}_API_"
    key, secret = os.environ.get(prefix + "KEY"), os.environ.get(prefix + "SECRET")
    if key or secret:
        if not (key and secret):
            unset = prefix + ("SECRET" if key else "KEY")
            raise CredentialsError(f"{unset} is not set (both {prefix}KEY and {prefix}SECRET are needed)")
        return Credentials(key, secret)
    path = root / ".strat" / "secrets.toml"
    if not path.exists():
        return None
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get(exchange_id)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        # tomllib's message gives a line and column, not the text.
        raise CredentialsError(f"{path}: not valid TOML ({error})") from None
    if table is None:
        return None
    values = table if isinstance(table, dict) else {}
    missing = [
        name
        for name in ("api_key", "api_secret")
        if not isinstance(values.get(name), str) or not values[name]
    ]
    if missing:
        raise CredentialsError(f"{path}: [{exchange_id}] needs string values for {' and '.join(missing)}")
    return Credentials(values["api_key"], values["api_secret"])
