"""A fake of Binance's spot REST API on 127.0.0.1, for the real ccxt client (sync and async) to talk to.

Public: `GET /api/v3/time`, `exchangeInfo` (PRICE_FILTER, LOT_SIZE and NOTIONAL per market, configurable
with `market()`) and `klines` (from the real candle CSVs and from arrays given to `set_candles`, any
interval including "1s"; only candles opened by the fake's clock `now_ms` exist, the forming one served
last with its whole row). Signed (HMAC-SHA256 of the query or form body, `X-MBX-APIKEY`, exactly like
Binance): `account`, `order` (POST MARKET/LIMIT, GET and DELETE by orderId or origClientOrderId),
`openOrders`, `myTrades`.

Semantics: a MARKET order fills at once at the open of the symbol's forming candle (finest interval
held), so a live fill equals a backtest's "next open" fill; a LIMIT order that is not marketable rests
(its funds locked) and fills at its price once a later candle crosses it. Commission is `commission` of
the traded value, charged in the quote asset (`fee_asset="quote"`) or in the asset received
(`"received"`, as Binance does without BNB). Balances move with every fill; refusals carry Binance's codes
and messages (-2010 insufficient balance / duplicate open client id, -1013 filter failures, -2011/-2013
unknown order, -1022/-2015 bad signature / key).

Faults: `inject("POST /api/v3/order", "lost")` queues faults per route; `chaos(rate, seed, kinds)` draws
them at random. Kinds: "timeout" (answer after `timeout_s`, not executed), "timeout_exec" (executed, then
late), "429"/"418" (Retry-After header, -1003), "500"/"503" (not executed), "lost" (executed, then 503
-1007 "execution status unknown"), "502_exec" (executed, then an HTML 502), "drop_exec" (executed, then
the connection is dropped), "partial" (a market order filled in several fills at one price).

Websocket (ccxt.pro): `GET /stream/ws/<n>` (where `_rebase` points Binance's spot stream URL) answers
SUBSCRIBE/UNSUBSCRIBE and, for each subscribed `<pair>@kline_<interval>` stream, pushes Binance's kline
events whenever the clock moves: one `"x": true` event per candle that closed, then the forming candle
with `"x": false`. `drop_websockets()` closes every connection; `mute` stops the pushes (a silent stream).

Everything is inspectable from the test thread (`orders`, `trades`, `balances`, `requests`, `unknown`);
the controls (`now_ms`, `advance`, `set_candles`, `market`, `deposit`, `inject`, `chaos`) are thread-safe.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
import threading
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np
import pandas as pd
from aiohttp import web
from local_server import LocalServer

# 2024-01-01 00:00 UTC in ms: where the ETH/SOL/XRP files start.
JAN_1_2024 = 1_704_067_200_000
HOUR = 3_600_000  # one hour, ms
DAY = 24 * HOUR  # one day, ms: the widest startTime..endTime window of myTrades

# The CSV columns, as loaded once per file and shared by every fake instance.
_CACHE: dict[Path, np.ndarray] = {}
# Milliseconds per interval unit of a kline interval ("1s", "5m", "1h", "1d", "1w").
_UNIT_MS = {"s": 1000, "m": 60_000, "h": HOUR, "d": DAY, "w": 7 * DAY}
# Quote assets recognised when splitting a Binance pair id such as "BTCUSDT".
_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "EUR", "BTC", "ETH", "BNB")
# Fault kinds that execute the request before failing (the others fail before executing).
EXECUTING = frozenset({"timeout_exec", "lost", "502_exec", "drop_exec", "partial"})
EIGHT = Decimal("0.00000001")  # Binance's 8-decimal resolution of amounts and commissions


def _load(path: Path) -> np.ndarray:
    """The rows of a candle CSV as an (n, 6) float64 array, cached."""
    if path not in _CACHE:
        _CACHE[path] = pd.read_csv(path).to_numpy(np.float64)
    return _CACHE[path]


def interval_ms(interval: str) -> int:
    """Milliseconds of a Binance kline interval such as "1s", "15m", "4h"."""
    return int(interval[:-1]) * _UNIT_MS[interval[-1]]


def split_pair(symbol: str) -> tuple[str, str]:
    """(base, quote) of "BTC/USDT" or of a Binance pair id "BTCUSDT"."""
    if "/" in symbol:
        base, quote = symbol.split("/")
        return base, quote
    quote = next(q for q in _QUOTES if symbol.endswith(q) and len(symbol) > len(q))
    return symbol[: -len(quote)], quote


def _num(value: Decimal) -> str:
    """A decimal as Binance prints it: 8 decimals."""
    return f"{value.quantize(EIGHT):f}"


def _dec(value: float | str | Decimal) -> Decimal:
    """A Decimal from a price, quantity or float (through its shortest repr, so 0.1 stays 0.1)."""
    return (
        value if isinstance(value, Decimal) else Decimal(repr(value) if isinstance(value, float) else value)
    )


class BinanceError(Exception):
    """A refusal answered as Binance's error JSON."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status = status  # HTTP status
        self.code = code  # Binance error code, e.g. -2010
        self.msg = msg  # Binance error message


@dataclass
class Request:
    """One request the fake received."""

    path: str  # URL path, e.g. /api/v3/klines
    query: dict[str, str]  # query parameters
    method: str = "GET"  # HTTP method
    form: dict[str, str] = field(default_factory=dict)  # form-encoded body parameters (signed POSTs)

    @property
    def route(self) -> str:
        """The route, "METHOD /path": the key of fault queues."""
        return f"{self.method} {self.path}"


@dataclass
class Market:
    """One spot market of the fake and its filters (Decimal: exact like the exchange's)."""

    pair: str  # Binance pair id, "BTCUSDT"
    base: str  # base asset, "BTC"
    quote: str  # quote asset, "USDT"
    tick: Decimal = Decimal("0.01")  # PRICE_FILTER tickSize, quote units
    step: Decimal = Decimal("0.00001")  # LOT_SIZE stepSize, base units
    min_qty: Decimal = Decimal("0.00001")  # LOT_SIZE minQty, base units
    max_qty: Decimal = Decimal("9000")  # LOT_SIZE maxQty, base units
    min_notional: Decimal = Decimal("5")  # NOTIONAL minNotional, quote units


@dataclass
class Balance:
    """One asset of the fake account."""

    free: Decimal = Decimal(0)  # available, asset units
    locked: Decimal = Decimal(0)  # held by open orders, asset units


@dataclass
class Trade:
    """One fill the fake executed."""

    trade_id: int  # Binance trade id
    order_id: int  # the order it belongs to
    pair: str  # Binance pair id
    side: str  # "BUY" or "SELL"
    qty: Decimal  # base units
    price: Decimal  # quote per base
    commission: Decimal  # fee charged, commission_asset units
    commission_asset: str  # asset the fee was charged in
    time_ms: int  # fill time, UTC ms (the fake's clock)
    maker: bool  # whether the order was resting on the book


@dataclass
class Order:
    """One order the fake accepted."""

    order_id: int  # Binance order id
    client_id: str  # clientOrderId
    pair: str  # Binance pair id
    side: str  # "BUY" or "SELL"
    type: str  # "MARKET" or "LIMIT"
    qty: Decimal  # ordered quantity, base units
    price: Decimal  # limit price (0 for a market order), quote per base
    time_ms: int  # creation time, UTC ms
    status: str = "NEW"  # NEW, FILLED, CANCELED
    update_ms: int = 0  # last change, UTC ms
    fills: list[Trade] = field(default_factory=list)  # its fills, in order

    @property
    def filled(self) -> Decimal:
        """Executed quantity, base units."""
        return sum((t.qty for t in self.fills), Decimal(0))

    @property
    def quote_filled(self) -> Decimal:
        """Executed value (cummulativeQuoteQty), quote units."""
        return sum((t.qty * t.price for t in self.fills), Decimal(0))

    @property
    def open(self) -> bool:
        """Whether the order is still on the book."""
        return self.status in ("NEW", "PARTIALLY_FILLED")


@dataclass
class FakeBinance(LocalServer):
    """The fake server; `start()` runs it in a daemon thread, `stop()` ends it."""

    data_dir: Path | None = None  # folder of SYMBOL-TF.csv files (the real Binance candles), optional
    now_ms: int = 0  # the fake exchange's current time, UTC ms; candles opening later do not exist yet
    timeout_s: float = 1.0  # how long a "timeout" answer takes, seconds
    holes: list[tuple[int, int]] = field(default_factory=list)  # [start, end) ms ranges absent from data
    api_key: str = "fake-key"  # the only API key accepted
    secret: str = "fake-secret"  # the HMAC secret of that key
    commission: Decimal = Decimal("0.001")  # fee rate of every fill (0.1 %)
    fee_asset: str = "quote"  # "quote": fees in the quote asset; "received": in the asset bought
    retry_after_s: int = 1  # Retry-After of "429"/"418" answers, seconds
    requests: list[Request] = field(default_factory=list)  # every request received, in order
    unknown: list[str] = field(default_factory=list)  # "METHOD /path" requested that the fake does not serve
    orders: list[Order] = field(default_factory=list)  # every order accepted, in order
    trades: list[Trade] = field(default_factory=list)  # every fill, in order
    balances: dict[str, Balance] = field(default_factory=dict)  # the account, by asset
    markets: dict[str, Market] = field(default_factory=dict)  # configured markets by pair id
    port: int = 0  # TCP port once started
    mute: bool = False  # True: the websocket streams push nothing (a silent stream)
    subscriptions: list[str] = field(default_factory=list)  # every stream subscribed, in order
    ws_connections: int = 0  # websocket connections accepted so far

    def __post_init__(self) -> None:
        self._lock = threading.RLock()  # guards all state between the server thread and the test thread
        self._series: dict[tuple[str, str], np.ndarray] = {}  # (pair, interval) -> candles set by tests
        self._faults: dict[str, list[str]] = {}  # route -> queued fault kinds
        # Random faults: (generator, probability per request, kinds, routes or None for every route).
        self._chaos: tuple[random.Random, float, tuple[str, ...], frozenset[str] | None] | None = None
        self._next_order_id = 1000  # next orderId
        self._next_trade_id = 1  # next trade id
        # Open websocket connections -> (their subscribed streams, their queue of events to send).
        self._sockets: dict[web.WebSocketResponse, tuple[set[str], asyncio.Queue[object]]] = {}

    # ----- life cycle -------------------------------------------------------------------------------

    name = "fake Binance"  # shown when it cannot start
    shutdown_timeout_s = 2.0  # how long open requests may finish at stop, seconds

    def _routes(self, app: web.Application) -> None:
        """Every request goes through `_dispatch`."""
        app.router.add_route("*", "/{tail:.*}", self._dispatch)

    @property
    def url(self) -> str:
        """Base URL of the fake, e.g. http://127.0.0.1:PORT."""
        return f"http://127.0.0.1:{self.port}"

    # ----- controls (test thread) -------------------------------------------------------------------

    def advance(self, ms: int) -> None:
        """Move the clock forward; resting limit orders crossed by the candles that opened fill.

        Setting `now_ms` directly works too: resting orders then catch up on the next request.
        """
        with self._lock:
            before = self.now_ms
            self.now_ms += ms
            self._settle()
            if not self.mute:
                self._push(before)

    def drop_websockets(self) -> None:
        """Close every websocket connection (clients see a dropped stream and reconnect)."""
        for ws in list(self._sockets):
            asyncio.run_coroutine_threadsafe(ws.close(code=1001, message=b"dropped"), self._loop).result(5)

    def set_candles(self, symbol: str, interval: str, rows: np.ndarray) -> None:
        """Serve these candles (n, 6: open time ms, o, h, l, c, v) for symbol ("BTC/USDT" or "BTCUSDT")."""
        base, quote = split_pair(symbol)
        with self._lock:
            self._series[(base + quote, interval)] = np.asarray(rows, dtype=np.float64).reshape(-1, 6)
            self.market(symbol)

    def market(self, symbol: str, **filters: float | str) -> Market:
        """The market of symbol, created with default filters; keyword filters (tick, step, ...) set."""
        base, quote = split_pair(symbol)
        with self._lock:
            found = self.markets.setdefault(base + quote, Market(base + quote, base, quote))
            for name, value in filters.items():
                setattr(found, name, _dec(value))
            return found

    def deposit(self, asset: str, amount: float | str) -> None:
        """Add free funds to the account."""
        with self._lock:
            self.balances.setdefault(asset, Balance()).free += _dec(amount)

    def inject(self, route: str, *kinds: str) -> None:
        """Queue faults for the next requests of route ("POST /api/v3/order"), one request each.

        A route followed by a market ("GET /api/v3/klines BTCUSDT") faults only that market's requests.
        """
        with self._lock:
            self._faults.setdefault(route, []).extend(kinds)

    def chaos(self, rate: float, seed: int, kinds: tuple[str, ...], routes: tuple[str, ...] = ()) -> None:
        """Give each request (of `routes`, default all) a random fault of `kinds` with probability rate."""
        with self._lock:
            self._chaos = (
                (random.Random(seed), rate, tuple(kinds), frozenset(routes) or None) if rate else None
            )

    def count(self, route: str) -> int:
        """How many requests of route ("POST /api/v3/order") were received."""
        return sum(1 for r in self.requests if r.route == route)

    def klines_requests(self) -> list[dict[str, str]]:
        """Query parameters of every klines request, in order."""
        return [r.query for r in self.requests if r.path == "/api/v3/klines"]

    def price(self, symbol: str) -> Decimal:
        """The market price: the open of the forming candle of the finest interval held for the symbol."""
        base, quote = split_pair(symbol)
        with self._lock:
            return self._price(base + quote)

    # ----- dispatch and faults ----------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        """Record the request, apply a fault if one is due, and route it to its handler."""
        if request.path.startswith("/stream/") and request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request)
        raw = await request.text() if request.method == "POST" else request.query_string
        form = dict(parse_qsl(raw)) if request.method == "POST" else {}
        seen = Request(request.path, dict(request.query), request.method, form)
        routes = {
            "GET /api/v3/time": self._time,
            "GET /api/v3/exchangeInfo": self._exchange_info,
            "GET /api/v3/klines": self._klines,
            "GET /api/v3/account": self._account,
            "POST /api/v3/order": self._new_order,
            "GET /api/v3/order": self._get_order,
            "DELETE /api/v3/order": self._cancel_order,
            "GET /api/v3/openOrders": self._open_orders,
            "GET /api/v3/myTrades": self._my_trades,
        }
        with self._lock:
            self.requests.append(seen)
            self._settle()  # the clock may have been set directly: resting orders catch up first
            handler = routes.get(seen.route)
            if handler is None:
                self.unknown.append(seen.route)
                return web.json_response({"code": -1000, "msg": "not served by the fake"}, status=404)
            fault = self._fault(seen.route, seen.query.get("symbol", ""))
        # Faults that answer without executing.
        if fault == "timeout":
            await asyncio.sleep(self.timeout_s)
            return web.json_response({"code": -1007, "msg": "Timeout waiting for response."}, status=503)
        if fault in ("429", "418"):
            body = {"code": -1003, "msg": "Too much request weight used; please use the websocket."}
            return web.json_response(
                body, status=int(fault), headers={"Retry-After": str(self.retry_after_s)}
            )
        if fault in ("500", "503"):
            return web.Response(status=int(fault), text="Internal error")
        # Execute (under the lock: the test thread may be changing the clock or the candles).
        try:
            with self._lock:
                if seen.route not in _PUBLIC:
                    self._authenticate(request.headers.get("X-MBX-APIKEY"), raw)
                status, body = handler(seen.form or seen.query, fault == "partial")
        except BinanceError as error:
            status, body = error.status, {"code": error.code, "msg": error.msg}
        # Faults that execute, then fail to answer properly.
        if fault == "lost":
            msg = "Timeout waiting for response from backend server. Send status unknown; execution status unknown."  # noqa: E501
            return web.json_response({"code": -1007, "msg": msg}, status=503)
        if fault == "502_exec":
            return web.Response(status=502, text="<html><body><h1>502 Bad Gateway</h1></body></html>")
        if fault == "drop_exec":
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=200)
        if fault == "timeout_exec":
            await asyncio.sleep(self.timeout_s)
        return web.json_response(body, status=status)

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        """One websocket connection: answer (UN)SUBSCRIBE, send the events queued for it until closed."""
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        streams: set[str] = set()
        queue: asyncio.Queue[object] = asyncio.Queue()
        with self._lock:
            self.ws_connections += 1
            self._sockets[ws] = (streams, queue)

        async def send() -> None:
            """Send the queued events in order."""
            while True:
                await ws.send_json(await queue.get())

        sender = asyncio.ensure_future(send())
        try:
            async for message in ws:
                if message.type != web.WSMsgType.TEXT:
                    continue
                body = message.json()
                names = [str(n) for n in body.get("params", [])]
                with self._lock:
                    if body.get("method") == "SUBSCRIBE":
                        streams.update(names)
                        self.subscriptions += names
                    elif body.get("method") == "UNSUBSCRIBE":
                        streams.difference_update(names)
                    queue.put_nowait({"result": None, "id": body.get("id")})
        finally:
            sender.cancel()
            with self._lock:
                self._sockets.pop(ws, None)
        return ws

    def _push(self, before: int) -> None:
        """Queue the kline events of every subscribed stream for the clock's move from `before` to now."""
        for streams, queue in self._sockets.values():
            for name in sorted(streams):
                pair, _, kind = name.partition("@kline_")
                rows = self._candles(pair.upper(), kind) if kind else None
                if rows is None:
                    continue
                step = interval_ms(kind)
                # Candles that closed during the move, then the forming one.
                closed = rows[(rows[:, 0] + step > before) & (rows[:, 0] + step <= self.now_ms)]
                forming = rows[rows[:, 0] + step > self.now_ms][-1:]
                events = [(row, True) for row in closed] + [(row, False) for row in forming]
                for row, final in events:
                    self._loop.call_soon_threadsafe(
                        queue.put_nowait, self._kline_event(pair.upper(), kind, row, final)
                    )

    def _kline_event(self, pair: str, interval: str, row: np.ndarray, final: bool) -> dict[str, object]:
        """Binance's kline event for one candle (`final`: the candle has closed)."""
        t, step = int(row[0]), interval_ms(interval)
        o, h, low, c, v = (repr(float(x)) for x in row[1:6])
        k = {"t": t, "T": t + step - 1, "s": pair, "i": interval, "f": 0, "L": 0, "o": o, "c": c, "h": h,
             "l": low, "v": v, "n": 1, "x": final, "q": "0", "V": "0", "Q": "0", "B": "0"}  # fmt: skip
        return {"e": "kline", "E": self.now_ms, "s": pair, "k": k}

    def _fault(self, route: str, symbol: str) -> str | None:
        """The fault of this request: its market's queue, the route's, else a random one in chaos mode."""
        queue = self._faults.get(f"{route} {symbol}") or self._faults.get(route)
        if queue:
            return queue.pop(0)
        if self._chaos is not None:
            rng, rate, kinds, routes = self._chaos
            if (routes is None or route in routes) and rng.random() < rate:
                return rng.choice(kinds)
        return None

    def _authenticate(self, key: str | None, raw: str) -> None:
        """Check the API key header and the HMAC-SHA256 signature of the raw query or body like Binance."""
        if key != self.api_key:
            raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        payload, _, signature = raw.rpartition("&signature=")
        expected = hmac.new(self.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not payload or not hmac.compare_digest(expected, signature):
            raise BinanceError(400, -1022, "Signature for this request is not valid.")

    # ----- public endpoints -------------------------------------------------------------------------

    def _time(self, params: dict[str, str], partial: bool) -> tuple[int, object]:
        """The exchange clock."""
        return 200, {"serverTime": self.now_ms}

    def _all_markets(self) -> dict[str, Market]:
        """Every market: configured ones, those with candles set, and one per CSV symbol."""
        if self.data_dir is not None:
            for path in self.data_dir.glob("*-*.csv"):
                self.market(path.name.split("-")[0])
        return self.markets

    def _exchange_info(self, params: dict[str, str], partial: bool) -> tuple[int, object]:
        """Answer exchangeInfo with one spot market per known symbol and its filters."""
        symbols = [
            {
                "symbol": m.pair,
                "status": "TRADING",
                "baseAsset": m.base,
                "quoteAsset": m.quote,
                "baseAssetPrecision": 8,
                "quotePrecision": 8,
                "quoteAssetPrecision": 8,
                "orderTypes": ["LIMIT", "MARKET"],
                "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False,
                "permissionSets": [["SPOT"]],
                "filters": [
                    {
                        "filterType": "PRICE_FILTER",
                        "tickSize": str(m.tick),
                        "minPrice": str(m.tick),
                        "maxPrice": "1000000",
                    },
                    {
                        "filterType": "LOT_SIZE",
                        "stepSize": str(m.step),
                        "minQty": str(m.min_qty),
                        "maxQty": str(m.max_qty),
                    },
                    {"filterType": "NOTIONAL", "minNotional": str(m.min_notional), "maxNotional": "9000000"},
                ],
            }
            for _, m in sorted(self._all_markets().items())
        ]
        body = {"timezone": "UTC", "serverTime": self.now_ms, "rateLimits": [], "exchangeFilters": []}
        return 200, {**body, "symbols": symbols}

    def _candles(self, pair: str, interval: str) -> np.ndarray | None:
        """All candles of (pair, interval): set by the test, else from the CSV; None when absent."""
        rows = self._series.get((pair, interval))
        if rows is None and self.data_dir is not None:
            path = self.data_dir / f"{pair}-{interval}.csv"
            rows = _load(path) if path.exists() else None
        if rows is None:
            return None
        keep = rows[:, 0] <= self.now_ms
        for start, end in self.holes:
            keep &= (rows[:, 0] < start) | (rows[:, 0] >= end)
        return rows[keep]

    def _intervals(self, pair: str) -> list[str]:
        """The intervals held for a pair, finest first."""
        held = {i for p, i in self._series if p == pair}
        if self.data_dir is not None:
            held |= {path.stem.split("-")[1] for path in self.data_dir.glob(f"{pair}-*.csv")}
        return sorted(held, key=interval_ms)

    def _klines(self, params: dict[str, str], partial: bool) -> tuple[int, object]:
        """Serve klines like Binance: from startTime, at most `limit`, only candles already opened."""
        rows = self._candles(params["symbol"], params["interval"])
        if rows is None:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        if "startTime" in params:
            rows = rows[rows[:, 0] >= int(params["startTime"])]
        if "endTime" in params:
            rows = rows[rows[:, 0] <= int(params["endTime"])]
        limit = min(int(params.get("limit", 500)), 1000)
        rows = rows[:limit] if "startTime" in params else rows[-limit:]
        return 200, [_kline(row, interval_ms(params["interval"])) for row in rows]

    # ----- the market -------------------------------------------------------------------------------

    def _price(self, pair: str) -> Decimal:
        """Open of the candle containing now (finest interval); the last close when the data ended."""
        last: tuple[int, Decimal] | None = None
        for interval in self._intervals(pair):
            rows = self._candles(pair, interval)
            if rows is None or not len(rows):
                continue
            row = rows[-1]
            if row[0] + interval_ms(interval) > self.now_ms:
                return _dec(float(row[1]))
            if last is None or row[0] > last[0]:
                last = (int(row[0]), _dec(float(row[4])))
        if last is None:
            raise BinanceError(400, -1121, "Invalid symbol.")
        return last[1]

    def _settle(self) -> None:
        """Fill resting limit orders crossed by a candle that opened after the one they were placed in.

        Closed candles cross by their low/high; the forming one only by its open (the price so far).
        """
        for order in [o for o in self.orders if o.open and o.type == "LIMIT"]:
            intervals = self._intervals(order.pair)
            rows = self._candles(order.pair, intervals[0]) if intervals else None
            if rows is None:
                continue
            step = interval_ms(intervals[0])
            placed_in = order.time_ms // step * step
            later = rows[rows[:, 0] > placed_in]
            for row in later:
                closed = row[0] + step <= self.now_ms
                low, high = (row[3], row[2]) if closed else (row[1], row[1])
                if (order.side == "BUY" and low <= order.price) or (
                    order.side == "SELL" and high >= order.price
                ):
                    self._fill(order, [order.qty], order.price, int(row[0]), maker=True)
                    break

    def _fill(self, order: Order, parts: list[Decimal], price: Decimal, time_ms: int, maker: bool) -> None:
        """Book fills of an order: trades, commission, balances (releasing a resting order's lock)."""
        market = self.markets[order.pair]
        base, quote = (
            self.balances.setdefault(market.base, Balance()),
            self.balances.setdefault(market.quote, Balance()),
        )
        for qty in parts:
            value = qty * price
            received = market.base if order.side == "BUY" else market.quote
            asset = market.quote if self.fee_asset == "quote" else received
            commission = ((value if asset == market.quote else qty) * self.commission).quantize(
                EIGHT, ROUND_DOWN
            )
            trade = Trade(
                self._next_trade_id,
                order.order_id,
                order.pair,
                order.side,
                qty,
                price,
                commission,
                asset,
                time_ms,
                maker,
            )
            self._next_trade_id += 1
            # Move the funds: what is paid leaves the locked part of a resting order, else the free part.
            if order.side == "BUY":
                if maker:
                    quote.locked -= qty * order.price
                else:
                    quote.free -= value
                base.free += qty
            else:
                if maker:
                    base.locked -= qty
                else:
                    base.free -= qty
                quote.free += value
            self.balances.setdefault(asset, Balance()).free -= commission
            order.fills.append(trade)
            self.trades.append(trade)
        order.status = "FILLED" if order.filled >= order.qty else "PARTIALLY_FILLED"
        order.update_ms = time_ms

    # ----- signed endpoints -------------------------------------------------------------------------

    def _account(self, params: dict[str, str], partial: bool) -> tuple[int, object]:
        """Balances of the account."""
        balances = [
            {"asset": asset, "free": _num(b.free), "locked": _num(b.locked)}
            for asset, b in sorted(self.balances.items())
        ]
        rate = _num(self.commission)
        return 200, {
            "makerCommission": 10,
            "takerCommission": 10,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {"maker": rate, "taker": rate, "buyer": "0.00000000", "seller": "0.00000000"},
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": self.now_ms,
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
            "uid": 1,
        }

    def _market_of(self, params: dict[str, str]) -> Market:
        """The market named by the `symbol` parameter, or -1121."""
        market = self._all_markets().get(params.get("symbol", ""))
        if market is None:
            raise BinanceError(400, -1121, "Invalid symbol.")
        return market

    def _new_order(self, params: dict[str, str], partial: bool) -> tuple[int, object]:
        """Place a MARKET or LIMIT order with Binance's checks, fills and FULL/RESULT/ACK answers."""
        market = self._market_of(params)
        side, kind = params.get("side", ""), params.get("type", "")
        if kind not in ("MARKET", "LIMIT"):
            raise BinanceError(400, -1116, "Invalid orderType.")
        if side not in ("BUY", "SELL"):
            raise BinanceError(400, -1117, "Invalid side.")
        qty = _dec(params.get("quantity", "0"))
        market_price = self._price(market.pair)
        price = _dec(params["price"]) if kind == "LIMIT" else Decimal(0)
        # Filters, in Binance's order: price, lot size, notional.
        if kind == "LIMIT" and (price < market.tick or price % market.tick != 0):
            raise BinanceError(400, -1013, "Filter failure: PRICE_FILTER")
        if qty < market.min_qty or qty > market.max_qty or (qty - market.min_qty) % market.step != 0:
            raise BinanceError(400, -1013, "Filter failure: LOT_SIZE")
        if qty * (price or market_price) < market.min_notional:
            raise BinanceError(400, -1013, "Filter failure: NOTIONAL")
        client_id = params.get("newClientOrderId") or f"fake{self._next_order_id}"
        if any(o.client_id == client_id and o.open for o in self.orders):
            raise BinanceError(400, -2010, "Duplicate order sent.")
        # A limit order that is not marketable rests; everything else trades now at the market price.
        rests = kind == "LIMIT" and (price < market_price if side == "BUY" else price > market_price)
        fill_price = price if rests else market_price
        fee_extra = self.commission if self.fee_asset == "quote" and side == "BUY" else Decimal(0)
        need_asset = market.quote if side == "BUY" else market.base
        need = qty * fill_price * (1 + fee_extra) if side == "BUY" else qty
        if self.balances.get(need_asset, Balance()).free < need:
            raise BinanceError(400, -2010, "Account has insufficient balance for requested action.")
        order = Order(
            self._next_order_id,
            client_id,
            market.pair,
            side,
            kind,
            qty,
            price,
            self.now_ms,
            update_ms=self.now_ms,
        )
        self._next_order_id += 1
        self.orders.append(order)
        if rests:
            held = self.balances[need_asset]
            amount = qty * price if side == "BUY" else qty
            held.free -= amount
            held.locked += amount
        else:
            self._fill(
                order, _parts(qty, market.step, 3 if partial else 1), fill_price, self.now_ms, maker=False
            )
        answer = self._order_json(order)
        kind_of_answer = params.get("newOrderRespType", "FULL")
        if kind_of_answer == "ACK":
            answer = {
                k: answer[k] for k in ("symbol", "orderId", "orderListId", "clientOrderId", "transactTime")
            }
        elif kind_of_answer == "FULL":
            answer["fills"] = [
                {
                    "price": _num(t.price),
                    "qty": _num(t.qty),
                    "commission": _num(t.commission),
                    "commissionAsset": t.commission_asset,
                    "tradeId": t.trade_id,
                }
                for t in order.fills
            ]
        return 200, answer

    def _order_json(self, order: Order, query: bool = False) -> dict[str, object]:
        """An order as Binance answers it (the query form adds time, updateTime, isWorking)."""
        answer: dict[str, object] = {
            "symbol": order.pair,
            "orderId": order.order_id,
            "orderListId": -1,
            "clientOrderId": order.client_id,
            "price": _num(order.price),
            "origQty": _num(order.qty),
            "executedQty": _num(order.filled),
            "cummulativeQuoteQty": _num(order.quote_filled),
            "status": order.status,
            "timeInForce": "GTC",
            "type": order.type,
            "side": order.side,
            "workingTime": order.time_ms,
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }
        if query:
            answer |= {
                "time": order.time_ms,
                "updateTime": order.update_ms,
                "isWorking": True,
                "origQuoteOrderQty": "0",
            }
        else:
            answer["transactTime"] = order.update_ms
        return answer

    def _find(self, params: dict[str, str], code: int, msg: str) -> Order:
        """The order named by orderId or (else) origClientOrderId: the latest of that client id."""
        market = self._market_of(params)
        mine = [o for o in self.orders if o.pair == market.pair]
        if "orderId" in params:
            found = [o for o in mine if o.order_id == int(params["orderId"])]
        else:
            found = [o for o in mine if o.client_id == params.get("origClientOrderId")]
        if not found:
            raise BinanceError(400, code, msg)
        return found[-1]

    def _get_order(self, params: dict[str, str], partial: bool) -> tuple[int, object]:
        """Query one order."""
        return 200, self._order_json(self._find(params, -2013, "Order does not exist."), query=True)

    def _cancel_order(self, params: dict[str, str], partial: bool) -> tuple[int, object]:
        """Cancel an open order, releasing its locked funds; a closed or unknown one is -2011."""
        order = self._find(params, -2011, "Unknown order sent.")
        if not order.open:
            raise BinanceError(400, -2011, "Unknown order sent.")
        market = self.markets[order.pair]
        rest = order.qty - order.filled
        held = self.balances[market.quote if order.side == "BUY" else market.base]
        amount = rest * order.price if order.side == "BUY" else rest
        held.locked -= amount
        held.free += amount
        order.status, order.update_ms = "CANCELED", self.now_ms
        answer = self._order_json(order)
        answer["origClientOrderId"] = order.client_id
        answer["clientOrderId"] = params.get("newClientOrderId") or f"cancel{order.order_id}"
        return 200, answer

    def _open_orders(self, params: dict[str, str], partial: bool) -> tuple[int, object]:
        """The open orders of one symbol, or of all."""
        pair = self._market_of(params).pair if "symbol" in params else None
        found = [o for o in self.orders if o.open and pair in (None, o.pair)]
        return 200, [self._order_json(o, query=True) for o in found]

    def _my_trades(self, params: dict[str, str], partial: bool) -> tuple[int, object]:
        """Account trades of a symbol: by orderId, fromId, startTime/endTime (24 h at most) or latest."""
        market = self._market_of(params)
        found = [t for t in self.trades if t.pair == market.pair]
        limit = min(int(params.get("limit", 500)), 1000)
        if "orderId" in params:
            found = [t for t in found if t.order_id == int(params["orderId"])]
        if "fromId" in params:
            found = [t for t in found if t.trade_id >= int(params["fromId"])][:limit]
        elif "startTime" in params or "endTime" in params:
            end = int(params["endTime"]) if "endTime" in params else int(params["startTime"]) + DAY
            start = int(params["startTime"]) if "startTime" in params else end - DAY
            if end - start > DAY:
                raise BinanceError(400, -1127, "More than 24 hours between startTime and endTime.")
            found = [t for t in found if start <= t.time_ms <= end][:limit]
        else:
            found = found[-limit:]
        markets = self.markets
        return 200, [_trade_json(t, markets[t.pair]) for t in found]


# Routes that need no signature.
_PUBLIC = frozenset({"GET /api/v3/time", "GET /api/v3/exchangeInfo", "GET /api/v3/klines"})


def _parts(qty: Decimal, step: Decimal, count: int) -> list[Decimal]:
    """Split qty into up to `count` fills on the step grid (fewer when it has fewer steps)."""
    steps = int(qty / step)
    count = max(1, min(count, steps))
    sizes = [steps // count + (1 if i < steps % count else 0) for i in range(count)]
    parts = [n * step for n in sizes]
    parts[-1] += qty - sum(parts)
    return parts


def _trade_json(trade: Trade, market: Market) -> dict[str, object]:
    """A myTrades row."""
    return {
        "symbol": trade.pair,
        "id": trade.trade_id,
        "orderId": trade.order_id,
        "orderListId": -1,
        "price": _num(trade.price),
        "qty": _num(trade.qty),
        "quoteQty": _num(trade.qty * trade.price),
        "commission": _num(trade.commission),
        "commissionAsset": trade.commission_asset,
        "time": trade.time_ms,
        "isBuyer": trade.side == "BUY",
        "isMaker": trade.maker,
        "isBestMatch": True,
    }


def candles(opens: list[float], start: int = JAN_1_2024, step: int = HOUR) -> np.ndarray:
    """Candles for `set_candles` with these opens: low open-10, high open+10, close open+5, volume 1."""
    return np.array([[start + i * step, o, o + 10, o - 10, o + 5, 1.0] for i, o in enumerate(opens)])


def _kline(row: np.ndarray, step: int) -> list[object]:
    """One row in Binance's 12-field kline format (prices and volumes as strings)."""
    t = int(row[0])
    o, h, low, c, v = (repr(float(x)) for x in row[1:6])
    return [t, o, h, low, c, v, t + step - 1, "0", 1, "0", "0", "0"]
