"""A small fake of Binance's public spot REST API on 127.0.0.1, for the real ccxt client to talk to.

It serves `GET /api/v3/exchangeInfo` and `GET /api/v3/klines` from the real candle CSVs, with injected
faults (429, 500, a slow answer that times out, a gap in the data, an unclosed last candle at the fake's
own "now"), records every request, and lists any path it does not serve in `unknown`.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from aiohttp import web

# 2024-01-01 00:00 UTC in ms: where the ETH/SOL/XRP files start.
JAN_1_2024 = 1_704_067_200_000
HOUR = 3_600_000  # one hour, ms

# The CSV columns, as loaded once per file and shared by every fake instance.
_CACHE: dict[Path, np.ndarray] = {}


def _load(path: Path) -> np.ndarray:
    """The rows of a candle CSV as an (n, 6) float64 array, cached."""
    if path not in _CACHE:
        _CACHE[path] = pd.read_csv(path).to_numpy(np.float64)
    return _CACHE[path]


@dataclass
class Request:
    """One request the fake received."""

    path: str  # URL path, e.g. /api/v3/klines
    query: dict[str, str]  # query parameters


@dataclass
class FakeBinance:
    """The fake server; `start()` runs it in a daemon thread, `stop()` ends it."""

    data_dir: Path  # folder of SYMBOL-TF.csv files (the real Binance candles)
    now_ms: int = 0  # the fake exchange's current time, UTC ms; candles opening later do not exist yet
    faults: list[str] = field(default_factory=list)  # next klines answers: "429", "500", "timeout"
    timeout_s: float = 1.0  # how long a "timeout" answer takes, seconds
    holes: list[tuple[int, int]] = field(default_factory=list)  # [start, end) ms ranges absent from data
    requests: list[Request] = field(default_factory=list)  # every request received, in order
    unknown: list[str] = field(default_factory=list)  # paths requested that the fake does not serve
    port: int = 0  # TCP port once started

    def start(self) -> FakeBinance:
        """Start serving in a background thread; returns self once the port is bound."""
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()  # the server's event loop, in its own thread
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)  # server thread
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake Binance did not start")
        return self

    def _serve(self, ready: threading.Event) -> None:
        """Thread body: bind an ephemeral port, signal readiness, run until stopped."""
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/api/v3/exchangeInfo", self._exchange_info)
        app.router.add_get("/api/v3/klines", self._klines)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        self._runner = web.AppRunner(app)  # aiohttp runner, cleaned up on stop
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def stop(self) -> None:
        """Stop the server and join its thread."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def url(self) -> str:
        """Base URL of the fake, e.g. http://127.0.0.1:PORT."""
        return f"http://127.0.0.1:{self.port}"

    def klines_requests(self) -> list[dict[str, str]]:
        """Query parameters of every klines request, in order."""
        return [r.query for r in self.requests if r.path == "/api/v3/klines"]

    def _markets(self) -> dict[str, tuple[str, str]]:
        """Binance symbol -> (base, quote) for every market with a CSV file."""
        found = {}
        for path in self.data_dir.glob("*-*.csv"):
            pair = path.name.split("-")[0]
            found[pair] = (pair[:-4], pair[-4:])
        return found

    async def _exchange_info(self, request: web.Request) -> web.Response:
        """Answer exchangeInfo with one spot market per CSV symbol."""
        self.requests.append(Request(request.path, dict(request.query)))
        symbols = [
            {
                "symbol": pair,
                "status": "TRADING",
                "baseAsset": base,
                "quoteAsset": quote,
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
                        "tickSize": "0.01",
                        "minPrice": "0.01",
                        "maxPrice": "1000000",
                    },
                    {"filterType": "LOT_SIZE", "stepSize": "0.00001", "minQty": "0.00001", "maxQty": "9000"},
                    {"filterType": "NOTIONAL", "minNotional": "5", "maxNotional": "9000000"},
                ],
            }
            for pair, (base, quote) in sorted(self._markets().items())
        ]
        body = {"timezone": "UTC", "serverTime": self.now_ms, "rateLimits": [], "exchangeFilters": []}
        return web.json_response({**body, "symbols": symbols})

    async def _klines(self, request: web.Request) -> web.Response:
        """Serve klines like Binance: from startTime, at most `limit`, only candles already opened."""
        query = dict(request.query)
        self.requests.append(Request(request.path, query))
        if self.faults:
            fault = self.faults.pop(0)
            if fault == "timeout":
                await asyncio.sleep(self.timeout_s)
            elif fault == "429":
                return web.json_response({"code": -1003, "msg": "Too many requests."}, status=429)
            else:
                return web.Response(status=int(fault), text="Internal error")
        path = self.data_dir / f"{query['symbol']}-{query['interval']}.csv"
        if not path.exists():
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        rows = _load(path)
        keep = rows[:, 0] <= self.now_ms
        for start, end in self.holes:
            keep &= (rows[:, 0] < start) | (rows[:, 0] >= end)
        rows = rows[keep]
        if "startTime" in query:
            rows = rows[rows[:, 0] >= int(query["startTime"])]
        if "endTime" in query:
            rows = rows[rows[:, 0] <= int(query["endTime"])]
        limit = min(int(query.get("limit", 500)), 1000)
        rows = rows[:limit] if "startTime" in query else rows[-limit:]
        return web.json_response([_kline(row) for row in rows])

    async def _unknown(self, request: web.Request) -> web.Response:
        """Record a request for a path the fake does not serve, and answer 404."""
        self.requests.append(Request(request.path, dict(request.query)))
        self.unknown.append(f"{request.method} {request.path}")
        return web.json_response({"code": -1000, "msg": "not served by the fake"}, status=404)


def _kline(row: np.ndarray) -> list[object]:
    """One row in Binance's 12-field kline format (prices and volumes as strings)."""
    t = int(row[0])
    o, h, low, c, v = (repr(float(x)) for x in row[1:6])
    return [t, o, h, low, c, v, t + 1, "0", 1, "0", "0", "0"]
