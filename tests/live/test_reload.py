"""Hot reload of a paper session: edit the spec while it trades, with real watchdog and real saves.

A `strat run --paper` process trades the fake exchange's candles while the test saves its spec: a broken
save keeps the running version (diagnostics as an event), a valid one is live from the next bar and then
decides like a backtest of the new version from that bar, an edit that would orphan a position is
refused (E070), and a burst of saves ends in the final content.
"""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_binance import FakeBinance
from test_paper import HOUR, T0, _env, _status, strat
from test_watch import atomic_save

SPEC = """\
strat 1
strategy flip:
    symbol: "BINANCE:BTC/USDT"
    timeframe: 1h
    fast_ma = sma(close, 3)
    slow_ma = sma(close, {slow})
    entry long when fast_ma crosses above slow_ma
    exit long when fast_ma crosses below slow_ma
    size: equity_pct(100%)
    execution:
        fee: 0.1%
"""


@pytest.fixture
def market(shared_data: Path) -> Iterator[FakeBinance]:
    """The fake exchange with the real candles, its clock half-way into the bar before T0."""
    server = FakeBinance(data_dir=shared_data, now_ms=T0 - HOUR // 2).start()
    yield server
    server.stop()


class Paper:
    """A paper session of tmp/spec.strat against the fake, moved forward bar by bar by the test."""

    def __init__(self, market: FakeBinance, folder: Path) -> None:
        """Start the session."""
        self.market, self.folder = market, folder  # the fake exchange; the session's folder
        self.db = f"sqlite:///{folder / 'store.db'}"  # its store
        self.closed = T0 - HOUR  # close time of the last bar closed at the fake's clock
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", "run", "spec.strat", "--paper",
             "--api", "127.0.0.1:0", "--exchange-url",
             market.url, "--db", self.db, "--out", "out", "--poll", "50ms"],
            cwd=folder, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.wait(lambda: self.status() is not None and self.last_bar() >= self.closed, "start")

    def status(self) -> dict | None:  # type: ignore[type-arg]
        """The deployment's status (None before it exists)."""
        deployments = (
            _status(self.folder, self.db)["deployments"] if (self.folder / "store.db").exists() else []
        )
        return deployments[0] if deployments else None

    def last_bar(self) -> int:
        """Close time of the last bar the session processed."""
        status = self.status()
        return max(f["last_bar_ms"] for f in status["feeds"]) if status else 0

    def events(self) -> list[list[str]]:
        """events.csv rows."""
        path = self.folder / "out" / "events.csv"
        return list(csv.reader(path.open()))[1:] if path.exists() else []

    def wait(self, done: object, what: str, seconds: float = 60) -> None:
        """Wait until `done()` holds while the session runs."""
        deadline = time.monotonic() + seconds
        while not done():  # type: ignore[operator]
            assert self.proc.poll() is None, self.proc.communicate()
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.1)

    def bars(self, n: int) -> None:
        """Close n bars, one at a time, each processed."""
        for _ in range(n):
            self.market.advance(HOUR)
            self.closed += HOUR
            self.wait(lambda: self.last_bar() >= self.closed, "a bar")

    def reloads(self) -> list[str]:
        """The messages of the reload events so far."""
        return [row[3] for row in self.events() if row[1] == "reload"]

    def stop(self) -> None:
        """SIGTERM; it must exit cleanly."""
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, err


def test_edits_while_trading(market: FakeBinance, tmp_path: Path, shared_data: Path) -> None:
    """Broken save kept out; a param edit live at the next bar, deciding like a backtest; E070, then applied.

    The E070 edit (a move to another market while holding a position) applies once the sleeve is flat.
    """
    spec = tmp_path / "spec.strat"
    spec.write_text(SPEC.format(slow=8))
    paper = Paper(market, tmp_path)
    try:
        paper.bars(10)
        # A half-written save: diagnostics as an event, the running version trades on.
        spec.write_text(SPEC.format(slow=8).replace("slow_ma = sma(close, 8)", "slow_ma = sma(close,"))
        paper.wait(lambda: len(paper.reloads()) == 1, "the failed reload")
        (failed,) = paper.reloads()
        assert failed.startswith("reload failed; the running version stays:\nspec.strat:6:")
        assert "error E0" in failed
        paper.bars(3)
        # Once flat, a param edit (slow 8 -> 12) in a burst of 100 saves: one reload, of the last content.
        while paper.status()["sleeves"][0]["position"] != 0:  # type: ignore[index]
            paper.bars(1)
        swap = paper.last_bar()
        for slow in [9, 10, 11, 12] * 25:  # 100 saves in a burst
            spec.write_text(SPEC.format(slow=slow))
        paper.wait(lambda: len(paper.reloads()) == 2, "the reload")
        applied = paper.reloads()[1]
        assert applied.startswith("reloaded spec.strat (version ")
        assert applied.endswith("\n  flip: rules entry_long, exit_long")
        assert paper.last_bar() == swap  # swapped between two bars
        paper.bars(60)
        # Moving the sleeve to another market while it holds a position: refused (E070)...
        while paper.status()["sleeves"][0]["position"] == 0:  # type: ignore[index]
            paper.bars(1)
        moved_text = SPEC.format(slow=12).replace("BTC/USDT", "ETH/USDT")
        atomic_save(spec, moved_text)
        paper.wait(lambda: len(paper.reloads()) == 3, "the refused reload")
        refused = paper.reloads()[2]
        assert refused.startswith("reload refused; the running version stays:\nE070: sleeve flip holds ")
        assert (
            "the edit moves it to BINANCE:ETH/USDT 1h, which would orphan it: flatten the sleeve first"
            in refused
        )
        assert paper.status()["sleeves"][0]["position"] != 0  # type: ignore[index]
        # ... and applied by the same save once the sleeve is flat.
        while paper.status()["sleeves"][0]["position"] != 0:  # type: ignore[index]
            paper.bars(1)
        moved_at = paper.last_bar()
        atomic_save(spec, moved_text)
        paper.wait(lambda: len(paper.reloads()) == 4, "the move")
        assert paper.reloads()[3].endswith("\n  flip: moved (BINANCE:ETH/USDT 1h, weight 100%; starts flat)")
        paper.bars(5)
        assert paper.status()["sleeves"][0]["symbol"] == "BINANCE:ETH/USDT"  # type: ignore[index]
    finally:
        paper.stop()
    # From the swap on, the session decided like a backtest of the new version from that bar (same entry
    # and exit times and prices; the quantities differ with the capital each starts from).
    spec.write_text(SPEC.format(slow=12))
    backtest = strat(
        "run", "spec.strat", "--backtest", "--data", str(shared_data / "BTCUSDT-1h.csv"), "--from", str(swap),
        "--to", str(moved_at), "--out", "bt", "--no-report", "--no-save", cwd=tmp_path,
    )  # fmt: skip
    assert backtest.returncode == 0, backtest.stderr
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(swap / 1000))

    def btc_after_swap(path: Path) -> list[tuple[object, ...]]:
        """(entry time, entry price, exit time, exit price) of the BTC trades entered from the swap on.

        Prices to 1e-6 (an average entry price is a total over a quantity: the last digit varies with it).
        """
        rows = list(csv.DictReader(path.open()))
        return [
            (
                r["entry_time"],
                round(float(r["entry_price"]), 6),
                r["exit_time"],
                round(float(r["exit_price"]), 6),
            )
            for r in rows
            if r["entry_time"] >= start and r["symbol"] == "BTC/USDT"
        ]

    expected = btc_after_swap(tmp_path / "bt" / "trades.csv")
    assert len(expected) >= 2
    assert btc_after_swap(tmp_path / "out" / "trades.csv") == expected
    # The history of the sleeve before its move stays in trades.csv, under its old market.
    assert {r["symbol"] for r in csv.DictReader((tmp_path / "out" / "trades.csv").open())} >= {"BTC/USDT"}
