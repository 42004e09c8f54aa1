"""Crash recovery and reconciliation of `strat run --live` against the fake exchange, step by step.

- Killed while an order request is in flight (the exchange executed it, the answer had not arrived): on
  restart the written intent is looked up by its client id, its fill booked once, nothing resent.
- An order of ours the store does not know (placed with the deployment's client id prefix while the
  engine was down) is adopted on start and its fill booked.
- A position that disagrees with the exchange's balance pauses the sleeve with an event.
- `--live` without credentials and a spot short are refused before anything starts.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from fake_binance import FakeBinance
from test_chaos import KEY, SECRET, SPEC, _last_bar, _start, _wait_bar
from test_paper import HOUR, T0, _env, _status, strat

from runtime.exchange.client import ExchangeClient
from runtime.live.orders import client_id


@pytest.fixture
def market(shared_data: Path) -> Iterator[FakeBinance]:
    """The fake exchange with real BTC/USDT candles and 10,000 USDT; late answers take 5 s."""
    server = FakeBinance(
        data_dir=shared_data, now_ms=T0 - HOUR // 2, api_key=KEY, secret=SECRET, timeout_s=5.0,
        retry_after_s=0,
    ).start()  # fmt: skip
    server.deposit("USDT", 10_000)
    yield server
    server.stop()


def _until(what: str, check: object, proc: subprocess.Popen[str], seconds: float = 60) -> None:
    """Wait until `check()` holds while `proc` runs."""
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM the engine; its stderr (it must exit cleanly)."""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return err


def _intents(tmp_path: Path) -> list[tuple[str, str, float, float]]:
    """(client id, status, filled, booked) of every stored intent."""
    with sqlite3.connect(tmp_path / "store.db") as con:
        return con.execute("select client_id, status, filled, booked from live_intents").fetchall()


def test_killed_with_an_order_in_flight_books_it_once_on_restart(market: FakeBinance, tmp_path: Path) -> None:
    """The exchange executed the order, the process died before the answer: booked once, never resent."""
    (tmp_path / "spec.strat").write_text(SPEC)
    db = f"sqlite:///{tmp_path / 'store.db'}"
    market.inject("POST /api/v3/order", "timeout_exec")  # executes, then answers after 5 s
    proc = _start(tmp_path, market, db)
    closed = T0 - HOUR
    _wait_bar(tmp_path, proc, closed)
    # Bars close until the first order has executed on the exchange, then the engine dies at once.
    while not market.orders:
        market.advance(HOUR)
        closed += HOUR

        def acted(bar: int = closed) -> bool:
            """Whether an order executed or the bar closing at `bar` was checkpointed."""
            return bool(market.orders) or _last_bar(tmp_path) >= bar

        _until("the bar was not processed", acted, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    (cid,) = [o.client_id for o in market.orders]
    # Written ahead, outcome unknown to the store.
    assert [(i[0], i[1], i[3]) for i in _intents(tmp_path)] == [(cid, "pending", 0.0)]
    proc = _start(tmp_path, market, db)
    _until("the restart did not book the fill", lambda: _intents(tmp_path)[0][3] > 0, proc)
    _stop(proc)
    assert [o.client_id for o in market.orders] == [cid]  # nothing resent
    assert market.count("POST /api/v3/order") == 1
    ((_, status, filled, booked),) = _intents(tmp_path)
    assert status == "filled" and Decimal(str(booked)) == market.orders[0].filled == Decimal(str(filled))
    position = _status(db)["deployments"][0]["sleeves"][0]["position"]
    assert Decimal(str(position)) == market.balances["BTC"].free > 0


def test_an_order_of_ours_the_store_lacks_is_adopted(market: FakeBinance, tmp_path: Path) -> None:
    """A resting order with the deployment's client id prefix, placed while the engine was down."""
    (tmp_path / "spec.strat").write_text(SPEC)
    db = f"sqlite:///{tmp_path / 'store.db'}"
    proc = _start(tmp_path, market, db)
    _wait_bar(tmp_path, proc, T0 - HOUR)
    key = _status(db)["deployments"][0]["key"]
    _stop(proc)
    # While it is down, an order of ours fills (a marketable limit buy: it fills at once).
    cid = client_id(key, 0, 42, "entry")
    price = float(market.price("BTC/USDT")) * 1.01
    account = ExchangeClient("binance", api_url=market.url, api_key=KEY, secret=SECRET, rate_limit=False)
    account.sync.create_order("BTC/USDT", "limit", "buy", 0.01, price, {"newClientOrderId": cid})
    proc = _start(tmp_path, market, db)
    _until("not adopted", lambda: any(i[0] == cid and i[3] > 0 for i in _intents(tmp_path)), proc)
    _stop(proc)
    events = (tmp_path / "live" / "events.csv").read_text()
    assert f"adopted order {cid} (buy 0.01)" in events
    sleeve = _status(db)["deployments"][0]["sleeves"][0]
    assert Decimal(str(sleeve["position"])) == market.balances["BTC"].free == Decimal("0.01")


def test_a_position_the_exchange_disagrees_with_pauses_the_sleeve(
    market: FakeBinance, tmp_path: Path
) -> None:
    """BTC appears in the account that the store does not expect: the sleeve stops trading, with an event."""
    (tmp_path / "spec.strat").write_text(SPEC)
    db = f"sqlite:///{tmp_path / 'store.db'}"
    proc = _start(tmp_path, market, db)
    _wait_bar(tmp_path, proc, T0 - HOUR)
    _stop(proc)
    market.deposit("BTC", 1)
    proc = _start(tmp_path, market, db)
    _until("not paused", lambda: _status(db)["deployments"][0]["sleeves"][0]["paused"], proc, 120)
    _stop(proc)
    events = (tmp_path / "live" / "events.csv").read_text()
    assert "BTC: exchange holds 1, the store expects 0: paused" in events


def test_flatten_on_exit_closes_the_position(market: FakeBinance, tmp_path: Path) -> None:
    """Stopped with --flatten-on-exit while long: a market exit, and the account holds no BTC."""
    (tmp_path / "spec.strat").write_text(SPEC)
    db = f"sqlite:///{tmp_path / 'store.db'}"
    proc = _start(tmp_path, market, db, "--flatten-on-exit")
    closed = T0 - HOUR
    _wait_bar(tmp_path, proc, closed)
    while not (market.balances.get("BTC") and market.balances["BTC"].free > 0):
        market.advance(HOUR)
        closed += HOUR
        _wait_bar(tmp_path, proc, closed)
    _stop(proc)
    assert market.balances["BTC"].free == 0
    assert market.orders[-1].side == "SELL"
    sleeve = _status(db)["deployments"][0]["sleeves"][0]
    assert sleeve["position"] == 0.0
    assert (tmp_path / "live" / "trades.csv").read_text().splitlines()[-1].split(",")[11] == "risk"


def test_fees_in_the_bought_asset_and_partial_fills(market: FakeBinance, tmp_path: Path) -> None:
    """Binance takes a buy's fee in BTC and fills in parts: positions and balances still agree.

    Each buy's position is what arrived (bought minus the BTC fee); the exit sells it rounded down to the
    lot step, and the rest under a step is written off as dust, expected in the balance ever after, so
    reconciliation (at every start) pauses nothing.
    """
    market.fee_asset = "received"
    (tmp_path / "spec.strat").write_text(SPEC)
    db = f"sqlite:///{tmp_path / 'store.db'}"
    closed = T0 - HOUR
    for _life in range(2):
        proc = _start(tmp_path, market, db)
        _wait_bar(tmp_path, proc, closed)
        for _ in range(14):
            market.inject("POST /api/v3/order", "partial")
            market.advance(HOUR)
            closed += HOUR
            _wait_bar(tmp_path, proc, closed)
        _stop(proc)
    sells = [o for o in market.orders if o.side == "SELL"]
    assert len(sells) >= 2 and any(len(o.fills) > 1 for o in market.orders)  # traded, in parts
    events = (tmp_path / "live" / "events.csv").read_text()
    assert "paused" not in events and "rejected" not in events
    sleeve = _status(db)["deployments"][0]["sleeves"][0]
    held = market.balances["BTC"].free
    # What the account holds is the open position plus the dust of the closed ones (each under a step).
    dust = held - Decimal(str(sleeve["position"]))
    assert Decimal(0) <= dust < Decimal("0.00001") * len(sells)
    with sqlite3.connect(tmp_path / "store.db") as con:
        fees = con.execute("select fee_asset, count(*) from live_fills group by fee_asset").fetchall()
    assert dict(fees).keys() == {"BTC", "USDT"}


def test_refusals_before_anything_starts(tmp_path: Path) -> None:
    """--live without credentials; a short entry on a spot market (E080); nothing is created."""
    (tmp_path / "spec.strat").write_text(SPEC)
    done = strat(
        "run",
        "spec.strat",
        "--live",
        "--api",
        "127.0.0.1:0",
        "--db",
        f"sqlite:///{tmp_path / 'x.db'}",
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "strat run: --live needs credentials: set STRAT_BINANCE_API_KEY and STRAT_BINANCE_API_SECRET, "
        "or put them under [binance] in .strat/secrets.toml"
    )
    (tmp_path / "short.strat").write_text(
        SPEC.replace("entry long", "entry short").replace("exit long", "exit short")
    )
    env = _env() | {"STRAT_BINANCE_API_KEY": KEY, "STRAT_BINANCE_API_SECRET": SECRET}
    done = strat(
        "run",
        "short.strat",
        "--paper",
        "--api",
        "127.0.0.1:0",
        "--db",
        f"sqlite:///{tmp_path / 'x.db'}",
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 1
    assert (
        "error E080: BINANCE:BTC/USDT is spot: short entries are not allowed in paper trading" in done.stderr
    )
    assert not (tmp_path / "x.db").exists() and not (tmp_path / "reports").exists()
    assert KEY not in done.stderr + done.stdout
