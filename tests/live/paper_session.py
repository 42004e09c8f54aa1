"""A real `strat run --paper` process against the fake exchange, with its REST API, for the tests.

`PaperSession` starts the session as a user would (a subprocess of the `strat` command, its REST API on a
free port of 127.0.0.1, its store a SQLite file), moves the fake exchange's clock bar by bar and talks to
the API over HTTP. Extra environment (tokens, the fake Telegram and Lark servers) is passed at start.
(A module of its own, not conftest.py: every test folder has a conftest module, and `from conftest
import` would find whichever came first.)
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

# The fake exchange lives beside the market-data tests.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "data"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_binance import FakeBinance
from test_paper import HOUR, T0, _env

if TYPE_CHECKING:
    from runtime.live.engine import Engine

# Two sleeves on fast SMA crosses of real 1h candles: entries and exits come within a few bars.
SPEC = """\
strat 1
strategy cross:
    param fast = 3
    param slow = 8
    symbol: "BINANCE:BTC/USDT"
    timeframe: 1h
    fast_ma = sma(close, fast)
    slow_ma = sma(close, slow)
    entry long when fast_ma crosses above slow_ma
    exit long when fast_ma crosses below slow_ma
    size: equity_pct(100%)
    execution:
        fee: 0.1%

portfolio duo:
    capital: 10_000 USDT
    sleeve btc = cross(symbol="BINANCE:BTC/USDT") weight 50%
    sleeve eth = cross(symbol="BINANCE:ETH/USDT") weight 50%
"""


class PaperSession:
    """A `strat run --paper` process of `folder/spec.strat` with its API, moved forward by the test."""

    def __init__(
        self, market: FakeBinance, folder: Path, env: dict[str, str] | None = None, spec: str = SPEC
    ) -> None:
        """Write the spec and start the session; wait until its API answers."""
        self.market, self.folder = market, folder  # the fake exchange; the session's folder
        (folder / "spec.strat").write_text(spec, encoding="utf-8")
        self.db = f"sqlite:///{folder / 'store.db'}"  # its store
        self.closed = T0 - HOUR  # close time of the last bar closed at the fake's clock
        self.lines: list[str] = []  # what the process printed so far (stdout and stderr)
        self.env = _env() | (env or {})  # the process's environment
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", "run", "spec.strat", "--paper", "--exchange-url",
             market.url, "--db", self.db, "--out", "out", "--poll", "50ms", "--api", "127.0.0.1:0"],
            cwd=folder, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.reader = threading.Thread(target=self._read, daemon=True)  # drains the process's output
        self.reader.start()
        found: list[str] = []
        self.wait(lambda: found or found.extend(self._urls()), "the API address")
        self.url = found[0]  # the API's base URL, "http://127.0.0.1:PORT"
        token = (env or {}).get("STRAT_API_TOKEN", "")
        headers = {"Authorization": f"Bearer {token.split(',')[0].split(':')[-1]}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=10)  # the API's client
        self.wait(lambda: self.get("/api/status")["state"] == "running", "the engine")

    def _read(self) -> None:
        """Collect the process's output lines (stderr joins stdout, so nothing blocks on a full pipe)."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def _urls(self) -> list[str]:
        """The API address the process printed."""
        for line in self.lines:
            found = re.search(r"API and dashboard on (http://[\d.]+:\d+)/", line)
            if found:
                return [found.group(1)]
        return []

    def get(self, path: str, **params: Any) -> Any:
        """GET an API path; its JSON (asserting 200)."""
        answer = self.http.get(path, params=params)
        assert answer.status_code == 200, (path, answer.status_code, answer.text)
        return answer.json()

    def post(self, path: str, **body: Any) -> Any:
        """POST to an API path; its JSON (asserting 200)."""
        answer = self.http.post(path, json=body)
        assert answer.status_code == 200, (path, answer.status_code, answer.text)
        return answer.json()

    def last_bar(self) -> str:
        """Close time of the last bar the session processed (ISO), from the API."""
        return max(s["last_bar"] for s in self.get("/api/sleeves"))

    def wait(self, done: Callable[[], object], what: str, seconds: float = 60) -> None:
        """Wait until `done()` holds while the session runs."""
        deadline = time.monotonic() + seconds
        while not done():
            if self.proc.poll() is not None:
                raise AssertionError("the session exited:\n" + "\n".join(self.lines[-40:]))
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)

    def bars(self, n: int) -> None:
        """Close n bars, one at a time, each processed."""
        from runtime.backtest.metrics import iso_time

        for _ in range(n):
            self.market.advance(HOUR)
            self.closed += HOUR
            target = iso_time(self.closed)
            self.wait(lambda t=target: self.last_bar() >= t, "a bar")  # type: ignore[misc]

    def stop(self) -> None:
        """SIGTERM; it must exit cleanly."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self.http.close()
        self.reader.join(10)
        assert self.proc.returncode == 0, "\n".join(self.lines[-40:])


def paper_engine(market: FakeBinance, folder: Path, spec: str = SPEC) -> Engine:
    """An in-process paper engine of `spec` (store: folder/store.db); one attempt per exchange call."""
    from dsl.checker import check_source
    from runtime.commands.source import Source
    from runtime.exchange.client import ExchangeClient, RetryPolicy
    from runtime.exchange.feed import ExchangeFeed
    from runtime.live.engine import Engine, LiveOptions
    from runtime.plan.select import select
    from runtime.store.live import LiveStore
    from runtime.store.schema import open_store

    checked = check_source(spec, "spec.strat")
    assert checked.program is not None
    source = Source(api_url=market.url, db_url=f"sqlite:///{folder / 'store.db'}")
    public = ExchangeClient("binance", api_url=market.url, rate_limit=False, retry=RetryPolicy(attempts=1))

    def loader(clock: object) -> object:
        """History through the store from the fake exchange."""
        feed = ExchangeFeed("binance", api_url=market.url, rate_limit=False, clock=clock)  # type: ignore[arg-type]
        return lambda s, tf, first, last: source.load(s, tf, first, last, feed=feed).candles

    options = LiveOptions("paper", "binance", "spec.strat", spec, 0.05)
    return Engine(
        options, checked.program, select(checked.program, None, None), LiveStore(open_store(source.db_url)),
        public, loader,  # type: ignore[arg-type]
    )  # fmt: skip
