"""Paper trading end to end: `strat run --paper` against the fake exchange equals `strat run --backtest`.

The engine runs as a real `strat` process talking to the fake Binance through ccxt; the test moves the
fake's clock forward an hour at a time, so the 1h candles close one after another as they would live.
Afterwards the same candles are backtested from the session's first bar: trades.csv must be the same
bytes. The session's state is then read back with `strat status --json`, and a second start resumes it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_binance import FakeBinance

HOUR = 3_600_000
# 2024-03-01 00:00 UTC: the session starts half an hour before, so its first bar is the one forming then
# (opening at T0 - 1h: it closes after the start, so it is acted on).
T0 = 1_709_251_200_000
BARS = 240  # bars the session trades

SPEC = """\
strat 1
strategy fast_cross:
    symbol: "BINANCE:BTC/USDT"
    timeframe: 1h
    fast_ma = sma(close, 5)
    slow_ma = sma(close, 20)
    entry long when fast_ma crosses above slow_ma
    exit long when fast_ma crosses below slow_ma
    size: equity_pct(100%)
    execution:
        fee: 0.1%
"""


def strat(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `strat` to completion in `cwd`."""
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", *args], cwd=cwd, capture_output=True, text=True,
        env=env or _env(), timeout=300,
    )  # fmt: skip


def _env() -> dict[str, str]:
    """The environment of a `strat` process: this checkout importable, no credentials."""
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRAT_")}
    env["PYTHONPATH"] = str(root)
    return env


@pytest.fixture
def market(shared_data: Path) -> Iterator[FakeBinance]:
    """The fake exchange serving the real BTC/USDT candles, its clock half-way into the bar before T0."""
    server = FakeBinance(data_dir=shared_data, now_ms=T0 - HOUR // 2).start()
    yield server
    server.stop()


def _status(cwd: Path, db: str) -> dict:  # type: ignore[type-arg]
    """`strat status --json` as an object."""
    done = strat("status", "--json", "--db", db, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _wait_for_bar(cwd: Path, db: str, close_ms: int, proc: subprocess.Popen[str]) -> dict:  # type: ignore[type-arg]
    """Wait until the deployment's last processed bar closes at `close_ms`; the status then."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        status = _status(cwd, db)
        deps = status["deployments"]
        if deps and all(f["last_bar_ms"] >= close_ms for f in deps[0]["feeds"]):
            return status
        time.sleep(0.3)
    raise AssertionError("the paper session did not reach the last bar")


def test_paper_session_trades_like_the_backtest(
    market: FakeBinance, tmp_path: Path, shared_data: Path, db_url: str
) -> None:
    """Same candles, same decisions, same fills: trades.csv is byte for byte the backtest's.

    On SQLite and on PostgreSQL (where a server is available): the store is the engine's only state.
    """
    (tmp_path / "spec.strat").write_text(SPEC)
    db = db_url
    out = tmp_path / "paper"
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "run", "spec.strat", "--paper",
         "--api", "127.0.0.1:0", "--exchange-url", market.url,
         "--db", db, "--out", str(out), "--poll", "50ms"],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # Started once its deployment exists; then the candles close one by one.
        deadline = time.monotonic() + 120
        while not _status(tmp_path, db)["deployments"]:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the paper session did not start"
            time.sleep(0.2)
        # The clock ends half-way into the bar after the last one traded, so that one has closed.
        for _ in range(BARS + 1):
            market.advance(HOUR)
            time.sleep(0.01)
        status = _wait_for_bar(tmp_path, db, T0 + BARS * HOUR, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    deployment = status["deployments"][0]
    assert deployment["mode"] == "paper" and deployment["exchange"] == "binance"
    end = T0 + BARS * HOUR
    backtest = strat(
        "run", "spec.strat", "--backtest", "--data", str(shared_data / "BTCUSDT-1h.csv"),
        "--from", str(T0 - HOUR), "--to", str(end), "--out", str(tmp_path / "bt"), "--no-report", "--no-save",
        cwd=tmp_path,
    )  # fmt: skip
    assert backtest.returncode == 0, backtest.stderr
    paper_trades = (out / "trades.csv").read_text()
    assert paper_trades.count("\n") > 3  # the session traded
    assert paper_trades == (tmp_path / "bt" / "trades.csv").read_text()
    assert (out / "orders.csv").read_text() == (tmp_path / "bt" / "orders.csv").read_text()
    assert (out / "equity.csv").read_text() == (tmp_path / "bt" / "equity.csv").read_text()
    events = (out / "events.csv").read_text()
    assert "start" in events and "stop" in events
    # The same deployment started with another version of the spec is refused in one line (reloading an
    # edited spec into a running deployment is the hot-reload's job).
    (tmp_path / "spec.strat").write_text(SPEC.replace("sma(close, 20)", "sma(close, 30)"))
    again = strat(
        "run",
        "spec.strat",
        "--paper",
        "--api",
        "127.0.0.1:0",
        "--exchange-url",
        market.url,
        "--db",
        db,
        cwd=tmp_path,
    )
    assert again.returncode == 1
    assert again.stderr.startswith(
        "strat run: deployment fast_cross:paper:binance:paper was saved by another version"
    )
