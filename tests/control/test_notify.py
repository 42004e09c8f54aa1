"""Notifications: outboxes, the daily summary's clock, the Lark channel, a real paper session notifying.

The outbox (batches, spacing, retries, shutdown) is tested over a recording channel, the Lark channel
against a local fake webhook.

The session tests run `strat run --paper` against the fake exchange with STRAT_LARK_WEBHOOK pointing at a
`FakeLark` receiver on 127.0.0.1; events.csv (every event of the deployment) is the reference the
messages are checked against: each event's line arrives exactly once, in order.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import hashlib
import hmac
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from control_session import SPEC, PaperSession
from fake_binance import FakeBinance
from fake_lark import TOKEN, FakeLark
from paper_session import paper_engine
from test_paper import HOUR, T0

from runtime.backtest.metrics import iso_time
from runtime.control.bus import (
    Channel,
    DeliveryError,
    EventBus,
    Outbox,
    daily_summaries,
    next_midnight,
    notice_text,
)
from runtime.control.models import Event
from runtime.control.service import DAY_MS, ControlError, ControlService
from runtime.lark import LarkChannel, lark_sign
from runtime.store.live import LiveEvent, LiveStore
from runtime.store.runs import RunStore
from runtime.store.schema import open_store

KEY = "duo:paper:binance:paper"  # the deployment key of the conftest's spec on paper
# The conftest's spec with an alert rule: its crosses raise "alert" events.
ALERT_SPEC = SPEC.replace(
    "    size: equity_pct(100%)\n",
    '    size: equity_pct(100%)\n    alert "fast crossed above slow" when fast_ma crosses above slow_ma\n',
)


# ------------------------------------------------------------------------------------- test doubles


class Recorder(Channel):
    """A channel that keeps what it is given; fails its first `failures` attempts, or hangs."""

    name = "rec"

    def __init__(self, max_chars: int = 4000, min_interval_s: float = 0.0, failures: int = 0) -> None:
        """A recorder with the given limits."""
        self.max_chars = max_chars  # longest message
        self.min_interval_s = min_interval_s  # least time between messages, seconds
        self.failures = failures  # attempts still to fail
        self.hang = False  # True: every attempt waits forever
        self.sent: list[str] = []  # messages delivered
        self.times: list[float] = []  # loop time of each delivery, seconds
        self.attempts = 0  # attempts so far

    async def deliver(self, text: str) -> None:
        """Record (or fail, or hang)."""
        self.attempts += 1
        if self.hang:
            await asyncio.Event().wait()
        if self.failures:
            self.failures -= 1
            raise DeliveryError(f"boom {self.attempts}")
        self.sent.append(text)
        self.times.append(asyncio.get_running_loop().time())


async def _until(done: object, seconds: float = 5.0) -> None:
    """Wait (polling the loop) until `done()` holds."""
    async with asyncio.timeout(seconds):
        while not done():  # type: ignore[operator]
            await asyncio.sleep(0.005)


# ----------------------------------------------------------------------------------------- outbox


def test_outbox_batches_up_to_max_chars_and_splits_long_lines() -> None:
    """Queued lines join up to max_chars; a longer line is cut at a line break, else at max_chars."""
    rec = Recorder(max_chars=20)

    async def main() -> None:
        """Queue, then drain."""
        box = Outbox(rec)
        for line in ("a" * 8, "b" * 8, "c" * 8, "d" * 30, "e1\n" + "e" * 20, "f"):
            box.put(line)
        stop = asyncio.Event()
        task = asyncio.create_task(box.run(stop))
        await _until(lambda: not box.lines)
        stop.set()
        await task
        assert (box.delivered, box.failed) == (7, 0)

    asyncio.run(main())
    assert rec.sent == ["a" * 8 + "\n" + "b" * 8, "c" * 8, "d" * 20, "d" * 10, "e1", "e" * 20, "f"]


def test_outbox_spaces_messages_and_batches_what_arrives_meanwhile() -> None:
    """A message waits out the channel's interval; the lines that came meanwhile go in it."""
    rec = Recorder(min_interval_s=0.2)

    async def main() -> None:
        """One line, then three while the interval runs."""
        box = Outbox(rec)
        stop = asyncio.Event()
        task = asyncio.create_task(box.run(stop))
        box.put("one")
        await _until(lambda: rec.sent)
        for line in ("two", "three", "four"):
            box.put(line)
        await _until(lambda: len(rec.sent) == 2)
        stop.set()
        await task

    asyncio.run(main())
    assert rec.sent == ["one", "two\nthree\nfour"]
    assert rec.times[1] - rec.times[0] >= 0.2 - 1e-6  # (asyncio may wake a timer a clock tick early)


def test_outbox_retries_with_backoff_then_gives_up(caplog: pytest.LogCaptureFixture) -> None:
    """Failures are retried after 1x, 2x, ... the backoff; the last failure gives the message up, logged."""
    flaky, dead = Recorder(failures=2), Recorder(failures=99)

    async def main() -> None:
        """Deliver one message through each."""
        stop = asyncio.Event()
        boxes = [Outbox(flaky, backoff_s=0.01), Outbox(dead, retries=3, backoff_s=0.01)]
        tasks = [asyncio.create_task(b.run(stop)) for b in boxes]
        for box in boxes:
            box.put("hello")
        await _until(lambda: boxes[0].delivered == 1 and boxes[1].failed == 1)
        stop.set()
        await asyncio.gather(*tasks)

    with caplog.at_level(logging.WARNING, "strat.events"):
        asyncio.run(main())
    assert flaky.sent == ["hello"] and flaky.attempts == 3
    assert dead.sent == [] and dead.attempts == 3
    assert sorted(r.getMessage() for r in caplog.records) == [
        "rec: delivery failed (boom 1); retrying in 0.01 s",
        "rec: delivery failed (boom 1); retrying in 0.01 s",
        "rec: delivery failed (boom 2); retrying in 0.02 s",
        "rec: delivery failed (boom 2); retrying in 0.02 s",
        "rec: notification not delivered after 3 attempt(s) (boom 3): hello",
    ]


def test_outbox_at_stop_delivers_what_is_queued_once_without_spacing() -> None:
    """Lines queued when the stop comes go out at once (no interval waited), in as few messages as fit."""
    rec = Recorder(min_interval_s=3600)

    async def main() -> None:
        """Queue, stop, run."""
        box = Outbox(rec)
        stop = asyncio.Event()
        stop.set()
        for line in ("x", "y"):
            box.put(line)
        await asyncio.wait_for(box.run(stop), 5)

    asyncio.run(main())
    assert rec.sent == ["x\ny"]


def test_outbox_gives_up_a_hanging_channel_at_the_drain_deadline(caplog: pytest.LogCaptureFixture) -> None:
    """A far side that never answers holds the shutdown for `drain_s` at most; what is left is logged."""
    rec = Recorder()
    rec.hang = True

    async def run() -> None:
        """An attempt hangs; the stop comes."""
        box = Outbox(rec, timeout_s=3600, drain_s=0.1)
        stop = asyncio.Event()
        task = asyncio.create_task(box.run(stop))
        box.put("stuck")
        await _until(lambda: rec.attempts == 1)
        stop.set()
        await asyncio.wait_for(task, 5)
        assert (box.delivered, box.failed) == (0, 1)

    with caplog.at_level(logging.WARNING, "strat.events"):
        asyncio.run(run())
    assert [r.getMessage() for r in caplog.records] == [
        "rec: notification not delivered after 1 attempt(s) (no answer before the shutdown): stuck"
    ]


# ------------------------------------------------------------------------------- the daily summary


def test_next_midnight() -> None:
    """The next 00:00 UTC strictly after a time."""
    midnight = 1_709_251_200_000  # 2024-03-01 00:00 UTC
    assert next_midnight(midnight - 1) == midnight
    assert next_midnight(midnight) == midnight + DAY_MS
    assert next_midnight(midnight + DAY_MS - 1) == midnight + DAY_MS
    assert iso_time(next_midnight(midnight + 12 * HOUR)) == "2024-03-02T00:00:00Z"


class Summaries(ControlService):
    """The control service over an empty store, its daily summary recording the clock's time."""

    def __init__(self, db: Path, clock: list[int], fail_first: bool = False) -> None:
        """Over a new SQLite store; `clock[0]` is the injected time."""
        engine = open_store(f"sqlite:///{db}")
        super().__init__(LiveStore(engine), RunStore(engine))
        self.clock = clock  # the injected clock's time, ms (one item)
        self.made: list[int] = []  # clock time of each summary made, ms
        self.fail_first = fail_first  # whether the first summary fails
        self.stop = asyncio.Event()  # set after the second summary

    async def daily_summary(self, deployment: str | None = None) -> str:
        """Record the time last read; jump the clock to 2 ms before the next midnight; stop after two."""
        read = self.clock[0] - 1
        self.clock[0] = next_midnight(read) - 2
        if self.fail_first and not self.made:
            self.made.append(-1)
            raise ControlError("no deployment yet")
        self.made.append(read)
        if len([t for t in self.made if t >= 0]) == 2:
            self.stop.set()
        return "summary"


@pytest.mark.parametrize("fail_first", [False, True])
def test_daily_summaries_once_per_midnight_never_early(
    tmp_path: Path, fail_first: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A clock that creeps 1 ms a read: one summary at each midnight, none before it; a failure is logged."""
    midnight = 1_709_251_200_000  # 2024-03-01 00:00 UTC
    now = [midnight - 3]

    def clock() -> int:
        """The injected time, 1 ms later at every read."""
        now[0] += 1
        return now[0] - 1

    service = Summaries(tmp_path / "s.db", now, fail_first)
    with caplog.at_level(logging.WARNING, "strat.events"):
        asyncio.run(asyncio.wait_for(daily_summaries(service, service.stop, clock, check_s=0.001), 10))
    if fail_first:
        # The first midnight's summary failed (logged); the next two midnights have theirs.
        assert service.made == [-1, midnight + DAY_MS, midnight + 2 * DAY_MS]
        assert [r.getMessage() for r in caplog.records] == ["daily summary failed: no deployment yet"]
    else:
        assert service.made == [midnight, midnight + DAY_MS]


# ------------------------------------------------------------------------------------ bus and lines


def test_notice_text() -> None:
    """An event's line: deployment label, kind, sleeve, message, and who asked unless the engine."""
    event = Event(
        id=1, time="2024-03-01T00:00:00Z", kind="pause", sleeve="btc", deployment=KEY,
        message="paused: no new entries, exits still managed", who="api:alice",
    )  # fmt: skip
    assert (
        notice_text(event, "duo")
        == "[duo] pause btc: paused: no new entries, exits still managed (by api:alice)"
    )
    engine = event.model_copy(update={"kind": "stop", "sleeve": "", "message": "stopped", "who": "engine"})
    assert notice_text(engine, "duo") == "[duo] stop: stopped"
    assert notice_text(engine) == "stop: stopped"


def test_bus_publishes_only_what_is_saved_after_it_was_made(tmp_path: Path) -> None:
    """History is not news: a bus made over a store publishes the events saved after it, each once."""
    live = LiveStore(open_store(f"sqlite:///{tmp_path / 's.db'}"))
    live.add_events(KEY, [LiveEvent(1, "start", "", "first run"), LiveEvent(2, "stop", "", "stopped")])
    bus = EventBus(live, lambda: [KEY])
    sub = bus.subscribe()
    assert bus.look() == 0
    live.add_events(KEY, [LiveEvent(3, "start", "", "second run"), LiveEvent(4, "fill", "btc", "buy")])
    assert bus.look() == 2
    assert bus.look() == 0
    assert [(e.kind, e.message) for e in sub.taken()] == [("start", "second run"), ("fill", "buy")]


# ---------------------------------------------------------------------------------- the Lark channel


@pytest.fixture
def lark() -> Iterator[FakeLark]:
    """A fake Lark webhook checking signatures against the secret "s3cret"."""
    server = FakeLark(secret="s3cret").start()
    yield server
    server.stop()


def _sign(timestamp: str, secret: str) -> str:
    """Lark's signature, recomputed here: base64 of HMAC-SHA256 keyed "<timestamp>LF<secret>" over nothing."""
    key = (timestamp + "\n" + secret).encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def test_lark_payload_signed_and_unsigned() -> None:
    """With a secret a body carries the timestamp (seconds, a string) and its signature; without, neither."""
    signed = LarkChannel("http://127.0.0.1:9/hook", "s3cret", clock=lambda: 1_599_360_473.9)
    assert signed.payload("hi") == {
        "msg_type": "text", "content": {"text": "hi"}, "timestamp": "1599360473",
        "sign": _sign("1599360473", "s3cret"),
    }  # fmt: skip
    assert lark_sign(1_599_360_473, "s3cret") == _sign("1599360473", "s3cret")
    assert LarkChannel("http://127.0.0.1:9/hook").payload("hi") == {
        "msg_type": "text",
        "content": {"text": "hi"},
    }


def test_lark_channel_delivers_and_reports_refusals(lark: FakeLark, monkeypatch: pytest.MonkeyPatch) -> None:
    """Accepted messages arrive; HTTP 500, a bad signature and a dead port raise, never naming the address."""
    monkeypatch.setenv("STRAT_LARK_WEBHOOK", lark.url)
    monkeypatch.setenv("STRAT_LARK_SECRET", "s3cret")
    channel = LarkChannel.from_env()
    wrong = LarkChannel(lark.url, "wrong")
    dead = LarkChannel(f"http://127.0.0.1:9/open-apis/bot/v2/hook/{TOKEN}", timeout_s=2)

    async def main() -> list[str]:
        """Deliver, then fail three ways; the errors' texts."""
        await channel.deliver("first")
        errors = []
        lark.fail(1, "500")
        for ch in (channel, wrong, dead):
            with pytest.raises(DeliveryError) as caught:
                await ch.deliver("second")
            errors.append(str(caught.value))
        return errors

    errors = asyncio.run(main())
    assert lark.texts() == ["first"]
    assert errors[:2] == [
        "HTTP 500: internal error",
        "Lark refused the message (code 19021: sign match fail or timestamp is not within one hour)",
    ]
    assert errors[2].startswith("ConnectError: ")
    assert not any(TOKEN in e for e in errors)
    monkeypatch.delenv("STRAT_LARK_WEBHOOK")
    with pytest.raises(ValueError, match="STRAT_LARK_WEBHOOK is not set"):
        LarkChannel.from_env()


# ------------------------------------------------------------------------------ a real paper session


class Session(PaperSession):
    """A paper session that can close many bars at once."""

    def jump(self, hours: int) -> None:
        """Close `hours` bars at once (one poll brings them all); wait until the last is processed."""
        self.market.advance(hours * HOUR)
        self.closed += hours * HOUR
        self.wait(lambda: self.last_bar() >= iso_time(self.closed), "the bars")


def _expected(folder: Path) -> list[str]:
    """The line of every event of the session's deployment (events.csv), oldest first."""
    with (folder / "out" / "events.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [
        f"[duo] {r['kind']}{' ' + r['sleeve'] if r['sleeve'] else ''}: {r['message']}"
        + (f" (by {r['who']})" if r["who"] != "engine" else "")
        for r in rows
    ]


def _log(folder: Path) -> str:
    """The session's log."""
    return (folder / "out" / "strat.log").read_text(encoding="utf-8")


def test_unsigned_retried_and_logged(market: FakeBinance, tmp_path: Path) -> None:
    """Without a secret posts are unsigned; a webhook failing twice has the message at the 3rd try, logged."""
    lark = FakeLark().start()
    lark.fail(2, "500")
    try:
        session = Session(market, tmp_path, env={"STRAT_LARK_WEBHOOK": lark.url})
        lark.wait(lambda f: f.texts(), "the start's message")
        session.stop()
    finally:
        lark.stop()
    assert [p.accepted for p in lark.requests][:3] == [False, False, True]
    assert all(sorted(p.body) == ["content", "msg_type"] for p in lark.requests)
    assert "\n".join(lark.texts()) == "\n".join(_expected(tmp_path))
    log = _log(tmp_path)
    assert "WARNING strat.events: lark: delivery failed (HTTP 500: internal error); retrying in 1 s" in log
    assert "WARNING strat.events: lark: delivery failed (HTTP 500: internal error); retrying in 2 s" in log
    assert TOKEN not in log


def test_hanging_webhook_never_holds_trading(market: FakeBinance, tmp_path: Path) -> None:
    """A webhook that never answers: bars are processed all along, the session stops, the loss is logged."""
    lark = FakeLark(hang=True).start()
    try:
        session = Session(market, tmp_path, env={"STRAT_LARK_WEBHOOK": lark.url})
        lark.wait(lambda f: f.requests, "a post (left hanging)")
        session.bars(6)
        session.stop()
    finally:
        lark.stop()
    assert "WARNING strat.events: lark: notification not delivered after " in _log(tmp_path)
    assert lark.texts() == []


def test_every_event_reaches_lark_once_signed_bursts_batched(market: FakeBinance, tmp_path: Path) -> None:
    """Every event arrives once, in order, signed; a burst in one message; a restart repeats nothing.

    Start, fills, alerts, a reload and the stop; the bars closing at once send their events together; the
    restarted session (the reloaded version) sends its own events only.
    """
    lark = FakeLark(secret="s3cret").start()
    try:
        env = {"STRAT_LARK_WEBHOOK": lark.url, "STRAT_LARK_SECRET": "s3cret"}
        first = Session(market, tmp_path, env=env, spec=ALERT_SPEC)
        lark.wait(lambda f: f.texts(), "the start's message")
        first.jump(24)
        lark.wait(lambda f: len(f.texts()) == 2, "the burst's message")
        # A reload: the spec saved with another fast period.
        (tmp_path / "spec.strat").write_text(ALERT_SPEC.replace("param fast = 3", "param fast = 4"))
        lark.wait(lambda f: any("reloaded spec.strat" in t for t in f.texts()), "the reload's message")
        first.stop()
        burst = _expected(tmp_path)[1:-2]  # the events of the 24 bars (between the start and the reload)
        second = Session(
            market, tmp_path, env=env, spec=ALERT_SPEC.replace("param fast = 3", "param fast = 4")
        )
        second.closed = first.closed
        second.bars(2)
        second.stop()
    finally:
        lark.stop()
    assert len(burst) >= 4 and lark.texts()[1] == "\n".join(burst)
    # Both sessions' events (events.csv is rewritten whole from the store), each sent once, in order.
    expected = _expected(tmp_path)
    assert "\n".join(lark.texts()) == "\n".join(expected)
    assert {line.split()[1].rstrip(":") for line in expected} >= {"start", "fill", "alert", "reload", "stop"}
    assert "[duo] reload: reloaded spec.strat (version " in "\n".join(expected)
    for posted in lark.requests:
        body = posted.body
        assert posted.accepted and posted.path == f"/open-apis/bot/v2/hook/{TOKEN}"
        assert sorted(body) == ["content", "msg_type", "sign", "timestamp"] and body["msg_type"] == "text"
        assert body["sign"] == _sign(body["timestamp"], "s3cret")
    log = _log(tmp_path)
    assert TOKEN not in log and "s3cret" not in log


def test_exchange_failures_are_events_once_per_outage(market: FakeBinance, tmp_path: Path) -> None:
    """Polls the exchange fails (after its retries) make one "error" event, its return one "recovered"."""
    engine = paper_engine(market, tmp_path)

    def kinds() -> list[tuple[str, str]]:
        """(kind, message) of the deployment's events."""
        return [(e.kind, e.message) for _, e in engine.store.events(engine.key, limit=100)]

    async def main() -> None:
        """Start, fail four klines requests (two polls of the two feeds), then close a bar."""
        client = engine.exchange.asynchronous()
        try:
            await engine.start(client)
            stop = asyncio.Event()
            task = asyncio.create_task(engine.run(client, stop))
            market.inject("GET /api/v3/klines", "500", "500", "500", "500")
            await _until(lambda: any(k == "recovered" for k, _ in kinds()))
            market.advance(HOUR)
            await _until(lambda: engine.sleeve_status()[0].last_bar_ms >= T0)
            stop.set()
            await task
        finally:
            await client.close()

    asyncio.run(main())
    told = [(k, m) for k, m in kinds() if k in ("error", "recovered")]
    assert [k for k, _ in told] == ["error", "recovered"]
    assert told[0][1].startswith(f"exchange: cannot reach {market.url} after 1 attempts (")
    assert told[0][1].endswith("; asked again at every poll (stale feeds pause)")
    assert told[1][1] == "exchange: answers again"


def test_a_point_waits_for_the_market_whose_poll_failed(market: FakeBinance, tmp_path: Path) -> None:
    """A bar closes on both markets but BTC's poll fails: ETH's bar is held, then both are stepped together.

    Stepping ETH's bar alone would make BTC's bar of the same close arrive after its point, fed to the
    graph only: the broker would never see it (a silent difference from the backtest).
    """
    engine = paper_engine(market, tmp_path)
    steps: list[int] = []  # close time of every point the broker stepped

    async def main() -> None:
        """Start, then close three bars while BTC's candle requests fail twice."""
        client = engine.exchange.asynchronous()
        try:
            await engine.start(client)
            session = engine.session
            assert session is not None
            before = session.simulator.snapshot()["bars"]
            stepping = session.simulator.step

            def step(*updates: object, **kw: object) -> None:
                """The broker's step, noting which sleeves' bars each point holds."""
                steps.append(len(updates))
                stepping(*updates, **kw)  # type: ignore[arg-type]

            session.simulator.step = step  # type: ignore[method-assign]
            stop = asyncio.Event()
            task = asyncio.create_task(engine.run(client, stop))
            # No await between the two: the engine polls only in between awaits.
            market.inject("GET /api/v3/klines BTCUSDT", "500", "500")
            market.advance(3 * HOUR)
            await _until(lambda: engine.sleeve_status()[0].last_bar_ms >= T0 + 2 * HOUR)
            await _until(lambda: session.simulator.last_time >= T0 + 2 * HOUR)
            stop.set()
            await task
            after = session.simulator.snapshot()["bars"]
            assert [a - b for a, b in zip(after, before, strict=True)] == [3, 3]
        finally:
            await client.close()

    asyncio.run(main())
    assert market.count("GET /api/v3/klines") > 0
    # Three points, each with both sleeves' bars; the outage is one error and one recovered event.
    assert steps == [2, 2, 2]
    events = [e for _, e in engine.store.events(engine.key, limit=100)]
    assert [e.kind for e in events if e.message.startswith("exchange:")] == ["error", "recovered"]
