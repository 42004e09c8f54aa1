"""A paper session on second bars whose feed stops: stale event, sleeve paused, then recovered.

The fake exchange's clock runs in real time over synthetic 1s candles, with an outage: no candle from 8 s
to 14 s after the start (the exchange's clock goes on, its klines stop, then resume after the gap).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fake_binance import FakeBinance
from test_paper import _env, _status

START = 1_709_251_200_000  # 2024-03-01 00:00 UTC: where the fake's clock starts
SPEC = """\
strat 1
strategy seconds:
    symbol: "BINANCE:BTC/USDT"
    timeframe: 1s
    fast_ma = sma(close, 3)
    slow_ma = sma(close, 8)
    entry long when fast_ma crosses above slow_ma
    exit long when fast_ma crosses below slow_ma
    size: equity_pct(100%)
"""


class RealTimeClock:
    """Moves the fake's clock with the wall clock."""

    def __init__(self, market: FakeBinance) -> None:
        """Drive `market`'s clock from now on."""
        self.market = market  # the fake exchange
        self.stopped = threading.Event()  # set: the thread ends
        self.origin = time.monotonic()  # wall time of the fake's START, s
        self.thread = threading.Thread(target=self._run, daemon=True)  # the driving thread
        self.thread.start()

    def _run(self) -> None:
        """Advance the fake's clock to START plus the wall time elapsed, every 20 ms."""
        while not self.stopped.wait(0.02):
            target = START + int((time.monotonic() - self.origin) * 1000)
            if target > self.market.now_ms:
                self.market.advance(target - self.market.now_ms)


@pytest.fixture
def market() -> Iterator[FakeBinance]:
    """The fake exchange serving 1s BTC/USDT candles (a slow sine wave) from an hour before START."""
    server = FakeBinance(now_ms=START, holes=[(START + 8_000, START + 14_000)]).start()
    n = 7200
    times = START - 3_600_000 + 1000 * np.arange(n, dtype=np.float64)
    price = 60_000 + 50 * np.sin(np.arange(n) / 7.0)
    server.set_candles(
        "BTC/USDT", "1s", np.column_stack([times, price, price + 5, price - 5, price, np.ones(n)])
    )
    yield server
    server.stop()


def test_a_feed_that_stops_pauses_its_sleeves_until_it_recovers(market: FakeBinance, tmp_path: Path) -> None:
    """Two periods without a closed candle: a stale event and the sleeve paused; then recovered."""
    (tmp_path / "spec.strat").write_text(SPEC)
    db = f"sqlite:///{tmp_path / 'store.db'}"
    clock = RealTimeClock(market)
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "run", "spec.strat", "--paper",
         "--api", "127.0.0.1:0", "--exchange-url", market.url,
         "--db", db, "--out", str(tmp_path / "out"), "--poll", "100ms"],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    events = tmp_path / "out" / "events.csv"

    def wait_for(text: str) -> None:
        """Wait until events.csv holds `text`."""
        deadline = time.monotonic() + 90
        while not (events.exists() and text in events.read_text()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"no {text!r} event"
            time.sleep(0.1)

    try:
        wait_for("stale: no closed candle for two periods")
        assert _status(db)["deployments"][0]["sleeves"][0]["paused"] is True
        wait_for("BTC/USDT 1s recovered")
        deadline = time.monotonic() + 30
        while _status(db)["deployments"][0]["sleeves"][0]["paused"]:
            assert time.monotonic() < deadline, "still paused after the feed recovered"
            time.sleep(0.2)
    finally:
        clock.stopped.set()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    text = events.read_text()
    assert text.index("stale") < text.index("recovered")
    # The session traded second bars before and after the outage.
    assert (tmp_path / "out" / "equity.csv").read_text().count("\n") > 5
