"""The event bus: every event a deployment persists, fanned out to the dashboard and the notifications.

The store is the source: the bus reads the events saved since the last it read (woken by the engine
after each checkpoint, or every second over the store alone, so a `strat serve` process sees an engine
running in another one) and hands each to every subscriber. Notifications are subscribers: each channel
(the log, Telegram chats, Lark webhooks) has its own outbox, a queue drained by its own task that batches
what piled up into one message, keeps a minimum interval between messages, retries with backoff and logs
what it finally could not deliver. Nothing here blocks the engine: publishing only fills queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from runtime.data.times import wall_clock_ms
from runtime.errors import StratError
from runtime.store.live import LiveStore

from .models import Event
from .service import DAY_MS, ControlService, event_model

T = TypeVar("T")
log = logging.getLogger("strat.events")  # where every event and every delivery failure is logged
# Most events read from the store in one look (more than a session saves between two looks).
LOOK_LIMIT = 1_000_000


async def until(stop: asyncio.Event, aw: Awaitable[T], timeout: float | None = None) -> T | None:
    """The result of `aw`, or None when `stop` is set or `timeout` seconds pass first (`aw` is cancelled)."""
    task = asyncio.ensure_future(aw)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({task, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not task.done():
            task.cancel()
    return task.result() if task in done else None


class Subscription:
    """A subscriber's queue of events; when it falls behind by `maxsize` the oldest are dropped."""

    def __init__(self, maxsize: int = 1000) -> None:
        """An empty queue holding at most `maxsize` events."""
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)  # events not taken yet
        self.dropped = 0  # events dropped because the subscriber fell behind

    def put(self, event: Event) -> None:
        """Queue an event, dropping the oldest when full (never blocks the publisher)."""
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(event)

    async def get(self) -> Event:
        """The next event (waits for one)."""
        return await self.queue.get()

    def taken(self) -> list[Event]:
        """Every event queued now (without waiting)."""
        out = []
        while not self.queue.empty():
            out.append(self.queue.get_nowait())
        return out


class EventBus:
    """Reads new events from the store and fans them out to the subscribers."""

    def __init__(self, live: LiveStore, keys: Callable[[], list[str]], poll_s: float = 1.0) -> None:
        """Publish the events of the deployments `keys()` names, looking at least every `poll_s` seconds.

        The deployments named now are followed from their latest event on: a session makes its bus
        before its engine starts, so the start's events (restored state, missed bars, reconciliation)
        are news, and a restart never repeats what an earlier process already published.
        """
        self.live = live  # the store the events are read from
        self.keys = keys  # the deployments followed (read at every look)
        self.poll_s = poll_s  # longest wait between two looks, seconds
        self.subscribers: list[Subscription] = []  # who gets every event
        self._woken = asyncio.Event()  # set by `wake`: events were saved
        self._seen: dict[str, int] = {}  # deployment -> id of the last event published
        self.running = False  # whether `run` is looking
        self.done = asyncio.Event()  # set when `run` has made its last look
        for key in keys():
            self._follow(key)

    def _follow(self, key: str) -> None:
        """Follow a deployment from its latest event on (its history is for the API to read, not news)."""
        latest = self.live.events(key, limit=1)
        self._seen[key] = latest[-1][0] if latest else 0

    def wake(self) -> None:
        """Look now (the engine saved events); safe to call from the engine's loop."""
        self._woken.set()

    def subscribe(self, maxsize: int = 1000) -> Subscription:
        """A new subscriber of every event published from now on."""
        sub = Subscription(maxsize)
        self.subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop giving events to `sub`."""
        if sub in self.subscribers:
            self.subscribers.remove(sub)

    def publish(self, event: Event) -> None:
        """Give one event to every subscriber."""
        for sub in list(self.subscribers):
            sub.put(event)

    def look(self) -> int:
        """Publish every event saved since the last look, oldest first; how many.

        A deployment that appears later (`strat serve` follows every deployment of the store) starts
        after its latest event.
        """
        count = 0
        for key in self.keys():
            if key not in self._seen:
                self._follow(key)
                continue
            for event_id, e in self.live.events(key, limit=LOOK_LIMIT, since_id=self._seen[key]):
                self.publish(event_model(key, event_id, e))
                self._seen[key] = event_id
                count += 1
        return count

    def _look_safely(self) -> None:
        """Look; a store hiccup is logged (the next look catches up)."""
        try:
            self.look()
        except Exception as error:  # the store is out of reach for a moment: never fatal
            log.warning("event bus: reading the store failed: %s", error)

    async def run(self, stop: asyncio.Event) -> None:
        """Look whenever woken, and at least every `poll_s` seconds, until `stop` is set; then once more.

        The last look publishes what was saved up to the stop (a session stops its front-ends after its
        engine, so the engine's final events are among them).
        """
        self.running = True
        try:
            while not stop.is_set():
                # Cleared before the look: a wake during the look is not lost.
                self._woken.clear()
                self._look_safely()
                await until(stop, self._woken.wait(), self.poll_s)
        finally:
            self._look_safely()
            self.running = False
            self.done.set()


def notice_text(event: Event, name: str = "") -> str:
    """One event as a notification line: `[name] kind sleeve: message (by who)`."""
    head = " ".join(part for part in (f"[{name}]" if name else "", event.kind, event.sleeve) if part)
    by = f" (by {event.who})" if event.who != "engine" else ""
    return f"{head}: {event.message}{by}"


class DeliveryError(StratError):
    """A channel could not deliver a message; the text names why and never holds a secret."""


class Channel(ABC):
    """Where notifications go (a chat, a webhook, the log): one `deliver` per message."""

    name: str = "channel"  # shown in the log
    min_interval_s: float = 0.0  # least time between two messages, seconds (Telegram: 1 per chat)
    max_chars: int = 4000  # longest message; a batch longer than this is split

    @abstractmethod
    async def deliver(self, text: str) -> None:
        """Send one message; raise on failure (the outbox retries)."""


def split_text(text: str, max_chars: int) -> tuple[str, str]:
    """The first piece of `text` fitting `max_chars` (cut at its last line break if it has one), the rest."""
    if len(text) <= max_chars:
        return text, ""
    cut = text.rfind("\n", 0, max_chars + 1)
    if cut <= 0:
        return text[:max_chars], text[max_chars:]
    return text[:cut], text[cut + 1 :]


@dataclass
class Outbox:
    """A channel's queue and its delivery task: batches, spacing, retries with backoff, failures logged.

    Lines that pile up while a message is spaced out, retried or sent are joined into the next message,
    up to the channel's `max_chars` (a longer line is split into several messages). Once `stop` is set,
    what is queued is sent without spacing, each message tried once more at most, all within `drain_s`
    seconds; what is left then is given up and logged.
    """

    channel: Channel  # where the messages go
    retries: int = 5  # attempts per message before it is given up (and logged)
    backoff_s: float = 1.0  # wait after the first failure, doubled after each next one, seconds
    timeout_s: float = 10.0  # longest wait for one attempt, seconds (a hanging far side is a failure)
    drain_s: float = 3.0  # once stopped, longest time spent delivering what is queued, seconds
    limit: int = 10_000  # most lines queued; beyond it the oldest is dropped (logged)
    lines: deque[str] = field(default_factory=deque)  # lines not sent yet, oldest first
    delivered: int = 0  # messages delivered
    failed: int = 0  # messages given up (lines, for what is left at the end of the drain)
    dropped: int = 0  # lines dropped because the outbox was full
    # Set by `put`: lines are waiting.
    _queued: asyncio.Event = field(default_factory=asyncio.Event)
    _deadline: float | None = None  # loop time by which the drain after the stop ends (None: running)

    def put(self, line: str) -> None:
        """Queue one line (never blocks: a full outbox drops the oldest line, logged)."""
        if len(self.lines) >= self.limit:
            self.lines.popleft()
            self.dropped += 1
            log.warning("%s: outbox full, oldest notification dropped", self.channel.name)
        self.lines.append(line)
        self._queued.set()

    def take(self) -> str:
        """The next message: the oldest lines that fit `max_chars` together (a long line: its first piece)."""
        limit = self.channel.max_chars
        first, rest = split_text(self.lines.popleft(), limit)
        if rest:
            self.lines.appendleft(rest)
            return first
        parts, size = [first], len(first)
        while self.lines and size + 1 + len(self.lines[0]) <= limit:
            parts.append(self.lines.popleft())
            size += 1 + len(parts[-1])
        return "\n".join(parts)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set and the queue is empty (or the drain's time is up)."""
        loop = asyncio.get_running_loop()
        last = -float("inf")  # loop time of the last message sent, s
        while True:
            if not self.lines:
                if stop.is_set():
                    return
                self._queued.clear()
                await until(stop, self._queued.wait())
                continue
            # Spacing: wait out the channel's interval; lines arriving meanwhile join the message.
            gap = self.channel.min_interval_s - (loop.time() - last)
            if gap > 0 and not stop.is_set():
                await until(stop, asyncio.sleep(gap))
            if stop.is_set() and loop.time() >= self._drain_deadline():
                self._give_up_rest()
                return
            await self._send(self.take(), stop)
            last = loop.time()

    def _drain_deadline(self) -> float:
        """The loop time by which the drain after the stop ends (fixed when first asked)."""
        if self._deadline is None:
            self._deadline = asyncio.get_running_loop().time() + self.drain_s
        return self._deadline

    async def _send(self, text: str, stop: asyncio.Event) -> None:
        """Deliver one message: retried with backoff; given up (and logged) after the last attempt."""
        for attempt in range(self.retries):
            try:
                await self._attempt(text, stop)
                self.delivered += 1
                return
            except Exception as error:  # any failure of the far side: retried, then logged
                why = str(error) or type(error).__name__
                if attempt == self.retries - 1 or stop.is_set():
                    self.failed += 1
                    log.warning(
                        "%s: notification not delivered after %d attempt(s) (%s): %.80s",
                        self.channel.name, attempt + 1, why, text,
                    )  # fmt: skip
                    return
                wait = self.backoff_s * 2**attempt
                log.warning("%s: delivery failed (%s); retrying in %g s", self.channel.name, why, wait)
                # A stop cuts the wait short: the message gets one last attempt.
                await until(stop, asyncio.sleep(wait))

    async def _attempt(self, text: str, stop: asyncio.Event) -> None:
        """One delivery, cut after `timeout_s` (once stopped: at the drain's deadline); raises on failure."""
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(asyncio.wait_for(self.channel.deliver(text), self.timeout_s))
        try:
            if not stop.is_set():
                await until(stop, asyncio.shield(task))
            if not task.done():
                # Stopped meanwhile: the attempt may go on until the drain's deadline, no longer.
                await asyncio.wait({task}, timeout=max(self._drain_deadline() - loop.time(), 0.0))
            if not task.done():
                raise TimeoutError("no answer before the shutdown")
            task.result()
        finally:
            task.cancel()

    def _give_up_rest(self) -> None:
        """Give up every line still queued when the drain's time is up (logged once)."""
        count = len(self.lines)
        self.failed += count
        self.lines.clear()
        log.warning("%s: %d notification line(s) not delivered at shutdown", self.channel.name, count)


class LogChannel(Channel):
    """Every event into the process log (logger "strat.events")."""

    name = "log"

    async def deliver(self, text: str) -> None:
        """Log the lines."""
        for line in text.splitlines():
            log.info("%s", line)


class Notifier:
    """Subscribes to the bus and puts every event, as a line, into each channel's outbox."""

    def __init__(self, bus: EventBus, channels: list[Channel], name: Callable[[str], str]) -> None:
        """Notify `channels` of every event `bus` publishes from now on; `name(key)` labels a deployment."""
        self.bus = bus  # where the events come from
        self.outboxes = [Outbox(c) for c in channels]  # one per channel
        self.name = name  # deployment key -> label shown in the lines
        # Subscribed now, not when `run` starts: nothing the bus publishes meanwhile is missed.
        self.sub = bus.subscribe(10_000)
        self.closing = asyncio.Event()  # set once the last event is queued: the outboxes drain and end

    def _forward(self, events: list[Event]) -> None:
        """Queue events as lines in every outbox."""
        for event in events:
            line = notice_text(event, self.name(event.deployment))
            for outbox in self.outboxes:
                outbox.put(line)

    async def run(self, stop: asyncio.Event) -> None:
        """Forward events until `stop` is set and the bus's last look is in; then drain the outboxes."""
        tasks = [asyncio.create_task(o.run(self.closing)) for o in self.outboxes]
        try:
            while not stop.is_set():
                event = await until(stop, self.sub.get())
                # Everything published together goes together (one message per burst where it fits).
                self._forward(([event] if event is not None else []) + self.sub.taken())
            if self.bus.running:
                # The bus's last look (the engine's final events) comes after the stop.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.bus.done.wait(), 2.0)
            self._forward(self.sub.taken())
        finally:
            self.bus.unsubscribe(self.sub)
            self.closing.set()
            await asyncio.gather(*tasks)


def next_midnight(now_ms: int) -> int:
    """The next 00:00 UTC after `now_ms`, ms."""
    return (now_ms // DAY_MS + 1) * DAY_MS


async def daily_summaries(
    service: ControlService,
    stop: asyncio.Event,
    clock: Callable[[], int] = wall_clock_ms,
    check_s: float = 60.0,
) -> None:
    """At every 00:00 UTC, record the day's summary of this process's deployment (an event, notified).

    The clock is read again at least every `check_s` seconds (a long sleep drifts from the wall clock),
    and a summary is made only once `clock()` has reached its midnight, once per midnight.
    """
    due = next_midnight(clock())
    while not stop.is_set():
        left_s = (due - clock()) / 1000
        if left_s > 0:
            await until(stop, asyncio.sleep(min(left_s, check_s)))
            continue
        try:
            await service.daily_summary()
        except Exception as error:  # a summary that cannot be made is logged, never fatal
            log.warning("daily summary failed: %s", error)
        due = next_midnight(max(clock(), due))
