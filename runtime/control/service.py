"""The control service: every command a front-end offers, over the running engine or the store alone.

Attached to the engine of this process (`strat run SPEC --paper|--live`) it reads the engine's state and
changes it; over the store alone (`strat serve`) it reads what deployments persisted and saved backtest
runs, and refuses the commands that change something. It knows no transport: results are the typed
models of `runtime.control.models`, errors are `ControlError` with one plain sentence. Every command that
changes something runs under the engine's lock (never between a bar's decision and its orders), records
an event naming who asked, and is checkpointed at once, so it is persisted and fanned out like any event.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

from runtime.backtest.metrics import iso_time
from runtime.broker.simulator import saved_trades
from runtime.data.times import wall_clock_ms
from runtime.errors import StratError
from runtime.plan.inputs import market_pair
from runtime.store.live import LiveEvent, LiveStore, SleeveStatus, shown_state
from runtime.store.runs import RunListing, RunStore

from . import models as m

if TYPE_CHECKING:
    from runtime.live.engine import Engine
    from runtime.store.live import Checkpoint
    from runtime.store.live import Deployment as StoredDeployment

T = TypeVar("T")
P = ParamSpec("P")
DAY_MS = 86_400_000  # one day, ms
READ_WAIT_S = 2.0  # longest a read waits for the engine's pass to end, seconds
# Monday 1970-01-05 00:00 UTC, ms: weeks start on Mondays.
_MONDAY_MS = 4 * DAY_MS


def between_points(
    read: Callable[Concatenate[ControlService, P], Awaitable[T]],
) -> Callable[Concatenate[ControlService, P], Awaitable[T]]:
    """Make a read of the engine's state wait for the end of the loop's pass (it takes the engine's lock).

    The engine holds its lock for a whole pass (poll, step, act, checkpoint), and awaits inside it (the
    exchange's answers): a read served meanwhile could see one market's feed moved on but its point not
    stepped yet. Under the lock every read sees the state between two points, as commands change it.
    """

    @functools.wraps(read)
    async def locked(self: ControlService, *args: P.args, **kwargs: P.kwargs) -> T:
        """The read, under the engine's lock when this process runs one."""
        if self.engine is None:
            return await read(self, *args, **kwargs)
        lock = self.engine.lock
        try:
            await asyncio.wait_for(lock.acquire(), READ_WAIT_S)
        except TimeoutError:
            # A pass held up by the exchange (its retries take up to half a minute): read as it stands.
            return await read(self, *args, **kwargs)
        try:
            return await read(self, *args, **kwargs)
        finally:
            lock.release()

    return locked


class ControlError(StratError):
    """A command cannot be done as asked; the message is one plain sentence for people."""


class NotFound(ControlError):
    """What a command names (a deployment, a sleeve, a run, a report) does not exist."""


def _iso(ms: int | None) -> str:
    """UTC ms as ISO-8601 ("" for None or a negative time)."""
    return "" if ms is None or ms < 0 else iso_time(int(ms))


def _num(value: float) -> float | None:
    """A float, None when it is NaN or infinite (JSON has no NaN)."""
    return None if value is None or not math.isfinite(value) else float(value)


def day_start(ms: int) -> int:
    """00:00 UTC of the day holding `ms`, ms."""
    return ms // DAY_MS * DAY_MS


def week_start(ms: int) -> int:
    """Monday 00:00 UTC of the week holding `ms`, ms."""
    return (ms - _MONDAY_MS) // (7 * DAY_MS) * (7 * DAY_MS) + _MONDAY_MS


class ControlService:
    """The commands of one process: over its engine (when it runs one) and over the store."""

    def __init__(self, live: LiveStore, runs: RunStore, engine: Engine | None = None) -> None:
        """Serve the deployments of `live`, the runs of `runs`, and `engine` when this process runs one."""
        self.live = live  # deployments, checkpoints, intents, events
        self.runs_store = runs  # saved backtest runs
        self.engine = engine  # the engine of this process, None over the store alone

    # ----------------------------------------------------------------------------------- choosing

    def deployment_key(self, deployment: str | None = None) -> str:
        """The deployment a command is about: the one named, else this process's, else the latest one."""
        engine = self.engine
        if deployment is None and engine is not None:
            return engine.key
        known = self.live.deployments()
        if deployment is not None:
            if engine is not None and deployment == engine.key:
                return deployment
            if not any(d.key == deployment for d in known):
                raise NotFound(f"no deployment {deployment!r}; strat status lists them")
            return deployment
        if not known:
            raise NotFound("no deployment yet: start one with strat run SPEC --paper")
        return max(known, key=lambda d: d.heartbeat_ms).key

    def _attached(self, key: str) -> Engine | None:
        """The engine of this process when it runs deployment `key`, else None."""
        engine = self.engine
        return engine if engine is not None and engine.key == key and engine.session is not None else None

    def _stored(self, key: str) -> StoredDeployment:
        """The stored deployment row of `key`."""
        found = self.live.deployment(key)
        if found is None:
            raise NotFound(f"deployment {key} has not started yet")
        return found

    def _checkpoint(self, key: str) -> Checkpoint | None:
        """The last checkpoint of a deployment (None before its first)."""
        return self.live.last_checkpoint(key)

    def _sleeve_rows(self, key: str, checkpoint: Checkpoint | None = None) -> list[SleeveStatus]:
        """Every sleeve's status: live from the engine, else from `checkpoint` (default: the last one)."""
        engine = self._attached(key)
        if engine is not None:
            return engine.sleeve_status()
        checkpoint = checkpoint or self._checkpoint(key)
        return list(checkpoint.sleeves) if checkpoint is not None else []

    def _account(self, key: str, checkpoint: Checkpoint | None = None) -> tuple[float, float] | None:
        """(equity, cash) now: the engine's, else `checkpoint`'s (default: the last one; None before it)."""
        engine = self._attached(key)
        if engine is not None and engine.session is not None:
            return engine.session.simulator.equity, engine.session.simulator.cash
        checkpoint = checkpoint or self._checkpoint(key)
        return (checkpoint.equity, checkpoint.cash) if checkpoint is not None else None

    # -------------------------------------------------------------------------------------- reads

    async def deployments(self) -> list[m.Deployment]:
        """Every deployment the store knows, the most recently alive first."""
        now = wall_clock_ms()
        rows = sorted(self.live.deployments(), key=lambda d: -d.heartbeat_ms)
        return [
            m.Deployment(
                key=d.key, name=d.name, mode=d.mode, exchange=d.exchange, state=shown_state(d, now),
                heartbeat=_iso(d.heartbeat_ms), attached=self._attached(d.key) is not None,
            )
            for d in rows
        ]  # fmt: skip

    @between_points
    async def status(self, deployment: str | None = None) -> m.Status:
        """A deployment at a glance: state, version, equity, sleeves, flags, the last reload."""
        key = self.deployment_key(deployment)
        d = self._stored(key)
        engine = self._attached(key)
        checkpoint = self._checkpoint(key)
        sleeves = self._sleeve_rows(key, checkpoint)
        account = self._account(key, checkpoint)
        return m.Status(
            deployment=key, name=d.name, mode=d.mode, exchange=d.exchange,
            state=shown_state(d, wall_clock_ms()), attached=engine is not None, spec_path=d.spec_path,
            version=d.spec_sha[:12], started=_iso(d.started_ms), heartbeat=_iso(d.heartbeat_ms),
            last_update=_iso(checkpoint.time_ms) if checkpoint is not None else None,
            equity=None if account is None else _num(account[0]),
            cash=None if account is None else _num(account[1]),
            sleeves=len(sleeves), positions=sum(1 for s in sleeves if s.position),
            paused=[s.sleeve for s in sleeves if s.paused], halted=any(s.halted for s in sleeves),
            last_reload=self._last_reload(key),
        )  # fmt: skip

    def _last_reload(self, key: str) -> m.Reload | None:
        """The latest reload event of a deployment (among its last 500 events)."""
        for _, e in reversed(self.live.events(key, limit=500)):
            if e.kind == "reload":
                ok = e.message.startswith("reloaded")
                return m.Reload(time=_iso(e.time_ms), ok=ok, message=e.message, who=e.who)
        return None

    @between_points
    async def sleeves(self, deployment: str | None = None) -> list[m.Sleeve]:
        """Every sleeve: market, position, PnL and flags (spec order)."""
        return [_sleeve(s) for s in self._sleeve_rows(self.deployment_key(deployment))]

    @between_points
    async def positions(self, deployment: str | None = None) -> list[m.Position]:
        """The open positions."""
        out = []
        for s in self._sleeve_rows(self.deployment_key(deployment)):
            if not s.position:
                continue
            last = _num(s.last_close)
            out.append(
                m.Position(
                    sleeve=s.sleeve, symbol=market_pair(s.symbol), side="long" if s.position > 0 else "short",
                    qty=abs(s.position), avg_entry=_num(s.avg_entry), last_close=last,
                    value=abs(s.position) * last if last is not None else None,
                    unrealized_pnl=s.unrealized_pnl,
                )
            )  # fmt: skip
        return out

    @between_points
    async def orders(self, deployment: str | None = None, finished: bool = False) -> list[m.Order]:
        """Orders not finished yet (live: the exchange's; paper: the broker's pending ones).

        `finished` adds the deployment's latest 100 finished orders (live), newest first.
        """
        key = self.deployment_key(deployment)
        engine = self._attached(key)
        intents = self.live.intents(key, unfinished=not finished)
        out = [
            m.Order(
                id=i.client_id, sleeve=i.sleeve, symbol=i.symbol, side=i.side, intent=i.intent,
                reason=i.reason, qty=_num(i.qty), filled=i.filled, avg_price=_num(i.avg_price),
                status=i.status, created=_iso(i.created_ms), error=i.error,
            )
            for i in sorted(intents, key=lambda i: -i.created_ms)[:100]
        ]  # fmt: skip
        if engine is not None and engine.session is not None and not engine.session.simulator.external:
            # On paper the broker's pending orders fill at the next bar's open.
            sim, plan = engine.session.simulator, engine.session.plan
            symbols = {sp.sleeve.name: market_pair(sp.sleeve.symbol) for sp in plan.sleeves}
            for o in sim.pending(sized=False):
                out.append(
                    m.Order(
                        id=f"paper:{o.sleeve}", sleeve=o.sleeve, symbol=symbols[o.sleeve],
                        side="buy" if o.buy else "sell", intent=o.intent, reason=o.reason, qty=None,
                        filled=0.0, avg_price=None, status="pending", created=_iso(sim.last_time), error="",
                    )
                )  # fmt: skip
        return out

    @between_points
    async def trades(self, deployment: str | None = None, limit: int = 50) -> list[m.Trade]:
        """The latest `limit` trades, newest first (the open ones marked at the latest close)."""
        key = self.deployment_key(deployment)
        engine = self._attached(key)
        if engine is not None and engine.session is not None:
            table = engine.session.simulator.finish().since(engine.start_ms).trade_table
        else:
            checkpoint = self._checkpoint(key)
            if checkpoint is None:
                return []
            symbols = {s.sleeve: s.symbol for s in checkpoint.sleeves}
            table = saved_trades(json.loads(checkpoint.snapshot), symbols)
        rows = sorted(table.rows(), key=lambda t: (-t.entry_time, t.sleeve))[: max(limit, 0)]
        return [
            m.Trade(
                sleeve=t.sleeve, symbol=market_pair(t.symbol), side=t.side, qty=t.qty,
                entry_time=_iso(t.entry_time), entry_price=t.entry_price,
                exit_time=_iso(t.exit_time) if t.exit_time is not None else None,
                exit_price=_num(t.exit_price) if t.exit_time is not None else None, pnl=t.pnl,
                ret=_num(t.ret) or 0.0, fees=t.fees,
                exit_reason=t.exit_reason if t.exit_time is not None else "open",
                closed=t.exit_time is not None,
            )
            for t in rows
        ]  # fmt: skip

    @between_points
    async def pnl(self, deployment: str | None = None) -> m.PnL:
        """Profit today, this week and since the start, with the realized and unrealized parts."""
        key = self.deployment_key(deployment)
        sleeves = self._sleeve_rows(key)
        curve = self.live.equity(key)
        engine = self._attached(key)
        quote = self._quote(key, sleeves)
        # The starting capital and the equity now: the engine's, else the curve's first and last points.
        if engine is not None and engine.session is not None:
            capital, now_equity = engine.session.plan.capital, engine.session.simulator.equity
        else:
            capital = curve[0][1] if curve else 0.0
            now_equity = curve[-1][1] if curve else capital
        now = wall_clock_ms()

        def since(start: int) -> float:
            """Equity change since `start`: from the last point before it (or the first after it)."""
            before = [e for t, e, _ in curve if t <= start]
            base = before[-1] if before else (curve[0][1] if curve else capital)
            return now_equity - base

        return m.PnL(
            day=since(day_start(now)), week=since(week_start(now)), total=now_equity - capital,
            realized=sum(s.realized_pnl for s in sleeves), unrealized=sum(s.unrealized_pnl for s in sleeves),
            equity=now_equity, capital=capital, quote=quote,
        )  # fmt: skip

    def _quote(self, key: str, sleeves: list[SleeveStatus]) -> str:
        """A deployment's quote currency: its engine's, else its `sleeves`' markets'."""
        engine = self._attached(key)
        if engine is not None and engine.session is not None:
            return engine.session.plan.quote
        return market_pair(sleeves[0].symbol).split("/")[-1] if sleeves else ""

    @between_points
    async def balance(self, deployment: str | None = None) -> list[m.Balance]:
        """The account's assets: the exchange's balances live, the simulated account on paper."""
        key = self.deployment_key(deployment)
        engine = self._attached(key)
        if engine is not None and engine.trading is not None:
            try:
                held = await engine.trading.balances()
            except StratError as error:
                raise ControlError(f"the exchange did not answer: {error}") from None
            return [
                m.Balance(asset=b.asset, free=b.free, locked=b.locked, total=b.free + b.locked)
                for b in sorted(held, key=lambda b: b.asset)
                if b.free or b.locked
            ]
        # The simulated account: cash in the quote currency, each base asset's net position.
        checkpoint = None if engine is not None else self._checkpoint(key)
        sleeves = self._sleeve_rows(key, checkpoint)
        account = self._account(key, checkpoint)
        cash = account[1] if account is not None else 0.0
        quote = self._quote(key, sleeves)
        assets: dict[str, float] = {}
        for s in sleeves:
            base = market_pair(s.symbol).split("/")[0]
            assets[base] = assets.get(base, 0.0) + s.position
        rows = [m.Balance(asset=quote, free=cash, locked=0.0, total=cash)]
        return rows + [
            m.Balance(asset=a, free=q, locked=0.0, total=q) for a, q in sorted(assets.items()) if q
        ]

    async def equity(self, deployment: str | None = None, points: int = 500) -> list[m.EquityPoint]:
        """The equity curve, thinned to at most `points` points (the last point of each stretch kept)."""
        curve = self.live.equity(self.deployment_key(deployment))
        points = max(points, 2)
        if len(curve) > points:
            step = len(curve) / points
            curve = [curve[min(int((i + 1) * step) - 1, len(curve) - 1)] for i in range(points)]
        return [m.EquityPoint(time=_iso(t), equity=e, cash=c) for t, e, c in curve]

    async def events(
        self, deployment: str | None = None, since_id: int = 0, limit: int = 100
    ) -> list[m.Event]:
        """The newest `limit` events with an id above `since_id`, oldest first."""
        key = self.deployment_key(deployment)
        return [
            event_model(key, i, e) for i, e in self.live.events(key, limit=max(limit, 0), since_id=since_id)
        ]

    async def runs(self, limit: int = 50) -> list[m.Run]:
        """The saved backtest runs, newest first."""
        return [_run(r) for r in self.runs_store.latest(max(limit, 0))]

    async def run(self, run_id: int) -> m.RunDetail:
        """One saved run: spec, parameters and every metric."""
        stored = self.runs_store.get(run_id)
        if stored is None:
            raise NotFound(f"no saved run {run_id}; strat runs lists them")
        r = stored.record
        headline = RunListing(
            stored.id, r.created_at, r.spec_name, r.mode, r.data_start, r.data_end, r.summary.total_return,
            r.summary.max_drawdown, r.summary.sharpe, r.summary.synthetic, r.report,
        )  # fmt: skip
        return m.RunDetail(
            run=_run(headline), spec_path=r.spec_path, params=dict(r.params), trades=len(r.trades),
            summary=json.loads(r.summary.model_dump_json()),
        )  # fmt: skip

    async def report(self, run_id: int) -> Path:
        """The report.html file of a saved run."""
        detail = await self.run(run_id)
        stored = self.runs_store.get(run_id)
        path = Path(stored.record.report) if stored is not None and stored.record.report else None
        if path is None or not detail.run.report:
            raise NotFound(f"run {run_id} has no report (it was run with --no-report, or moved)")
        return path

    # ------------------------------------------------------------------------------------ actions

    async def _command(self, deployment: str | None, act: Callable[[Engine], Awaitable[T]]) -> T:
        """Run `act` on this process's engine under its lock, then checkpoint (persisted, fanned out)."""
        key = self.deployment_key(deployment)
        engine = self._attached(key)
        if engine is None:
            raise ControlError(
                f"deployment {key} does not run in this process: commands go to the process that runs it "
                "(strat run SPEC --paper|--live)"
            )
        async with engine.lock:
            try:
                done = await act(engine)
            except ControlError:
                raise
            except StratError as error:
                raise ControlError(str(error)) from None
            engine.checkpoint()
        return done

    async def pause(self, sleeve: str | None, who: str, deployment: str | None = None) -> m.Done:
        """Pause a sleeve (or all): no new entries, exits still managed."""

        async def act(e: Engine) -> m.Done:
            """Pause under the lock."""
            _check_sleeve(e, sleeve)
            changed = e.pause(sleeve, who)
            what = ", ".join(changed) if changed else "nothing: already paused"
            return m.Done(ok=bool(changed), message=f"paused {what}", sleeves=changed)

        return await self._command(deployment, act)

    async def resume(self, sleeve: str | None, who: str, deployment: str | None = None) -> m.Done:
        """Resume a sleeve (or all): entries allowed again."""

        async def act(e: Engine) -> m.Done:
            """Resume under the lock."""
            _check_sleeve(e, sleeve)
            changed = e.resume(sleeve, who)
            stale = [n for n in e.sleeve_names(sleeve) if e.session is not None and n in e.session.stale]
            what = ", ".join(changed) if changed else "nothing: not paused"
            note = f" ({', '.join(stale)} wait for a stale feed to recover)" if stale else ""
            return m.Done(ok=bool(changed), message=f"resumed {what}{note}", sleeves=changed)

        return await self._command(deployment, act)

    async def flatten(self, sleeve: str | None, who: str, deployment: str | None = None) -> m.Done:
        """Close a sleeve's (or every) position with market exits and pause it."""

        async def act(e: Engine) -> m.Done:
            """Flatten under the lock."""
            _check_sleeve(e, sleeve)
            closing = await e.flatten(sleeve, who)
            what = f"closing {', '.join(closing)}" if closing else "nothing held"
            when = "now" if e.orders is not None else "at the next bar's open (paper)"
            held = f"; exits {when}" if closing else ""
            return m.Done(ok=True, message=f"flatten: {what}{held}; paused until resumed", sleeves=closing)

        return await self._command(deployment, act)

    async def halt(self, who: str, deployment: str | None = None) -> m.Done:
        """Halt the portfolio: flatten everything, no entries until reset."""

        async def act(e: Engine) -> m.Done:
            """Halt under the lock."""
            closing = await e.halt(who)
            what = f"closing {', '.join(closing)}" if closing else "nothing held"
            return m.Done(ok=True, message=f"halted: {what}; no entries until reset", sleeves=closing)

        return await self._command(deployment, act)

    async def reset_halt(self, who: str, deployment: str | None = None) -> m.Done:
        """Lift every halt."""

        async def act(e: Engine) -> m.Done:
            """Reset under the lock."""
            was = e.reset_halt(who)
            return m.Done(ok=was, message="halt reset" if was else "no halt in force", sleeves=[])

        return await self._command(deployment, act)

    async def reload(self, who: str, deployment: str | None = None) -> m.Done:
        """Re-read the spec now; the result says what changed or why the running version stays."""

        async def act(e: Engine) -> m.Done:
            """Reload under the lock."""
            before = len(e.events)
            applied = e.reload(who)
            await e.close_retired()
            said = [x.message for x in e.events[before:] if x.kind == "reload"]
            message = said[-1] if said else "the spec is unchanged"
            return m.Done(ok=applied, message=message, sleeves=[])

        return await self._command(deployment, act)

    async def daily_summary(self, deployment: str | None = None) -> str:
        """The day's summary (PnL, equity, trades, positions), recorded as a "summary" event; its text."""
        key = self.deployment_key(deployment)
        pnl = await self.pnl(key)
        positions = await self.positions(key)
        since = day_start(wall_clock_ms()) - DAY_MS
        trades = [
            t for t in await self.trades(key, limit=1000) if t.closed and (t.exit_time or "") >= _iso(since)
        ]
        held = ", ".join(f"{p.sleeve} {p.side} {p.qty:g}" for p in positions) or "none"
        # Made just after 00:00 UTC: the day is the one that just ended (from the last point before it).
        curve = self.live.equity(key)
        before = [e for t, e, _ in curve if t <= since]
        day = pnl.equity - (before[-1] if before else curve[0][1] if curve else pnl.capital)
        text = (
            f"daily summary: equity {pnl.equity:,.2f} {pnl.quote}; day {day:+,.2f}, "
            f"week {pnl.week:+,.2f}, total {pnl.total:+,.2f}; {len(trades)} trade(s) closed since "
            f"{_iso(since)[:10]}; positions: {held}"
        )
        engine = self._attached(key)
        if engine is not None:
            async with engine.lock:
                engine.event("summary", "", text)
                engine.checkpoint()
        return text


def _check_sleeve(engine: Engine, sleeve: str | None) -> None:
    """NotFound (naming the sleeves there are) unless `sleeve` is one of the engine's (None: every one)."""
    try:
        engine.sleeve_names(sleeve)
    except StratError as error:
        raise NotFound(str(error)) from None


def event_model(key: str, event_id: int, e: LiveEvent) -> m.Event:
    """A stored event as the API shows it."""
    return m.Event(
        id=event_id, time=_iso(e.time_ms), kind=e.kind, sleeve=e.sleeve, message=e.message, who=e.who,
        deployment=key,
    )  # fmt: skip


def _sleeve(s: SleeveStatus) -> m.Sleeve:
    """A sleeve status as the API shows it."""
    return m.Sleeve(
        name=s.sleeve, symbol=market_pair(s.symbol), timeframe=s.timeframe, position=s.position,
        avg_entry=_num(s.avg_entry), last_close=_num(s.last_close), realized_pnl=s.realized_pnl,
        unrealized_pnl=s.unrealized_pnl, paused=s.paused, held=list(s.held), halted=s.halted,
        last_bar=_iso(s.last_bar_ms), open_orders=len(s.open_orders),
    )  # fmt: skip


def _run(r: RunListing) -> m.Run:
    """A saved run's headline as the API shows it."""
    return m.Run(
        id=r.id, saved=_iso(r.created_at // 1000 * 1000), spec=r.spec_name, mode=r.mode,
        start=_iso(r.data_start), end=_iso(r.data_end), total_return=r.total_return,
        max_drawdown=r.max_drawdown, sharpe=_num(r.sharpe) if r.sharpe is not None else None,
        report=bool(r.report) and Path(r.report).is_file(),
    )  # fmt: skip
