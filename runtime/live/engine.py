"""The live engine: one deployment of a spec trading live candles, on paper or with real orders.

Start-up: the deployment's last checkpoint is read from the store; history is loaded (store first, then
the exchange) and every graph warmed; a fresh deployment steps its broker through that history exactly
as a backtest with `--from <first live bar>` does (nothing is decided there), a resumed one restores its
broker from the checkpoint and only warms the graphs. Bars that closed while the process was down are
then evaluated without acting (their decisions are recorded as missed, never sent late), live orders are
reconciled with the exchange, and every bar that closes after the start is acted on (one that closes
during the start-up too).

The loop: each market feed (one per symbol and timeframe, shared by every sleeve clock that reads it) is
polled for closed candles; the bars closing at one time form one point of the time line, stepped through
`broker.session.Session` (the replay's driver: same graphs, same broker step). On paper the broker's own
fill model fills the orders; live, the order manager sends them and books what the exchange reports.
After each point one checkpoint (broker snapshot, order intents, events, feeds' last bars, equity) is
written in one transaction. A feed without a new closed candle for two of its periods raises a stale
event and pauses (no entries) the sleeves that read it until it recovers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from dsl.ir import PortfolioIR, Program
from dsl.units import timeframe_ms
from runtime.broker.session import Session
from runtime.broker.simulator import PendingOrder
from runtime.data.candles import Candle, Candles
from runtime.data.times import format_time, wall_clock_ms
from runtime.errors import StratError
from runtime.exchange.client import ExchangeClient, ExchangeRejected, ExchangeUnavailable
from runtime.exchange.stream import CandleStream
from runtime.exchange.trading import ExchangeOrder, TradingClient
from runtime.live.feeds import ExchangeClock, MarketFeed, wait_for_candles
from runtime.live.orders import OrderManager, deployment_prefix, sleeve_of
from runtime.plan.inputs import market_pair
from runtime.plan.plan import RunPlan, plan
from runtime.store.live import Checkpoint, Deployment, Intent, LiveEvent, LiveStore, SleeveStatus

# Loads closed candles: (symbol, timeframe, first open ms or None, end ms or None) -> Candles.
Loader = Callable[[str, str, int | None, int | None], Candles]
# Seconds between heartbeats written to the store.
HEARTBEAT_S = 5.0
# Seconds (of this process's running time) between two reconciliations of a live account.
RECONCILE_S = 300.0
HOUR_MS = 3_600_000  # one hour, ms
DAY_MS = 86_400_000  # one day, ms


class LiveError(StratError):
    """A deployment cannot start as asked (reported as one plain line)."""


@dataclass(frozen=True)
class LiveOptions:
    """How one deployment runs (decoded once from the command line)."""

    mode: str  # "paper" or "live"
    exchange: str  # ccxt exchange id
    spec_path: str  # the spec file
    spec_text: str  # its text (its sha256 identifies the version in force)
    poll_s: float  # longest wait between two polls of the feeds, seconds
    flatten_on_exit: bool = False  # close every position when stopping
    ws: bool = False  # take closed candles from the exchange's websocket (REST fills the gaps)
    overrides: tuple[tuple[str, str], ...] = ()  # --set values, applied to every version of the spec
    strategy: str | None = None  # --strategy: what of the file runs (None: its portfolio)
    capital: float | None = None  # --capital of a single strategy


@dataclass
class Engine:
    """One deployment: its session, feeds, order manager and persistence."""

    options: LiveOptions  # how it runs
    program: Program  # the checked spec
    portfolio: PortfolioIR  # the portfolio (or single strategy) it trades
    store: LiveStore  # deployments, intents, checkpoints, events
    exchange: ExchangeClient  # public endpoints (candles, time)
    loader: Callable[[Callable[[], int]], Loader]  # makes the history loader for a clock
    trading: TradingClient | None = None  # the account (live mode only)
    account: str = "paper"  # non-secret account fingerprint
    clock: ExchangeClock = field(default_factory=ExchangeClock)  # the exchange's clock
    session: Session | None = None  # the graphs and the broker, once started
    feeds: list[MarketFeed] = field(default_factory=list)  # one per (symbol, timeframe)
    events: list[LiveEvent] = field(default_factory=list)  # events not yet checkpointed
    recent: list[LiveEvent] = field(default_factory=list)  # the latest events (for the live view)
    start_ms: int = 0  # open time of the first bar acted on (the start of the reported period), UTC ms
    orders: OrderManager | None = None  # the order manager (live mode)
    on_point: Callable[[Engine], None] | None = None  # told after every checkpoint (outputs, view)
    _fanout: dict[int, list[int]] = field(default_factory=dict)  # market feed -> session feeds reading it
    _reported: dict[str, int] = field(default_factory=dict)  # alerts/missed/risk events already reported
    _reconciled_ms: int = 0  # exchange time of the last reconciliation, UTC ms
    _reconciled_at: float = 0.0  # event-loop time of the last reconciliation, s
    # Candles each market feed brought since the session was planned (the bars a reload warms up on).
    _buffer: dict[int, list[Candle]] = field(default_factory=dict)
    reload_requested: asyncio.Event = field(default_factory=asyncio.Event)  # set: reload the spec
    # Held by every pass of the loop (poll, step, act, checkpoint) and by every command: the two never
    # interleave, so a command sees and changes the state between two points only.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    listeners: list[Callable[[], None]] = field(default_factory=list)  # told after events were saved
    _closing: list[Any] = field(default_factory=list)  # websocket streams of markets no longer read
    _exchange_failing: bool = False  # whether the exchange failed the last poll (an "error" event told it)
    # Candles polled but not stepped yet, by (symbol, timeframe): their points wait for a feed that failed.
    _held: dict[tuple[str, str], list[Candle]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The deployment key: name, mode and exchange account."""
        return f"{self.portfolio.name}:{self.options.mode}:{self.options.exchange}:{self.account}"

    def event(self, kind: str, sleeve: str, message: str, who: str = "engine") -> None:
        """Record an event (saved with the next checkpoint, shown by the live view); `who` caused it."""
        item = LiveEvent(self.clock.now(), kind, sleeve, message, who)
        self.events.append(item)
        self.recent = [*self.recent[-49:], item]

    # ----------------------------------------------------------------------------------- start-up

    async def start(self, client: Any) -> None:
        """Sync the clock, load history, warm the graphs, restore or create the deployment, catch up."""
        await self.clock.sync(self.exchange, client)
        checkpoint = self.store.last_checkpoint(self.key)
        saved = json.loads(checkpoint.engine) if checkpoint is not None else {}
        now = self.clock.now()
        rp = self._plan(now, saved.get("last"))
        snapshot = json.loads(checkpoint.snapshot) if checkpoint is not None else None
        try:
            self.session = session = Session(rp, external=self.options.mode == "live", snapshot=snapshot)
        except ValueError as error:
            # The saved broker belongs to another version of the spec (other sleeves, rules or settings).
            raise LiveError(
                f"deployment {self.key} was saved by another version of {self.options.spec_path} ({error}); "
                "run the version it was started with, or give this version another name"
            ) from None
        if snapshot is None:
            # A fresh deployment: the broker walks the warm-up history like a backtest from here.
            session.run_history()
            self.start_ms = min(sp.graph.base.ms * (now // sp.graph.base.ms) for sp in rp.sleeves)
        else:
            self._warm()
            self.start_ms = int(saved["start_ms"])
            session.paused.update(saved.get("paused", []))
        self._open_feeds(rp)
        self._reported = self._counted()
        self._save_deployment(checkpoint is None)
        if self.trading is not None:
            self.orders = OrderManager(
                self.key, self.trading, self.store, session.simulator,
                {sp.sleeve.name: market_pair(sp.sleeve.symbol) for sp in rp.sleeves}, self.clock.now,
                dust=dict(saved.get("dust", {})),
            )  # fmt: skip
        self.event("start", "", f"{self.options.mode} {self.key} from {len(rp.sleeves)} sleeve(s)")
        # Bars that closed while the process was down (before `now`): evaluated, not acted on. Bars
        # that closed since it started are acted on, as they would be a moment later by the loop.
        await self._poll_all(client, act_from=now)
        if self.orders is not None:
            await self.reconcile()
        self.checkpoint()

    def _plan(
        self, now: int, last: dict[str, int] | None, load: Loader | None = None, spec: Any = None
    ) -> RunPlan:
        """Plan the sleeves over the closed history before `now` (or before the checkpoint's last bars).

        `load` reads the history (default: the store, then the exchange); `spec` is a reloaded version's
        (program, portfolio) (default: the running one's).
        """
        load = load or self.loader(self.clock.now)
        program, portfolio = spec or (self.program, self.portfolio)
        # Planned like a backtest from the forming bar of the fastest clock (a bar boundary), so the
        # warm-up history is the one `strat run --backtest --from <that bar>` reads.
        fastest = min(timeframe_ms(s.timeframe) for s in portfolio.sleeves)
        end = now // fastest * fastest if last is None else min(last.values())

        def history(symbol: str, timeframe: str, first: int | None, stop: int | None) -> Candles:
            """History up to the end chosen above (the checkpoint's last bar, or now)."""
            return load(symbol, timeframe, first, end)

        rp = plan(program, portfolio, history, end, None, live=True)
        # Every loaded bar is history: the first decision comes with the first bar closing from now on.
        return replace(
            rp,
            sleeves=tuple(
                replace(sp, first_decision=max(sp.first_decision, sp.feeds.length(0))) for sp in rp.sleeves
            ),
            start=None,
        )

    def _warm(self) -> None:
        """Feed the planned history to the graphs only (a resumed broker has seen it already)."""
        session = self.session
        assert session is not None  # started
        for bars in session.history():
            session.feed_only(bars)

    def _open_feeds(self, rp: RunPlan) -> None:
        """One market feed per (symbol, timeframe) the session reads, starting after its last planned bar.

        Feeds already open (a reload) go on; `_fanout` maps each to the session feeds reading it.
        """
        session = self.session
        assert session is not None  # started
        markets = {(f.symbol, f.timeframe): m for m, f in enumerate(self.feeds)}
        self._fanout = {}
        for f, feed in enumerate(session.feeds):
            key = (market_pair(feed.symbol), feed.timeframe)
            if key not in markets:
                candles = rp.sleeves[feed.sleeve].feeds.candles[feed.clock]
                next_open = (
                    int(candles.time[-1]) + feed.ms if len(candles) else self.clock.now() // feed.ms * feed.ms
                )
                markets[key] = len(self.feeds)
                stream = CandleStream.open(self.exchange, *key) if self.options.ws else None
                if stream is not None:
                    stream.start()
                elif self.options.ws:
                    self.event("start", "", f"{key[0]} {key[1]}: no websocket candles in ccxt: REST polling")
                self.feeds.append(
                    MarketFeed(key[0], key[1], feed.ms, next_open, self.clock.now(), stream=stream)
                )
            self._fanout.setdefault(markets[key], []).append(f)
        # Markets the new version no longer reads are closed (their streams with them).
        kept = sorted(self._fanout)
        for m, market in enumerate(self.feeds):
            if m not in self._fanout and market.stream is not None:
                self._closing.append(market.stream)
        self.feeds = [self.feeds[m] for m in kept]
        self._fanout = {i: self._fanout[m] for i, m in enumerate(kept)}

    def _save_deployment(self, fresh: bool) -> str:
        """Write the deployment row (running, this process) and the spec version in force; its sha256."""
        sha = hashlib.sha256(self.options.spec_text.encode()).hexdigest()
        # The deployment's times are the local wall clock's (its heartbeat is read against it).
        now = wall_clock_ms()
        old = self.store.deployment(self.key)
        baseline = old.baseline if old is not None else ()
        self.store.save_deployment(
            Deployment(
                self.key, self.portfolio.name, self.options.mode, self.options.exchange, self.account,
                self.options.spec_path, sha, "running", os.getpid(), socket.gethostname(),
                now if fresh or old is None else old.started_ms, now, baseline,
            )
        )  # fmt: skip
        self.store.save_spec_version(self.key, sha, self.options.spec_text, now)
        return sha

    # ----------------------------------------------------------------------------------- the loop

    async def run(self, client: Any, stop: asyncio.Event) -> None:
        """Trade until `stop` is set: poll, step each closed point, act, checkpoint."""
        beat = 0.0
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            async with self.lock:
                if self.reload_requested.is_set():
                    # Between two points: the whole portfolio swaps at a bar boundary.
                    self.reload_requested.clear()
                    self.reload()
                    await self.close_retired()
                if self.clock.due():
                    # When the exchange fails, the offset measured last stays (the polls report it).
                    with contextlib.suppress(ExchangeUnavailable, ExchangeRejected):
                        await self.clock.sync(self.exchange, client)
                acted = await self._poll_all(client)
                now = self.clock.now()
                self._check_stale(now)
                if self.orders is not None and loop.time() - self._reconciled_at >= RECONCILE_S:
                    await self.reconcile()
                    acted = True
                if acted or self.events:
                    # New bars, or news (a stale feed, an order settled): saved and shown at once.
                    self.checkpoint()
                if loop.time() - beat >= HEARTBEAT_S:
                    self.store.heartbeat(self.key, wall_clock_ms())
                    beat = loop.time()
            await wait_for_candles(self.feeds, stop, self.options.poll_s, self.reload_requested)
        await self.shutdown()

    async def close_retired(self) -> None:
        """Close the websocket streams of markets a reloaded version no longer reads."""
        while self._closing:
            await self._closing.pop().close()

    async def _poll_all(self, client: Any, act_from: int = 0) -> bool:
        """Poll every feed whose next bar is due, then step the points they completed; return if any.

        Points closing before `act_from` (UTC ms; the start-up's catch-up of the bars that closed while
        the process was down) are evaluated without acting on them.
        When the exchange fails a feed's poll (after its retries), points closing at or after that feed's
        next bar wait (held, stepped at a later poll): a point is stepped only when every feed that may
        have a bar in it has answered, as a backtest would see it.
        """
        queues: dict[int, list[Candle]] = {}
        failure: Exception | None = None
        horizon = 2**62  # points closing at or after this wait for a feed that failed, UTC ms
        for m, feed in enumerate(self.feeds):
            got = self._held.pop((feed.symbol, feed.timeframe), [])
            # Every poll asks each feed (the exchange's clock may run ahead of our estimate of it); a long
            # gap is caught up page by page (a page ends at the forming candle or after 1000 bars).
            try:
                while True:
                    page = await feed.poll(self.exchange, client, self.clock)
                    got += page
                    if len(page) < 500:
                        break
            except (ExchangeUnavailable, ExchangeRejected) as error:
                # The exchange failed after its retries: this feed's next bar is asked again next poll.
                failure = failure or error
                horizon = min(horizon, feed.next_open + feed.ms)
            if got:
                queues[m] = got
        self._exchange_answered(failure)
        # Merge the new bars of every feed into points of one close time, oldest first; the points a
        # failed feed may still add a bar to are held for a later poll.
        by_close: dict[int, list[tuple[int, Candle]]] = {}
        for m, candles in queues.items():
            feed = self.feeds[m]
            ready = [c for c in candles if c.time + feed.ms < horizon]
            if len(ready) < len(candles):
                self._held[(feed.symbol, feed.timeframe)] = candles[len(ready) :]
            self._buffer.setdefault(m, []).extend(ready)
            for candle in ready:
                by_close.setdefault(candle.time + feed.ms, []).extend((f, candle) for f in self._fanout[m])
        for close in sorted(by_close):
            await self._step(close, sorted(by_close[close], key=lambda x: x[0]), close >= act_from)
        return bool(by_close)

    async def _step(self, close: int, bars: list[tuple[int, Candle]], act: bool) -> None:
        """Step one point of the time line and act on its decisions."""
        session = self.session
        assert session is not None  # started
        if close <= session.simulator.last_time:
            # A resumed broker has stepped this point already: the graphs only need the bars.
            session.feed_only(bars)
            return
        session.step(bars, act=act)
        self._report_session()
        if session.simulator.external:
            pending = session.simulator.pending()
            if not act:
                # Orders a bar decided while the process was down are not sent late.
                for order in pending:
                    self.event(
                        "missed", order.sleeve,
                        f"{order.intent} ({order.reason}) at the bar closing {format_time(close)} UTC, "
                        "which closed while the process was down: not sent",
                    )  # fmt: skip
                    session.simulator.drop(order.sleeve)
            elif self.orders is not None:
                await self.orders.settle()
                await self._send(pending, close)

    def _report_session(self) -> None:
        """Turn the session's new alerts, missed decisions and risk events into events."""
        session = self.session
        assert session is not None  # started
        done = self._reported
        for alert in session.alerts[done.get("alerts", 0) :]:
            self.event("alert", alert.sleeve, alert.text)
        for missed in session.missed[done.get("missed", 0) :]:
            self.event(
                "missed", missed.sleeve,
                f"{missed.what} at the bar closing {format_time(missed.close_ms)} UTC, "
                "which closed while the process was down: not acted on",
            )  # fmt: skip
        fills, risk = session.simulator.news(done.get("orders", 0), done.get("risk", 0))
        if not session.simulator.external:
            # On paper the broker fills the orders (live, the order manager reports the exchange's fills).
            for o in fills.rows():
                what = f"{o.side} {o.filled_qty:g} {market_pair(o.symbol)} at {o.price:g}"
                self.event("fill", o.sleeve, f"{what} ({o.intent}, {o.reason})")
        for r in risk:
            seen = ", ".join(f"{name} {value:g}" for name, value in r.values)
            self.event("risk", "" if r.scope == "portfolio" else r.scope, f"{r.action}: {r.rule} ({seen})")
        done.update(self._counted(alerts=len(session.alerts), missed=len(session.missed)))

    def _counted(self, alerts: int = 0, missed: int = 0) -> dict[str, int]:
        """The session's news counts that `_report_session` has reported (fills and risk rows: all so far)."""
        session = self.session
        assert session is not None  # started
        orders, risk = session.simulator.rows
        return {"alerts": alerts, "missed": missed, "orders": orders, "risk": risk}

    def _collect_orders(self) -> None:
        """Move the order manager's events into the engine's."""
        if self.orders is None:
            return
        for item in self.orders.events:
            self.events.append(item)
            self.recent = [*self.recent[-49:], item]
        self.orders.events.clear()

    def _exchange_answered(self, failure: Exception | None) -> None:
        """Tell (an event) when the exchange starts failing the polls, and when it answers again."""
        if failure is not None and not self._exchange_failing:
            self.event("error", "", f"exchange: {failure}; asked again at every poll (stale feeds pause)")
        elif failure is None and self._exchange_failing:
            self.event("recovered", "", "exchange: answers again")
        self._exchange_failing = failure is not None

    def _check_stale(self, now: int) -> None:
        """Report websocket failures; pause the sleeves of a feed that went stale, resume them after."""
        session = self.session
        assert session is not None  # started
        for m, feed in enumerate(self.feeds):
            trouble = feed.stream_trouble()
            if trouble is not None:
                self.event("stream", "", f"{feed.symbol} {feed.timeframe} websocket: {trouble}")
            change = feed.check_stale(now)
            if change is None:
                continue
            names = sorted(
                {session.plan.sleeves[session.feeds[f].sleeve].sleeve.name for f in self._fanout[m]}
            )
            for name in names:
                if change:
                    session.stale.add(name)
                else:
                    session.stale.discard(name)
            what = "stale: no closed candle for two periods" if change else "recovered"
            self.event(
                "stale" if change else "recovered", ",".join(names), f"{feed.symbol} {feed.timeframe} {what}"
            )

    # ----------------------------------------------------------------------------- reconciliation

    async def reconcile(self) -> None:
        """Settle unfinished intents, adopt our orders the store lacks, compare positions with balances."""
        orders, trading, session = self.orders, self.trading, self.session
        assert orders is not None and trading is not None and session is not None  # live mode
        # The store's unsettled intents (unless a newer state waits for the next checkpoint), then all.
        for intent in self.store.intents(self.key, unfinished=True):
            if intent.client_id not in orders.intents:
                orders.unsettled.setdefault(intent.client_id, intent)
        await orders.settle()
        # Our orders (by client id prefix) that the store does not know, open or filled since the last
        # look (a day before the first one): adopt them and book their fills.
        since = (self._reconciled_ms or self.clock.now() - DAY_MS) - HOUR_MS
        self._reconciled_ms = self.clock.now()
        self._reconciled_at = asyncio.get_running_loop().time()
        prefix = deployment_prefix(self.key)
        seen: dict[str, ExchangeOrder] = {}
        for order in await trading.open_orders():
            seen.setdefault(order.client_id, order)
        for symbol in sorted({market_pair(sp.sleeve.symbol) for sp in session.plan.sleeves}):
            for trade in await trading.my_trades(symbol, since):
                if trade.client_id.startswith(prefix) and trade.client_id not in seen:
                    found = await trading.order_by_client_id(symbol, trade.client_id)
                    if found is not None:
                        seen[trade.client_id] = found
        for order in seen.values():
            self._adopt(order)
        await self._check_balances()
        self._collect_orders()

    def _adopt(self, order: ExchangeOrder) -> None:
        """Adopt an order of this deployment that the store does not know: write its intent, book it."""
        orders, session = self.orders, self.session
        assert orders is not None and session is not None  # live mode
        names = [sp.sleeve.name for sp in session.plan.sleeves]
        s = sleeve_of(deployment_prefix(self.key), order.client_id)
        if s is None or s >= len(names) or self.store.intent(order.client_id) is not None:
            return
        name = names[s]
        held = session.simulator.position(name)
        # An order against the held position closes it; any other opens or adds to one.
        kind = "exit" if held != 0 and (order.side == "sell") == (held > 0) else "entry"
        now = self.clock.now()
        adopted = Intent(
            order.client_id, self.key, name, order.symbol, now, kind, "signal", order.side, order.amount,
            "open", order.order_id, 0.0, 0.0, math.nan, 0.0, now, now, "adopted",
        )  # fmt: skip
        self.store.update_intent(adopted)
        self.event("reconcile", name, f"adopted order {order.client_id} ({order.side} {order.amount:g})")
        orders.apply(adopted, order)

    async def _check_balances(self) -> None:
        """Freeze the sleeves of a symbol whose exchange balance disagrees with the store's positions."""
        orders, trading, session = self.orders, self.trading, self.session
        assert orders is not None and trading is not None and session is not None  # live mode
        held = {b.asset: b.free + b.locked for b in await trading.balances()}
        # Each base asset's sleeves, with their accounts.
        by_asset: dict[str, list[tuple[Any, Any]]] = {}
        for view, sp in zip(session.simulator.views(), session.plan.sleeves, strict=True):
            by_asset.setdefault(market_pair(sp.sleeve.symbol).split("/")[0], []).append((view, sp))
        deployment = self.store.deployment(self.key)
        baseline = dict(deployment.baseline) if deployment is not None else {}
        if deployment is not None and not deployment.baseline:
            # The first reconciliation of a deployment: what the account holds is not ours.
            baseline = {
                asset: held.get(asset, 0.0) - sum(v.position for v, _ in group)
                for asset, group in sorted(by_asset.items())
            }
            self.store.save_deployment(replace(deployment, baseline=tuple(baseline.items())))
        for asset, base in baseline.items():
            group = by_asset.get(asset, [])
            expected = base + orders.dust.get(asset, 0.0) + sum(v.position for v, _ in group)
            actual = held.get(asset, 0.0)
            step = max(
                (trading.rules(market_pair(sp.sleeve.symbol)).amount_step for _, sp in group), default=0.0
            )
            if abs(actual - expected) > max(step, 1e-9 * max(abs(expected), 1.0)):
                for v, _ in group:
                    if v.sleeve not in session.frozen:
                        session.frozen.add(v.sleeve)
                        self.event(
                            "reconcile", v.sleeve,
                            f"{asset}: exchange holds {actual:g}, the store expects {expected:g}: paused",
                        )  # fmt: skip

    # ---------------------------------------------------------------------------------- hot reload

    def reload(self, who: str = "engine") -> bool:
        """Re-read the spec and swap the new version in for the whole portfolio; return whether it was.

        The new version is checked and planned on the side; anything wrong (diagnostics, E080, E070 for
        an edit that would orphan a position) is an event and the running version goes on untouched.
        Otherwise its graphs are warmed on the bars seen since start and take over the state of every node
        the edit did not change (`StreamDriver.carry`), the broker carries positions, orders, risk state
        and PnL over under the new settings, and the version is saved. Called between two points only.
        """
        from dsl.checker import check_file, check_venues
        from runtime.plan.select import select

        session = self.session
        assert session is not None  # started
        path = self.options.spec_path
        kept = "; the running version stays"
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            self.event("reload", "", f"reload failed: {error.strerror}: {path}{kept}", who)
            return False
        if text == self.options.spec_text:
            return False
        checked = check_file(path, overrides=dict(self.options.overrides))
        if checked.program is None:
            self.event("reload", "", f"reload failed{kept}:\n{checked.render()}", who)
            return False
        try:
            portfolio = select(checked.program, self.options.strategy, self.options.capital)
        except StratError as error:
            self.event("reload", "", f"reload failed: {error}{kept}", who)
            return False
        venues = check_venues(checked, "live" if self.options.mode == "live" else "paper", portfolio)
        refusal = None if venues.ok else venues.render()
        refusal = refusal or self._orphans(portfolio)
        if refusal is not None:
            self.event("reload", "", f"reload refused{kept}:\n{refusal}", who)
            return False
        end = min(f.next_open for f in self.feeds)
        rp = self._plan(end, {"": end}, self._buffered(), (checked.program, portfolio))
        new = Session(rp, external=session.simulator.external, previous=session.simulator)
        for bars in new.history():
            new.feed_only(bars)
        old = {
            (sp.sleeve.name, sp.sleeve.symbol, sp.sleeve.timeframe): s
            for s, sp in enumerate(session.plan.sleeves)
        }
        for s, sp in enumerate(rp.sleeves):
            before = old.get((sp.sleeve.name, sp.sleeve.symbol, sp.sleeve.timeframe))
            if before is not None:
                new.drivers[s].carry(session.drivers[before])
        new.paused |= session.paused
        new.stale |= session.stale
        new.frozen |= session.frozen
        changes = _changes(session.plan, rp)
        # The swap: from the next point on, the new version decides.
        self.session, self.program, self.portfolio = new, checked.program, portfolio
        self.options = replace(self.options, spec_text=text)
        self._open_feeds(rp)
        self._buffer, self._reported = {}, self._counted()
        if self.orders is not None:
            self.orders.simulator = new.simulator
        sha = self._save_deployment(False)
        self.event("reload", "", f"reloaded {path} (version {sha[:12]}):\n" + "\n".join(changes), who)
        return True

    def _orphans(self, portfolio: PortfolioIR) -> str | None:
        """E070 when the new version drops or moves a sleeve that holds a position or an order; else None."""
        session = self.session
        assert session is not None  # started
        new = {s.name: s for s in portfolio.sleeves}
        held = {v.sleeve: v for v in session.simulator.views()}
        problems = []
        for sp in session.plan.sleeves:
            name, view = sp.sleeve.name, held[sp.sleeve.name]
            moved = new.get(name)
            market = (sp.sleeve.symbol, sp.sleeve.timeframe)
            if (moved is not None and (moved.symbol, moved.timeframe) == market) or not (
                view.position or view.order
            ):
                continue
            what = "removes it" if moved is None else f"moves it to {moved.symbol} {moved.timeframe}"
            order = " and a pending order" if view.order else ""
            problems.append(
                f"E070: sleeve {name} holds {view.position:g} {market_pair(sp.sleeve.symbol)}{order}; "
                f"the edit {what}, which would orphan it: flatten the sleeve first"
            )
        return "\n".join(problems) or None

    def _buffered(self) -> Loader:
        """A history loader over the running session's candles and the bars seen since (a reload's)."""
        session = self.session
        assert session is not None  # started
        known: dict[tuple[str, str], Candles] = {}
        for sp in session.plan.sleeves:
            for clock, candles in zip(sp.graph.clocks, sp.feeds.candles, strict=True):
                known.setdefault((market_pair(clock.symbol), clock.timeframe), candles)
        for m, feed in enumerate(self.feeds):
            key, extra = (feed.symbol, feed.timeframe), self._buffer.get(m)
            if extra and key in known:
                known[key] = _joined(known[key], _candles(known[key], extra))
        fallback = self.loader(self.clock.now)

        def load(symbol: str, timeframe: str, first: int | None, end: int | None) -> Candles:
            """The known candles of a market, else (or before them) the store's and the exchange's."""
            key = (market_pair(symbol), timeframe)
            candles = known.get(key)
            if candles is None or not len(candles):
                return fallback(symbol, timeframe, first, end)
            if first is not None and first < int(candles.time[0]):
                # The new version looks further back than the running one read: fetch the older bars.
                candles = known[key] = _joined(
                    fallback(symbol, timeframe, first, int(candles.time[0])), candles
                )
            return candles.slice(first, end)

        return load

    # ------------------------------------------------------------------------------------ commands
    # Called by the control service while it holds `lock`; each records an event naming `who` asked.

    def sleeve_names(self, sleeve: str | None) -> list[str]:
        """The named sleeve (or every sleeve for None), checked: LiveError names the sleeves there are."""
        session = self.session
        assert session is not None  # started
        names = [sp.sleeve.name for sp in session.plan.sleeves]
        if sleeve is None:
            return names
        if sleeve not in names:
            raise LiveError(f"no sleeve {sleeve!r} in {self.portfolio.name}; its sleeves: {', '.join(names)}")
        return [sleeve]

    def pause(self, sleeve: str | None, who: str) -> list[str]:
        """Hold back new entries of a sleeve (or all); exits are still managed. The sleeves newly paused."""
        session = self.session
        assert session is not None  # started
        changed = [n for n in self.sleeve_names(sleeve) if n not in session.paused]
        session.paused.update(changed)
        if changed:
            self.event("pause", ",".join(changed), "paused: no new entries, exits still managed", who)
        return changed

    def resume(self, sleeve: str | None, who: str) -> list[str]:
        """Allow entries again (lifts a command's pause and a reconciliation's freeze); the sleeves resumed.

        A stale feed's hold stays until the feed recovers; a sleeve whose position still disagrees with
        the exchange is frozen again by the next reconciliation.
        """
        session = self.session
        assert session is not None  # started
        changed = [n for n in self.sleeve_names(sleeve) if n in session.paused or n in session.frozen]
        session.paused.difference_update(changed)
        session.frozen.difference_update(changed)
        if changed:
            self.event("resume", ",".join(changed), "resumed: entries allowed again", who)
        return changed

    async def flatten(self, sleeve: str | None, who: str) -> list[str]:
        """Close the positions of a sleeve (or all) with market exits and pause it; the sleeves closing.

        On paper the exits fill at the next bar's open, as any simulated order; live they are sent now.
        """
        session = self.session
        assert session is not None  # started
        names = self.sleeve_names(sleeve)
        closing = session.simulator.flatten_all(names)
        session.paused.update(names)
        what = f"market exit of {', '.join(closing)}" if closing else "nothing held"
        self.event("flatten", ",".join(names), f"flatten: {what}; paused until resumed", who)
        await self._send_now()
        return closing

    async def halt(self, who: str) -> list[str]:
        """Halt the portfolio: flatten everything, no entry until `reset_halt`; the sleeves closing."""
        session = self.session
        assert session is not None  # started
        closing = session.simulator.halt()
        what = f"market exit of {', '.join(closing)}" if closing else "nothing held"
        self.event("halt", "", f"halted by hand: {what}; no entries until reset", who)
        await self._send_now()
        return closing

    def reset_halt(self, who: str) -> bool:
        """Lift every halt (by hand or by a risk rule); whether one was in force."""
        session = self.session
        assert session is not None  # started
        sim = session.simulator
        was = sim.halted or any(v.halted for v in sim.views())
        sim.reset_halt()
        self.event("reset_halt", "", "halt reset: entries allowed again" if was else "no halt in force", who)
        if was:
            self.store.set_state(self.key, "running", wall_clock_ms())
        return was

    async def _send_now(self) -> None:
        """Live: send the sleeves' pending orders now (a command's exits)."""
        session = self.session
        if self.orders is not None and session is not None:
            await self._send(session.simulator.pending(), self.clock.now())

    async def _send(self, pending: list[PendingOrder], bar_close_ms: int) -> None:
        """Live: send the pending orders (decided at `bar_close_ms`) of the sleeves with none in flight."""
        assert self.orders is not None  # live mode
        waiting = self.orders.waiting()
        for order in pending:
            if order.sleeve not in waiting:
                await self.orders.submit(order, bar_close_ms)
        self._collect_orders()

    # --------------------------------------------------------------------------------- persistence

    def checkpoint(self) -> None:
        """Write the broker snapshot, changed intents, new events, feeds and equity in one transaction."""
        session = self.session
        assert session is not None  # started
        sim = session.simulator
        intents = []
        dust: dict[str, float] = {}
        if self.orders is not None:
            intents = list(self.orders.intents.values())
            self.orders.intents.clear()
            dust = self.orders.dust
            self._collect_orders()
        feeds = tuple((f.symbol, f.timeframe, f.next_open) for f in self.feeds)
        engine_state = {
            "start_ms": self.start_ms,
            "last": {f"{f.symbol} {f.timeframe}": f.next_open for f in self.feeds},
            "paused": sorted(session.paused),
            "dust": dust,
        }
        now = self.clock.now()
        self.store.checkpoint(
            Checkpoint(
                self.key, now, json.dumps(sim.snapshot(keep_points=1)), json.dumps(engine_state), feeds,
                tuple(self.sleeve_status()), sim.equity, sim.cash,
            ),
            intents=tuple(intents),
            events=tuple(self.events),
        )  # fmt: skip
        saved, self.events = self.events, []
        if saved:
            for listener in self.listeners:
                listener()
        if sim.halted:
            self.store.set_state(self.key, "halted", wall_clock_ms())
        if self.on_point is not None:
            self.on_point(self)

    def sleeve_status(self) -> list[SleeveStatus]:
        """Every sleeve's persisted view: position, PnL, flags, last bar and open orders."""
        session = self.session
        assert session is not None  # started
        open_orders: dict[str, list[Any]] = {}
        if self.orders is not None:
            for intent in self.store.intents(self.key, unfinished=True):
                open_orders.setdefault(intent.sleeve, []).append(intent)
        out = []
        for view, sp in zip(session.simulator.views(), session.plan.sleeves, strict=True):
            base = next(
                f
                for f in self.feeds
                if f.symbol == market_pair(sp.sleeve.symbol) and f.timeframe == sp.sleeve.timeframe
            )
            held = session.held(view.sleeve)
            out.append(
                SleeveStatus(
                    view.sleeve, sp.sleeve.symbol, sp.sleeve.timeframe, view.position, view.avg_entry,
                    view.realized_pnl, view.unrealized_pnl, bool(held), view.halted, base.next_open,
                    tuple(open_orders.get(view.sleeve, ())), held, view.last_close,
                )
            )  # fmt: skip
        return out

    async def shutdown(self) -> None:
        """Stop cleanly: flatten when asked, checkpoint, mark the deployment stopped."""
        session = self.session
        for stream in [*self._closing, *(f.stream for f in self.feeds if f.stream is not None)]:
            await stream.close()
        if session is None:
            return
        if self.options.flatten_on_exit and self.orders is not None:
            session.simulator.flatten_all()
            await self._send_now()
        self.event("stop", "", "stopped")
        self.checkpoint()
        sim = session.simulator
        self.store.set_state(self.key, "halted" if sim.halted else "stopped", wall_clock_ms())


def _joined(head: Candles, tail: Candles) -> Candles:
    """The bars of `head`, then those of `tail` that open after its last one (same market)."""
    last = int(head.time[-1]) if len(head) else -(2**62)
    tail = tail.slice(last + 1, None)
    if not len(tail):
        return head
    columns = ("open", "high", "low", "close", "volume")
    return Candles.from_arrays(
        head.exchange, head.symbol, head.timeframe, np.concatenate([head.time, tail.time]),
        [np.concatenate([getattr(head, f), getattr(tail, f)]) for f in columns], synthetic=head.synthetic,
    )  # fmt: skip


def _candles(like: Candles, bars: list[Candle]) -> Candles:
    """Closed bars as a candle series of the market of `like`."""
    columns = ("open", "high", "low", "close", "volume")
    prices = [np.array([getattr(b, f) for b in bars], dtype=np.float64) for f in columns]
    times = np.array([b.time for b in bars], dtype=np.int64)
    return Candles.from_arrays(
        like.exchange, like.symbol, like.timeframe, times, prices, synthetic=like.synthetic
    )


def _changes(old: RunPlan, new: RunPlan) -> list[str]:
    """What a reload changed: a line per sleeve (params, rules, weight, added, removed), one for the risk."""
    lines = []
    before = {sp.sleeve.name: sp for sp in old.sleeves}
    for b in new.sleeves:
        a = before.pop(b.sleeve.name, None)
        market = f"{b.sleeve.symbol} {b.sleeve.timeframe}"
        if a is None or (a.sleeve.symbol, a.sleeve.timeframe) != (b.sleeve.symbol, b.sleeve.timeframe):
            what = "added" if a is None else "moved"
            lines.append(f"  {b.sleeve.name}: {what} ({market}, weight {b.sleeve.weight:.0%}; starts flat)")
            continue
        parts = [f"{k} {a.values.get(k)} -> {v}" for k, v in b.values.items() if a.values.get(k) != v]
        hashes_a, hashes_b = a.graph.node_hashes(), b.graph.node_hashes()
        rules = [
            name for name, node in b.graph.rules.items()
            if name not in a.graph.rules or hashes_a[a.graph.rules[name]] != hashes_b[node]
        ]  # fmt: skip
        if rules:
            parts.append("rules " + ", ".join(rules))
        if a.sleeve.weight != b.sleeve.weight:
            parts.append(f"weight {a.sleeve.weight:.0%} -> {b.sleeve.weight:.0%}")
        lines.append(f"  {b.sleeve.name}: " + ("; ".join(parts) if parts else "unchanged"))
    lines += [f"  {name}: removed" for name in before]
    texts_a, texts_b = [r.text for r in old.risk], [r.text for r in new.risk]
    if texts_a != texts_b:
        added = [r for r in texts_b if r not in texts_a]
        dropped = [r for r in texts_a if r not in texts_b]
        shown = "".join(f"\n    + {r}" for r in added) + "".join(f"\n    - {r}" for r in dropped)
        lines.append(f"  risk: +{len(added)} -{len(dropped)} rule(s){shown}")
    return lines
