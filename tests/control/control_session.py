"""Helpers of the control tests: a real `strat run --paper` process against the fake exchange, with its API.

`PaperSession` starts the session as a user would (a subprocess of the `strat` command, its REST API on a
free port of 127.0.0.1, its store a SQLite file), moves the fake exchange's clock bar by bar and talks to
the API over HTTP. Extra environment (tokens, the fake Telegram and Lark servers) is passed at start.
`Browser` is a headless Chromium page for the dashboard tests. (A module of its own, not conftest.py:
every test folder has a conftest module, and `from conftest import` would find whichever came first.)
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
from typing import Any

import httpx

# The fake exchange and the paper tests' helpers live beside the live tests.
ROOT = Path(__file__).resolve().parent.parent
for folder in ("data", "live", "run"):
    sys.path.insert(0, str(ROOT / folder))
from fake_binance import FakeBinance  # noqa: E402
from test_paper import HOUR, T0, _env  # noqa: E402

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
        self.lines: list[str] = []  # what the process printed so far (stdout)
        self.env = _env() | (env or {})  # the process's environment
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", "run", "spec.strat", "--paper", "--exchange-url",
             market.url, "--db", self.db, "--out", "out", "--poll", "50ms", "--api", "127.0.0.1:0"],
            cwd=folder, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        threading.Thread(target=self._read, daemon=True).start()
        found: list[str] = []
        self.wait(lambda: found or found.extend(self._urls()), "the API address")
        self.url = found[0]  # the API's base URL, "http://127.0.0.1:PORT"
        token = (env or {}).get("STRAT_API_TOKEN", "")
        headers = {"Authorization": f"Bearer {token.split(',')[0].split(':')[-1]}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=10)  # the API's client
        self.wait(lambda: self.get("/api/status")["state"] == "running", "the engine")

    def _read(self) -> None:
        """Collect the process's stdout lines."""
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
                raise AssertionError(
                    f"the session exited: {self.proc.stderr.read() if self.proc.stderr else ''}"
                )
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
        err = self.proc.stderr.read() if self.proc.stderr else ""
        assert self.proc.returncode == 0, err


# Debian's Chromium, driven by playwright (never `playwright install`).
CHROMIUM = "/usr/bin/chromium"
# Flags for a sandbox-less, offline, quiet headless browser (RECIPES.md §6).
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


class Browser:
    """A headless Chromium page recording console errors and requests that leave the server."""

    def __init__(self, pw: Any, base: str) -> None:
        """Launch Chromium and open a page; requests not to `base` are recorded as remote."""
        self.browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)  # the browser
        self.page = self.browser.new_page(viewport={"width": 1400, "height": 1600})  # its page
        self.errors: list[str] = []  # console errors and uncaught exceptions
        self.remote: list[str] = []  # requests to anything but the server (data: and blob: aside)
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on(
            "request",
            lambda r: None if r.url.startswith((base, "data:", "blob:")) else self.remote.append(r.url),
        )
