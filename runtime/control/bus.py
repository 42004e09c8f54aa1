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
from collections.abc import Callable
from dataclasses import dataclass, field

from runtime.data.times import wall_clock_ms
from runtime.store.live import LiveStore

from .models import Event
from .service import DAY_MS, ControlService, event_model

log = logging.getLogger("strat.events")  # where every event and every delivery failure is logged


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


class EventBus:
    """Reads new events from the store and fans them out to the subscribers."""

    def __init__(self, live: LiveStore, keys: Callable[[], list[str]], poll_s: float = 1.0) -> None:
        """Publish the events of the deployments `keys()` names, looking at least every `poll_s` seconds."""
        self.live = live  # the store the events are read from
        self.keys = keys  # the deployments followed (read at every look)
        self.poll_s = poll_s  # longest wait between two looks, seconds
        self.subscribers: list[Subscription] = []  # who gets every event
        self._woken = asyncio.Event()  # set by `wake`: events were saved
        self._seen: dict[str, int] = {}  # deployment -> id of the last event published

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
        """Publish every event saved since the last look; how many.

        A deployment seen for the first time starts after its latest event (its history is for the API
        to read, not news).
        """
        count = 0
        for key in self.keys():
            if key not in self._seen:
                latest = self.live.events(key, limit=1)
                self._seen[key] = latest[-1][0] if latest else 0
                continue
            for event_id, e in self.live.events(key, limit=1000, since_id=self._seen[key]):
                self.publish(event_model(key, event_id, e))
                self._seen[key] = event_id
                count += 1
        return count

    async def run(self, stop: asyncio.Event) -> None:
        """Look whenever woken, and at least every `poll_s` seconds, until `stop` is set."""
        self.look()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), self.poll_s)
            self._woken.clear()
            try:
                self.look()
            except Exception as error:  # a store hiccup is logged; the next look catches up
                log.warning("event bus: reading the store failed: %s", error)


def notice_text(event: Event, name: str = "") -> str:
    """One event as a notification line: `[name] kind sleeve: message (by who)`."""
    head = " ".join(part for part in (f"[{name}]" if name else "", event.kind, event.sleeve) if part)
    by = f" (by {event.who})" if event.who != "engine" else ""
    return f"{head}: {event.message}{by}"


class Channel(ABC):
    """Where notifications go (a chat, a webhook, the log): one `deliver` per message."""

    name: str = "channel"  # shown in the log
    min_interval_s: float = 0.0  # least time between two messages, seconds (Telegram: 1 per chat)
    max_chars: int = 4000  # longest message; a batch longer than this is split

    @abstractmethod
    async def deliver(self, text: str) -> None:
        """Send one message; raise on failure (the outbox retries)."""


@dataclass
class Outbox:
    """A channel's queue and its delivery task: batches, spacing, retries with backoff, failures logged."""

    channel: Channel  # where the messages go
    retries: int = 5  # attempts per message before it is given up (and logged)
    backoff_s: float = 1.0  # wait after the first failure, doubled after each next one, seconds
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(10_000))  # lines not sent yet
    delivered: int = 0  # messages delivered
    failed: int = 0  # messages given up

    def put(self, line: str) -> None:
        """Queue one line (never blocks: a full outbox drops the oldest line, logged)."""
        if self.queue.full():
            self.queue.get_nowait()
            log.warning("%s: outbox full, oldest notification dropped", self.channel.name)
        self.queue.put_nowait(line)

    def _batch(self, first: str) -> str:
        """`first` and the lines queued behind it, as long as they fit one message."""
        lines = [first[: self.channel.max_chars]]
        size = len(lines[0])
        while not self.queue.empty():
            nxt = self.queue._queue[0]  # type: ignore[attr-defined]  # peek: taken only if it fits
            if size + 1 + len(nxt) > self.channel.max_chars:
                break
            lines.append(self.queue.get_nowait())
            size += 1 + len(nxt)
        return "\n".join(lines)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set (then what is queued is delivered once, without waiting)."""
        loop = asyncio.get_running_loop()
        last = -1e9
        while True:
            if stop.is_set() and self.queue.empty():
                return
            try:
                first = await asyncio.wait_for(self.queue.get(), 0.2)
            except TimeoutError:
                continue
            # Spacing: wait out the channel's interval; lines arriving meanwhile join the batch.
            gap = self.channel.min_interval_s - (loop.time() - last)
            if gap > 0 and not stop.is_set():
                await asyncio.sleep(gap)
            text = self._batch(first)
            for attempt in range(self.retries):
                try:
                    await self.channel.deliver(text)
                    self.delivered += 1
                    break
                except Exception as error:  # any failure of the far side: retried, then logged
                    if attempt == self.retries - 1 or stop.is_set():
                        self.failed += 1
                        log.warning(
                            "%s: notification not delivered (%s): %.80s", self.channel.name, error, text
                        )
                        break
                    await asyncio.sleep(self.backoff_s * 2**attempt)
            last = loop.time()


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
        """Notify `channels` of every event of `bus`; `name(key)` is the deployment's label in a line."""
        self.bus = bus  # where the events come from
        self.outboxes = [Outbox(c) for c in channels]  # one per channel
        self.name = name  # deployment key -> label shown in the lines

    async def run(self, stop: asyncio.Event) -> None:
        """Forward events until `stop` is set, with one delivery task per channel."""
        sub = self.bus.subscribe(10_000)
        tasks = [asyncio.create_task(o.run(stop)) for o in self.outboxes]
        try:
            while not stop.is_set():
                try:
                    event = await asyncio.wait_for(sub.get(), 0.2)
                except TimeoutError:
                    continue
                line = notice_text(event, self.name(event.deployment))
                for outbox in self.outboxes:
                    outbox.put(line)
        finally:
            self.bus.unsubscribe(sub)
            await asyncio.gather(*tasks)


def next_midnight(now_ms: int) -> int:
    """The next 00:00 UTC after `now_ms`, ms."""
    return (now_ms // DAY_MS + 1) * DAY_MS


async def daily_summaries(
    service: ControlService, stop: asyncio.Event, clock: Callable[[], int] = wall_clock_ms
) -> None:
    """At every 00:00 UTC, record the day's summary of this process's deployment (an event, notified)."""
    while not stop.is_set():
        wait_s = (next_midnight(clock()) - clock()) / 1000
        try:
            await asyncio.wait_for(stop.wait(), max(wait_s, 0.0))
            return
        except TimeoutError:
            pass
        try:
            await service.daily_summary()
        except Exception as error:  # a summary that cannot be made is logged, never fatal
            log.warning("daily summary failed: %s", error)
