"""Paper trading end to end: `strat run --paper` against the fake exchange equals `strat run --backtest`.

The engine runs as a real `strat` process talking to the fake Binance through ccxt; the test moves the
fake's clock forward an hour at a time, so the 1h candles close one after another as they would live.
Afterwards the same candles are backtested from the session's first bar: trades.csv must be the same
bytes. The session's state is then read back with `strat status --json`, and a second start resumes it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
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


def _status(db: str) -> dict:  # type: ignore[type-arg]
    """`strat status --json --db db` as an object.

    Run in this process: the tests poll it, and a `strat` process per poll costs a second of start-up.
    (test_status.py runs the command itself.)
    """
    from runtime.commands import status

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert status.run(argparse.Namespace(db=db, json=True)) == 0
    return json.loads(printed.getvalue())  # type: ignore[no-any-return]


def _wait_for_bar(db: str, close_ms: int, proc: subprocess.Popen[str]) -> dict:  # type: ignore[type-arg]
    """Wait until the deployment's last processed bar closes at `close_ms`; the status then."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        status = _status(db)
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
        while not _status(db)["deployments"]:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the paper session did not start"
            time.sleep(0.2)
        # The clock ends half-way into the bar after the last one traded, so that one has closed.
        for _ in range(BARS + 1):
            market.advance(HOUR)
            time.sleep(0.01)
        status = _wait_for_bar(db, T0 + BARS * HOUR, proc)
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


def test_bars_closing_during_the_start_up_are_acted_on(
    market: FakeBinance, tmp_path: Path, shared_data: Path
) -> None:
    """Bars that close while the engine starts are traded; those that closed while it was down are missed.

    A slow start-up (history, warm-up, catch-up) must not cost the decisions of the bars closing meanwhile,
    and a decision of a bar that closed before the start is recorded as missed, never acted on late. Two
    lives: a fresh start during which twelve bars close, then a restart after twenty bars closed while the
    process was down (an exit among them), during which twenty-four more close.
    """
    from paper_session import paper_engine

    (tmp_path / "spec.strat").write_text(SPEC)
    backtest = strat(
        "run", "spec.strat", "--backtest", "--data", str(shared_data / "BTCUSDT-1h.csv"),
        "--from", str(T0 - HOUR), "--to", str(T0 + 55 * HOUR), "--out", "bt", "--no-report", "--no-save",
        cwd=tmp_path,
    )  # fmt: skip
    assert backtest.returncode == 0, backtest.stderr
    trades = list(csv.DictReader((tmp_path / "bt" / "trades.csv").open()))

    def life(down: int, starting: int) -> list[tuple[str, str]]:
        """Let `down` bars close, start an engine while `starting` more close; its fill and missed events."""
        market.advance(down * HOUR)
        engine = paper_engine(market, tmp_path, SPEC)
        save = engine._save_deployment

        def slow_start(fresh: bool) -> str:
            """Save the deployment, then let bars close before the catch-up poll."""
            key = save(fresh)
            market.advance(starting * HOUR)
            return key

        engine._save_deployment = slow_start  # type: ignore[method-assign]
        before = [i for i, _ in engine.store.events(engine.key, limit=1)]

        async def main() -> None:
            """Start the engine; its catch-up poll meets the bars."""
            client = engine.exchange.asynchronous()
            try:
                await engine.start(client)
            finally:
                await client.close()

        asyncio.run(main())
        since = before[0] if before else 0
        return [(e.kind, e.message) for _, e in engine.store.events(engine.key, since_id=since)
                if e.kind in ("fill", "missed")]  # fmt: skip

    # Life 1, bars closing T0 .. T0 + 11h during the start: the backtest's first entry, filled at 10:00.
    first, second, third = trades[:3]
    assert first["entry_time"] == "2024-03-01T10:00:00Z"
    qty = float(first["qty"])
    assert life(0, 12) == [
        ("fill", f"buy {qty:g} BTC/USDT at {float(first['entry_price']):g} (entry, signal)")
    ]
    # Life 2: down while T0 + 12h .. T0 + 31h close (the exit decided at the close of 06:00 is missed);
    # T0 + 32h .. T0 + 55h close during the start: still long, it exits at the next cross down, as the
    # backtest's second trade does, then enters with the third.
    assert first["exit_time"] == "2024-03-02T06:00:00Z" and third["entry_time"] == "2024-03-03T06:00:00Z"
    events = life(20, 24)
    assert events[:2] == [
        ("missed", "exit_long at the bar closing 2024-03-02 06:00 UTC, which closed while the process was "
                   "down: not acted on"),
        ("fill", f"sell {qty:g} BTC/USDT at {float(second['exit_price']):g} (exit, signal)"),
    ]  # fmt: skip
    assert len(events) == 3 and events[2][1].startswith("buy ")
    assert events[2][1].endswith(f" BTC/USDT at {float(third['entry_price']):g} (entry, signal)")
