"""Live trading under faults and crashes: `strat run --live` against the fake exchange, killed and restarted.

The fake answers order requests with random faults (responses lost after executing, 5xx before or after
executing, timeouts, dropped connections, 429, fills in parts), the engine is killed with SIGKILL at
random moments several times and restarted, and the candles keep closing meanwhile. Afterwards: no
client order id was executed twice, every exchange fill was booked exactly once, and the store's
position equals what the exchange account holds.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from fake_binance import FakeBinance
from test_paper import HOUR, T0, _env, _status

SPEC = """\
strat 1
strategy churn:
    symbol: "BINANCE:BTC/USDT"
    timeframe: 1h
    fast_ma = sma(close, 2)
    slow_ma = sma(close, 5)
    entry long when fast_ma crosses above slow_ma
    exit long when fast_ma crosses below slow_ma
    size: equity_pct(100%)
    execution:
        fee: 0.1%
"""
KEY, SECRET = "chaos-key-8c1f", "chaos-secret-5d2e"  # the fake account's credentials


@pytest.fixture
def market(shared_data: Path) -> Iterator[FakeBinance]:
    """The fake exchange with real BTC/USDT candles and 10,000 USDT, faulty on orders."""
    server = FakeBinance(
        data_dir=shared_data,
        now_ms=T0 - HOUR // 2,
        api_key=KEY,
        secret=SECRET,
        timeout_s=0.6,
        retry_after_s=0,
    ).start()
    server.deposit("USDT", 10_000)
    kinds = ("lost", "503", "timeout", "timeout_exec", "502_exec", "drop_exec", "429", "partial")
    server.chaos(0.3, seed=7, kinds=kinds, routes=("POST /api/v3/order", "GET /api/v3/order"))
    yield server
    server.stop()


def _start(tmp_path: Path, market: FakeBinance, db: str, *extra: str) -> subprocess.Popen[str]:
    """Start the live engine as a `strat` process (`extra`: more options)."""
    env = _env() | {"STRAT_BINANCE_API_KEY": KEY, "STRAT_BINANCE_API_SECRET": SECRET}
    return subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "run", "spec.strat", "--live",
         "--api", "127.0.0.1:0", "--exchange-url", market.url,
         "--db", db, "--out", str(tmp_path / "live"), "--poll", "50ms", *extra],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _last_bar(tmp_path: Path) -> int:
    """Close time of the last bar the engine has checkpointed (0 before the first checkpoint)."""
    if not (tmp_path / "store.db").exists():
        return 0
    with sqlite3.connect(tmp_path / "store.db", timeout=30) as con:
        try:
            row = con.execute("select max(last_bar_ms) from live_feeds").fetchone()
        except sqlite3.OperationalError:  # the tables are being created
            return 0
    return int(row[0] or 0)


def _wait_bar(tmp_path: Path, proc: subprocess.Popen[str], close_ms: int) -> None:
    """Wait until the engine has checkpointed the bar closing at `close_ms`."""
    deadline = time.monotonic() + 120
    while _last_bar(tmp_path) < close_ms:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"the engine did not reach {close_ms}"
        time.sleep(0.05)


def test_kill_restart_under_faults_loses_and_duplicates_nothing(market: FakeBinance, tmp_path: Path) -> None:
    """Several SIGKILLs at random moments with faulty order requests: every order once, every fill once."""
    (tmp_path / "spec.strat").write_text(SPEC)
    db = f"sqlite:///{tmp_path / 'store.db'}"
    rng = random.Random(11)
    closed = T0 - HOUR  # close time of the last closed bar at the fake's clock
    lives = 6
    for life in range(lives):
        proc = _start(tmp_path, market, db)
        # Up to date first (its start-up catches up the bars that closed while it was down).
        _wait_bar(tmp_path, proc, closed)
        # Bars close one by one, each acted on, while orders meet faults.
        for _ in range(rng.randint(5, 10)):
            market.advance(HOUR)
            closed += HOUR
            _wait_bar(tmp_path, proc, closed)
        if life < lives - 1:
            # One more bar closes and the process is killed at a random moment while it acts on it.
            market.advance(HOUR)
            closed += HOUR
            time.sleep(rng.uniform(0.0, 0.8))
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
            market.advance(HOUR)  # and one closes while it is down
            closed += HOUR
            continue
        # The last life settles without faults and stops cleanly.
        market.chaos(0.0, seed=0, kinds=())
        market.advance(HOUR)
        closed += HOUR
        _wait_bar(tmp_path, proc, closed)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert KEY not in out + err and SECRET not in out + err
    ids = [o.client_id for o in market.orders]
    print((tmp_path / "live" / "events.csv").read_text()[-4000:])
    assert len(ids) > 4, "the strategy should have traded"
    assert len(ids) == len(set(ids)), "a client order id was executed twice"
    # Every fill the exchange made was booked once: the store's booked quantity per order is the exchange's.
    with sqlite3.connect(tmp_path / "store.db") as con:
        booked = dict(con.execute("select client_id, booked from live_intents").fetchall())
    for order in market.orders:
        assert Decimal(str(booked[order.client_id])) == order.filled, order.client_id
    # The store's position equals the exchange's balance (the account started with no BTC).
    status = _status(db)["deployments"][0]
    position = sum(s["position"] for s in status["sleeves"])
    held = market.balances["BTC"].free + market.balances["BTC"].locked if "BTC" in market.balances else 0
    assert Decimal(str(position)) == held
    # The credentials appear nowhere: not in the store, the outputs, the status or the process's output.
    assert KEY not in json.dumps(status) and SECRET not in json.dumps(status)
    for path in [tmp_path / "store.db", *(tmp_path / "live").iterdir()]:
        data = path.read_bytes()
        assert KEY.encode() not in data and SECRET.encode() not in data, path
