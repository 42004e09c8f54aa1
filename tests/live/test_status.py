"""`strat status` and `strat status --json` as a user runs them, over a store written through LiveStore."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from runtime.data.times import wall_clock_ms
from runtime.store.live import (
    Checkpoint,
    Deployment,
    Intent,
    LiveEvent,
    LiveStore,
    SleeveStatus,
    deployment_key,
)
from runtime.store.schema import close_store, open_store

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
HOUR = 3_600_000
LIVE = deployment_key("majors", "live", "binance", "acct-1f2e")
PAPER = deployment_key("majors", "paper", "binance", "paper")
HALTED = deployment_key("alts", "paper", "binance", "paper")


def _strat(*argv: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run `strat <argv>` in a fresh process; its standard output (exit code 0 and no stderr asserted)."""
    done = subprocess.run(
        [sys.executable, "-m", "runtime.cli", *argv], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert (done.returncode, done.stderr) == (0, "")
    return done.stdout


def _intent(client_id: str, sleeve: str, symbol: str, status: str, qty: float, filled: float) -> Intent:
    """An order intent of the live deployment."""
    return Intent(
        client_id, LIVE, sleeve, symbol, T0 + HOUR, "entry", "rule", "buy", qty, status, "", filled, filled,
        math.nan, 0.0, T0 + HOUR, T0 + HOUR, "",
    )  # fmt: skip


def _deployment(key: str, name: str, mode: str, account: str, state: str, heartbeat_ms: int) -> Deployment:
    """A deployment on binance."""
    return Deployment(
        key, name, mode, "binance", account, f"specs/{name}.strat", ("ab" if mode == "live" else "cd") * 32,
        state, 4242, "box-1", T0, heartbeat_ms, (("USDT", 10_000.0),),
    )  # fmt: skip


def _populate(url: str) -> int:
    """Three deployments: live running (fresh heartbeat), paper killed (old heartbeat), one halted.

    Returns the live deployment's heartbeat (UTC ms).
    """
    store = LiveStore(open_store(url))
    now = wall_clock_ms()
    store.save_deployment(_deployment(LIVE, "majors", "live", "acct-1f2e", "running", now))
    store.save_deployment(_deployment(PAPER, "majors", "paper", "paper", "running", T0 + 5_000))
    store.save_deployment(_deployment(HALTED, "alts", "paper", "paper", "halted", T0 + 9_000))
    btc = SleeveStatus("btc", "BTC/USDT", "1h", 0.06, 42_000.1, -1.5, 3.25, False, False, T0 + HOUR)
    eth = SleeveStatus("eth", "ETH/USDT", "4h", -2.5, 2_300.0, 12.0, -0.75, False, True, T0)
    flat = SleeveStatus("sol", "SOL/USDT", "1h", 0.0, math.nan, 0.0, 0.0, True, False, T0 + HOUR)
    checkpoint = Checkpoint(
        LIVE, T0 + HOUR, "{}", "{}", (("BTC/USDT", "1h", T0 + HOUR), ("ETH/USDT", "4h", T0)),
        (btc, eth, flat), 10_050.25, 5_000.5,
    )  # fmt: skip
    store.checkpoint(checkpoint, events=(LiveEvent(T0, "start", "", "started"),))
    # Open orders: what the intents table holds unfinished (a filled one is not shown; a sleeve that no
    # checkpoint lists yet still shows its order).
    store.write_intent(_intent("st-0001", "btc", "BTC/USDT", "partial", 0.1, 0.04))
    store.write_intent(_intent("st-0002", "btc", "BTC/USDT", "filled", 0.2, 0.2))
    store.write_intent(_intent("st-0003", "ada", "ADA/USDT", "pending", 100.0, 0.0))
    close_store(url)
    return now


def test_status_json(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    heartbeat = _populate(url)
    shown = json.loads(_strat("status", "--json", "--db", url, cwd=tmp_path))
    common = {"exchange": "binance", "feeds": [], "sleeves": [], "equity": None, "cash": None}
    assert shown == {
        "deployments": [
            {
                **common,
                "key": HALTED, "name": "alts", "mode": "paper", "account": "paper", "spec_sha256": "cd" * 32,
                "state": "halted", "heartbeat_ms": T0 + 9_000,
            },
            {
                "key": LIVE, "name": "majors", "mode": "live", "exchange": "binance", "account": "acct-1f2e",
                "spec_sha256": "ab" * 32, "state": "running", "heartbeat_ms": heartbeat,
                "feeds": [
                    {"symbol": "BTC/USDT", "timeframe": "1h", "last_bar_ms": T0 + HOUR},
                    {"symbol": "ETH/USDT", "timeframe": "4h", "last_bar_ms": T0},
                ],
                "sleeves": [
                    {
                        "sleeve": "btc", "symbol": "BTC/USDT", "timeframe": "1h", "position": 0.06,
                        "avg_entry": 42_000.1,
                        "open_orders": [{"client_id": "st-0001", "side": "buy", "qty": 0.1, "filled": 0.04}],
                        "realized_pnl": -1.5, "unrealized_pnl": 3.25, "paused": False, "halted": False,
                    },
                    {
                        "sleeve": "eth", "symbol": "ETH/USDT", "timeframe": "4h", "position": -2.5,
                        "avg_entry": 2_300.0, "open_orders": [], "realized_pnl": 12.0,
                        "unrealized_pnl": -0.75, "paused": False, "halted": True,
                    },
                    {
                        "sleeve": "sol", "symbol": "SOL/USDT", "timeframe": "1h", "position": 0.0,
                        "avg_entry": None, "open_orders": [], "realized_pnl": 0.0, "unrealized_pnl": 0.0,
                        "paused": True, "halted": False,
                    },
                    {
                        "sleeve": "ada", "symbol": "ADA/USDT", "timeframe": None, "position": None,
                        "avg_entry": None,
                        "open_orders": [{"client_id": "st-0003", "side": "buy", "qty": 100.0, "filled": 0.0}],
                        "realized_pnl": None, "unrealized_pnl": None, "paused": None, "halted": None,
                    },
                ],
                "equity": 10_050.25,
                "cash": 5_000.5,
            },
            {
                # Stored as running, but its heartbeat is years old: the process is gone.
                **common,
                "key": PAPER, "name": "majors", "mode": "paper", "account": "paper", "spec_sha256": "cd" * 32,
                "state": "stopped", "heartbeat_ms": T0 + 5_000,
            },
        ]
    }  # fmt: skip


def test_status_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    _populate(url)
    lines = [line.rstrip() for line in _strat("status", "--db", url, cwd=tmp_path).splitlines()]
    assert [line for line in lines if line] == [
        " " * 55 + "Deployments",
        " Name    Mode   Exchange  Account    Spec          State                                                Equity      Cash",  # noqa: E501
        " " + "─" * 119,
        " alts    paper  binance   paper      cdcdcdcdcdcd  halted                                                    –         –",  # noqa: E501
        " majors  live   binance   acct-1f2e  abababababab  running                                           10,050.25  5,000.50",  # noqa: E501
        " majors  paper  binance   paper      cdcdcdcdcdcd  stopped (no heartbeat since 2024-01-01 00:00:05)          –         –",  # noqa: E501
        "   majors (live, binance): feeds",
        " Symbol    TF  Last bar (UTC)",
        " " + "─" * 33,
        " BTC/USDT  1h  2024-01-01 01:00:00",
        " ETH/USDT  4h  2024-01-01 00:00:00",
        " " * 36 + "majors (live, binance): sleeves",
        " Sleeve  Symbol    TF  Position  Avg entry  Realized  Unrealized  Flags   Open orders",
        " " + "─" * 102,
        " btc     BTC/USDT  1h      0.06  42,000.10     -1.50        3.25  –       st-0001 buy 0.1 (filled 0.04)",  # noqa: E501
        " eth     ETH/USDT  4h      -2.5   2,300.00     12.00       -0.75  halted  –",
        " sol     SOL/USDT  1h         0          –      0.00        0.00  paused  –",
        " ada     ADA/USDT  –          –          –         –           –  –       st-0003 buy 100 (filled 0)",  # noqa: E501
    ]


def test_no_store_prints_a_message_and_creates_nothing(tmp_path: Path) -> None:
    # The default store (.strat/strat.db under the current folder) and one given by --db.
    env = {k: v for k, v in os.environ.items() if k != "STRAT_DB_URL"}
    assert _strat("status", cwd=tmp_path, env=env) == "no paper or live deployments\n"
    assert json.loads(_strat("status", "--json", cwd=tmp_path, env=env)) == {"deployments": []}
    missing = tmp_path / "sub" / "none.db"
    assert _strat("status", "--db", f"sqlite:///{missing}", cwd=tmp_path) == "no paper or live deployments\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_store_without_deployments(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    open_store(url)
    close_store(url)
    assert _strat("status", "--db", url, cwd=tmp_path) == "no paper or live deployments\n"
