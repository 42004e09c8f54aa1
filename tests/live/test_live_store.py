"""The live store on SQLite and (where a server runs) PostgreSQL.

Exact round trips, write-ahead intents that stay single under concurrent writers, fills booked once, and
all-or-nothing checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from runtime.store.live import (
    Checkpoint,
    Deployment,
    FillRow,
    Intent,
    LiveEvent,
    LiveStore,
    SleeveStatus,
    SpecVersion,
    deployment_key,
)
from runtime.store.schema import open_store

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
HOUR = 3_600_000
KEY = deployment_key("majors", "live", "binance", "acct-1f2e")


@pytest.fixture
def store(db_url: str) -> LiveStore:
    """A LiveStore on the fresh database."""
    return LiveStore(open_store(db_url))


def _deployment(**changes: object) -> Deployment:
    """A live deployment of the `majors` portfolio."""
    d = Deployment(
        key=KEY,
        name="majors",
        mode="live",
        exchange="binance",
        account="acct-1f2e",
        spec_path="specs/majors.strat",
        spec_sha="ab" * 32,
        state="running",
        pid=4242,
        host="box-1",
        started_ms=T0,
        heartbeat_ms=T0 + 5_000,
        baseline=(("BTC", 0.125), ("USDT", 10_000.0)),
    )
    return dataclasses.replace(d, **changes)  # type: ignore[arg-type]


def _intent(client_id: str = "st-7f3a-0001", **changes: object) -> Intent:
    """A pending entry order of the btc sleeve."""
    i = Intent(
        client_id=client_id,
        deployment=KEY,
        sleeve="btc",
        symbol="BTC/USDT",
        bar_close_ms=T0 + HOUR,
        intent="entry",
        reason="sma cross",
        side="buy",
        qty=0.1,
        status="pending",
        order_id="",
        filled=0.0,
        booked=0.0,
        avg_price=math.nan,
        fee=0.0,
        created_ms=T0 + HOUR + 12,
        updated_ms=T0 + HOUR + 12,
        error="",
    )
    return dataclasses.replace(i, **changes)  # type: ignore[arg-type]


def _fill(trade_id: str = "9001", **changes: object) -> FillRow:
    """A partial fill of the btc sleeve's entry."""
    f = FillRow(
        KEY, "st-7f3a-0001", trade_id, "btc", "BTC/USDT", "buy", 0.04, 42_000.1, 0.00004, "BTC", T0 + 1
    )
    return dataclasses.replace(f, **changes)  # type: ignore[arg-type]


def _checkpoint(time_ms: int, equity: float = 10_050.25, **changes: object) -> Checkpoint:
    """A checkpoint with one open sleeve (an open order) and one flat sleeve (NaN entry price)."""
    btc = SleeveStatus(
        "btc", "BTC/USDT", "1h", 0.06, 42_000.1, -1.5, 3.25, False, False, time_ms, (_intent(),)
    )
    eth = SleeveStatus("eth", "ETH/USDT", "4h", 0.0, math.nan, 0.0, 0.0, True, False, time_ms - 3 * HOUR)
    c = Checkpoint(
        deployment=KEY,
        time_ms=time_ms,
        snapshot='{"cash": 5000.5, "positions": [1, 2]}',
        engine='{"cooldowns": {"btc": 3}}',
        feeds=(("BTC/USDT", "1h", time_ms), ("ETH/USDT", "4h", time_ms - 3 * HOUR)),
        sleeves=(btc, eth),
        equity=equity,
        cash=5_000.5,
    )
    return dataclasses.replace(c, **changes)  # type: ignore[arg-type]


def test_deployments(store: LiveStore) -> None:
    assert store.deployment(KEY) is None and store.deployments() == []
    store.save_deployment(_deployment())
    paper = _deployment(key="majors:paper:binance:paper", mode="paper", account="paper", baseline=())
    store.save_deployment(paper)
    assert store.deployment(KEY) == _deployment()
    # By key: "majors:live..." sorts before "majors:paper...".
    assert store.deployments() == [_deployment(), paper]
    # Saving again replaces every field (a restart by another process, a new spec).
    restarted = _deployment(pid=77, host="box-2", started_ms=T0 + HOUR, spec_sha="cd" * 32)
    store.save_deployment(restarted)
    assert store.deployment(KEY) == restarted
    store.heartbeat(KEY, T0 + 2 * HOUR)
    assert store.deployment(KEY) == dataclasses.replace(restarted, heartbeat_ms=T0 + 2 * HOUR)
    store.set_state(KEY, "halted", T0 + 3 * HOUR)
    assert store.deployment(KEY) == dataclasses.replace(restarted, state="halted", heartbeat_ms=T0 + 3 * HOUR)
    assert store.deployment(paper.key) == paper


def test_spec_versions_once_per_sha(store: LiveStore) -> None:
    store.save_spec_version(KEY, "ab" * 32, "strategy a {}\n", T0)
    store.save_spec_version(KEY, "cd" * 32, "strategy b {}\n", T0 + HOUR)
    # The same sha again keeps the first record (its text and time).
    store.save_spec_version(KEY, "ab" * 32, "changed", T0 + 2 * HOUR)
    store.save_spec_version("other:paper:binance:paper", "ab" * 32, "strategy a {}\n", T0 + 5)
    assert store.spec_versions(KEY) == [
        SpecVersion("ab" * 32, "strategy a {}\n", T0),
        SpecVersion("cd" * 32, "strategy b {}\n", T0 + HOUR),
    ]
    assert store.spec_versions("none") == []


def test_intents_write_ahead_update_and_list(store: LiveStore) -> None:
    first = _intent()
    assert store.write_intent(first) == first
    # Writing the same client id again returns the stored intent unchanged.
    assert repr(store.write_intent(_intent(qty=5.0, side="sell"))) == repr(first)
    acked = _intent(status="open", order_id="88123", updated_ms=T0 + HOUR + 40)
    store.update_intent(acked)
    assert repr(store.intent(first.client_id)) == repr(acked)
    assert store.intent("nope") is None
    # Older (by creation time) first; finished ones left out with unfinished=True.
    older = _intent(
        "st-7f3a-0000", created_ms=T0, status="filled", filled=0.1, booked=0.1, avg_price=41_000.0
    )
    unknown = _intent("st-7f3a-0002", created_ms=T0 + 2 * HOUR, status="unknown")
    missed = _intent("st-7f3a-0003", created_ms=T0 + 3 * HOUR, status="missed")
    for i in (unknown, older, missed):
        store.write_intent(i)
    store.write_intent(_intent("other-1", deployment="other:paper:binance:paper"))
    assert [i.client_id for i in store.intents(KEY)] == [
        "st-7f3a-0000", "st-7f3a-0001", "st-7f3a-0002", "st-7f3a-0003",
    ]  # fmt: skip
    assert [i.client_id for i in store.intents(KEY, unfinished=True)] == ["st-7f3a-0001", "st-7f3a-0002"]
    assert store.intents(KEY)[0] == older
    # update_intent inserts an order the store lacks (one adopted from the exchange).
    adopted = _intent("st-7f3a-0009", status="open", order_id="555", created_ms=T0 + 9 * HOUR)
    store.update_intent(adopted)
    assert store.intents(KEY)[-1] == dataclasses.replace(adopted)


def test_fills_are_recorded_once(store: LiveStore) -> None:
    assert store.record_fill(_fill("9001")) is True
    assert store.record_fill(_fill("9002", qty=0.06, price=42_000.2)) is True
    # The same trade of the same order again (a reconciliation finding it twice) is not new.
    assert store.record_fill(_fill("9001", qty=1.0)) is False
    # The same trade id on another order is another fill.
    assert store.record_fill(_fill("9001", client_id="st-7f3a-0002")) is True
    store.record_fill(_fill("1", deployment="other:paper:binance:paper", client_id="other-1"))
    assert store.fills(KEY) == [
        _fill("9001"),
        _fill("9002", qty=0.06, price=42_000.2),
        _fill("9001", client_id="st-7f3a-0002"),
    ]
    assert store.fills("none") == []


def test_checkpoint_round_trip(store: LiveStore) -> None:
    assert store.last_checkpoint(KEY) is None
    store.write_intent(_intent())
    first = _checkpoint(T0 + HOUR)
    filled = _intent(status="filled", filled=0.1, booked=0.1, avg_price=42_000.15, fee=4.2, updated_ms=T0 + 7)
    events = (
        LiveEvent(T0 + 7, "fill", "btc", "bought 0.1 BTC/USDT at 42,000.15"),
        LiveEvent(T0 + 8, "start", "", "up"),
    )
    store.checkpoint(first, intents=(filled,), events=events)
    # NaN does not equal itself, so the round trip is compared through repr (exact floats, nan, tuples).
    assert repr(store.last_checkpoint(KEY)) == repr(first)
    assert repr(store.intent(filled.client_id)) == repr(filled)
    assert store.events(KEY) == [(1, events[0]), (2, events[1])]
    assert store.equity(KEY) == [(T0 + HOUR, 10_050.25, 5_000.5)]
    assert store.feeds(KEY) == [("BTC/USDT", "1h", T0 + HOUR), ("ETH/USDT", "4h", T0 - 2 * HOUR)]
    # The next checkpoint replaces the row, appends an equity point, and moves the feeds it names.
    second = _checkpoint(T0 + 2 * HOUR, equity=10_100.0, feeds=(("BTC/USDT", "1h", T0 + 2 * HOUR),))
    store.checkpoint(second)
    assert repr(store.last_checkpoint(KEY)) == repr(second)
    assert store.equity(KEY) == [(T0 + HOUR, 10_050.25, 5_000.5), (T0 + 2 * HOUR, 10_100.0, 5_000.5)]
    assert store.feeds(KEY) == [("BTC/USDT", "1h", T0 + 2 * HOUR), ("ETH/USDT", "4h", T0 - 2 * HOUR)]
    assert len(store.events(KEY)) == 2


def test_checkpoint_is_all_or_nothing(store: LiveStore) -> None:
    store.write_intent(_intent())
    first = _checkpoint(T0 + HOUR)
    store.checkpoint(first, events=(LiveEvent(T0, "start", "", "up"),))
    # A later checkpoint whose second event breaks a constraint (kind is NOT NULL) fails half-way:
    # its checkpoint row, intent update and first event were already written in the transaction.
    bad = (LiveEvent(T0 + 2 * HOUR, "fill", "btc", "ok"), LiveEvent(T0 + 2 * HOUR, None, "", "bad"))  # type: ignore[arg-type]
    later = _checkpoint(T0 + 2 * HOUR, equity=1.0, feeds=(("BTC/USDT", "1h", T0 + 2 * HOUR),))
    with pytest.raises(IntegrityError):
        store.checkpoint(later, intents=(_intent(status="filled", filled=0.1),), events=bad)
    assert repr(store.last_checkpoint(KEY)) == repr(first)
    assert repr(store.intent("st-7f3a-0001")) == repr(_intent())
    assert store.events(KEY) == [(1, LiveEvent(T0, "start", "", "up"))]
    assert store.equity(KEY) == [(T0 + HOUR, 10_050.25, 5_000.5)]
    assert store.feeds(KEY) == [("BTC/USDT", "1h", T0 + HOUR), ("ETH/USDT", "4h", T0 - 2 * HOUR)]
    # The store still works after the rolled-back transaction.
    store.checkpoint(later)
    assert store.last_checkpoint(KEY) is not None and store.equity(KEY)[-1] == (T0 + 2 * HOUR, 1.0, 5_000.5)


def test_events_newest_last_with_limit_and_since(store: LiveStore) -> None:
    events = [LiveEvent(T0 + n, "order", "btc" if n % 2 else "", f"event {n}") for n in range(5)]
    store.add_events(KEY, events[:3])
    store.add_events("other:paper:binance:paper", [LiveEvent(T0, "start", "", "other")])
    store.add_events(KEY, [*events[3:], LiveEvent(T0 + 9, "risk", "", "paused btc", who="telegram:@ann")])
    everything = store.events(KEY)
    assert [event_id for event_id, _ in everything] == [1, 2, 3, 5, 6, 7]
    assert [e for _, e in everything] == [
        *events,
        LiveEvent(T0 + 9, "risk", "", "paused btc", "telegram:@ann"),
    ]
    # The newest `limit`, still oldest first; since_id for polling.
    assert [i for i, _ in store.events(KEY, limit=2)] == [6, 7]
    assert [i for i, _ in store.events(KEY, since_id=3)] == [5, 6, 7]
    assert [i for i, _ in store.events(KEY, limit=1, since_id=3)] == [7]
    assert store.events(KEY, since_id=7) == []


def test_values_round_trip_exactly(store: LiveStore) -> None:
    awkward = (0.1 + 0.2, 1e-300, 1.7976931348623157e308, -2.5e-12, math.inf, -math.inf, math.nan)
    for n, value in enumerate(awkward):
        i = _intent(f"x-{n}", qty=value, filled=value, booked=value, avg_price=value, fee=value)
        store.write_intent(i)
        assert repr(store.intent(i.client_id)) == repr(i)
        f = _fill(str(n), qty=value, price=value, fee=value)
        store.record_fill(f)
        assert repr(store.fills(KEY)[-1]) == repr(f)
        c = _checkpoint(T0 + n, equity=value, cash=value)
        store.checkpoint(c)
        assert repr(store.last_checkpoint(KEY)) == repr(c)
        assert repr(store.equity(KEY)[-1]) == repr((T0 + n, value, value))
    store.save_deployment(_deployment(baseline=(("BTC", 0.1 + 0.2), ("ETH", 1e-300), ("USDT", 0.0))))
    assert store.deployment(KEY) == _deployment(baseline=(("BTC", 0.1 + 0.2), ("ETH", 1e-300), ("USDT", 0.0)))
    # Text fields keep every character (quotes, newlines, non-ASCII).
    text = 'line 1\nline "2" → ünïcode \\ end'
    store.add_events(KEY, [LiveEvent(T0, "error", "btc", text, who="api:ann")])
    assert store.events(KEY, limit=1)[0][1] == LiveEvent(T0, "error", "btc", text, who="api:ann")


# The child process of the concurrency test: open the store, say "ready", wait for "go", write the intent.
_CHILD = """
import dataclasses, json, sys
from runtime.store.live import Intent, LiveStore
from runtime.store.schema import open_store
store = LiveStore(open_store(sys.argv[1]))
intent = Intent(**json.loads(sys.argv[2]))
print("ready", flush=True)
sys.stdin.readline()
print(json.dumps(dataclasses.asdict(store.write_intent(intent))), flush=True)
"""


def test_write_ahead_is_idempotent_under_four_processes(db_url: str) -> None:
    store = LiveStore(open_store(db_url))
    # Four processes write the same client id at once, each with its own quantity.
    variants = [dataclasses.asdict(_intent(qty=0.1 * (n + 1), created_ms=T0 + n)) for n in range(4)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, db_url, json.dumps(v)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for v in variants
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    answers = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        answers.append(json.loads(out))
    # Every process got the one stored intent back: the one that won the race.
    stored = store.intents(KEY)
    assert len(stored) == 1
    winner = dataclasses.asdict(stored[0])
    assert repr(winner) in {repr(v) for v in variants}
    assert [repr(a) for a in answers] == [repr(winner)] * 4
