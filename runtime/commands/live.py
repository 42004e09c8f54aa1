"""`strat run SPEC --paper | --live`: trade a spec on live candles, with simulated fills or real orders.

The handler checks everything before anything starts (the spec, E080 for shorts on a spot venue,
credentials for --live, the store, the output folder), then runs the live engine (`runtime.live.engine`)
until Ctrl-C or SIGTERM. While it runs the console shows a live view (each sleeve's position, last
close, PnL, pending order, and the latest events) and the output folder keeps the files a backtest
writes (trades.csv, orders.csv, equity.csv, risk_events.csv) plus events.csv, up to date after every bar.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsl.units import parse_duration, timeframe_ms
from runtime.commands.source import Source, SourceKind, parse_time
from runtime.data.times import format_time

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from runtime.commands.serve import ApiBind
    from runtime.data.candles import Candles
    from runtime.live.engine import Engine, LiveOptions

# More events than a session ever has (the store's `events` returns at most this many).
_ALL = 1 << 40
# Columns of events.csv.
EVENT_COLUMNS = ("time", "kind", "sleeve", "message", "who")


def add_live_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of a paper or live session to `strat run`."""
    group = parser.add_argument_group("paper and live trading")
    group.add_argument(
        "--sandbox", action="store_true", help="trade on the exchange's testnet (ccxt sandbox)"
    )
    group.add_argument(
        "--poll",
        metavar="DURATION",
        help="longest wait between polls for closed candles, e.g. 1s, 500ms (default: a twentieth of the "
        "smallest timeframe, between 0.25 s and 5 s)",
    )
    group.add_argument(
        "--flatten-on-exit", action="store_true", help="close every position when the session stops"
    )
    group.add_argument(
        "--ws",
        action="store_true",
        help="take closed candles from the exchange's websocket as they close (where ccxt has one); REST "
        "polling fills the gaps: at start, after a reconnect, and while the stream is silent",
    )


def poll_seconds(text: str) -> float:
    """Seconds of a --poll duration in the language's form (500ms, 2s, 1m); ValueError otherwise."""
    ms = parse_duration(text)
    if not ms:
        raise ValueError(f"--poll {text}: expected a positive duration such as 500ms, 1s or 1m")
    return ms / 1000


def run_live(args: argparse.Namespace, mode: str) -> int:
    """Check, then run one paper or live deployment until it is stopped; the exit code."""
    from runtime.commands.run import out_problem, parse_overrides

    overrides = parse_overrides(args.set, "run")
    if overrides is None:
        return 2
    try:
        poll = poll_seconds(args.poll) if args.poll else None
        source = dataclasses.replace(Source.from_args(args), kind=SourceKind.STORE, path=None, chosen=True)
    except ValueError as error:
        print(f"strat run: {error}", file=sys.stderr)
        return 2
    if not Path(args.spec).is_file():
        print(f"strat run: {args.spec}: no such file", file=sys.stderr)
        return 2
    from dsl.checker import check_file, check_venues
    from runtime.plan.select import select

    checked = check_file(args.spec, overrides=overrides)
    if checked.diagnostics:
        print(checked.render(), file=sys.stderr)
    if checked.program is None:
        return 1
    program = checked.program
    portfolio = select(program, args.strategy, args.capital)
    # E080: a short entry on a spot market cannot trade; refused before anything starts.
    venues = check_venues(checked, "live" if mode == "live" else "paper", portfolio)
    if not venues.ok:
        print(venues.render(), file=sys.stderr)
        return 1
    # One deployment trades on one exchange: the one its symbols name (else --exchange, else binance).
    exchanges = sorted({source.market(s.symbol)[0] for s in portfolio.sleeves})
    if len(exchanges) > 1:
        print(f"strat run: {portfolio.name} trades on {', '.join(exchanges)}: a deployment trades on one "
              "exchange; split it into one portfolio per exchange", file=sys.stderr)  # fmt: skip
        return 1
    source = dataclasses.replace(source, exchange=exchanges[0])
    out = Path(args.out) if args.out else Path("reports") / f"{portfolio.name}-{mode}"
    problem = out_problem(out)
    if problem:
        print(f"strat run: --out {out}: {problem}", file=sys.stderr)
        return 2
    credentials = None
    if mode == "live":
        from runtime.exchange.trading import load_credentials

        credentials = load_credentials(source.exchange, Path.cwd())
        if credentials is None:
            name = source.exchange.upper()
            print(
                f"strat run: --live needs credentials: set STRAT_{name}_API_KEY and STRAT_{name}_API_SECRET, "
                f"or put them under [{source.exchange}] in .strat/secrets.toml",
                file=sys.stderr,
            )
            return 1
    from runtime.commands.serve import api_bind, notify_problem

    problem = notify_problem()
    if problem:
        print(f"strat run: {problem}", file=sys.stderr)
        return 2
    try:
        bind = None if args.no_api else api_bind(args.api)
    except ValueError as error:
        print(f"strat run: {error}", file=sys.stderr)
        return 2
    smallest = min(timeframe_ms(s.timeframe) for s in portfolio.sleeves)
    poll_s = poll if poll is not None else min(max(smallest / 20_000, 0.25), 5.0)
    spec_text = Path(args.spec).read_text(encoding="utf-8")
    from runtime.live.engine import LiveOptions

    options = LiveOptions(
        mode, source.exchange, args.spec, spec_text, poll_s, args.flatten_on_exit, args.ws,
        tuple(overrides.items()), args.strategy, args.capital,
    )  # fmt: skip
    return asyncio.run(_session(args, options, source, program, portfolio, credentials, out, bind))


async def _session(
    args: argparse.Namespace,
    options: LiveOptions,
    source: Source,
    program: Any,
    portfolio: Any,
    credentials: Any,
    out: Path,
    bind: ApiBind | None,
) -> int:
    """Run the engine and its front-ends (API, bot, notifications) until a signal stops it; the exit code."""
    from runtime.commands.serve import host, log_to
    from runtime.control.bus import EventBus
    from runtime.control.service import ControlService
    from runtime.exchange.client import ExchangeClient
    from runtime.exchange.feed import ExchangeFeed
    from runtime.live.engine import Engine
    from runtime.store.live import LiveStore
    from runtime.store.runs import RunStore
    from runtime.store.schema import open_store

    exchange = ExchangeClient(source.exchange, api_url=source.api_url, sandbox=args.sandbox)

    def loader(clock: Callable[[], int]) -> Callable[[str, str, int | None, int | None], Candles]:
        """History through the store, fetched from the exchange with the exchange's clock."""
        feed = ExchangeFeed(source.exchange, api_url=source.api_url, clock=clock)
        return lambda symbol, tf, first, last: source.load(symbol, tf, first, last, feed=feed).candles

    trading = None
    if credentials is not None:
        from runtime.exchange.trading import TradingClient

        trading = TradingClient(source.exchange, credentials, api_url=source.api_url, sandbox=args.sandbox)
    store = open_store(source.db_url)
    engine = Engine(
        options, program, portfolio, LiveStore(store), exchange, loader, trading,
        account=credentials.account if credentials is not None else "paper",
    )  # fmt: skip
    service = ControlService(engine.store, RunStore(store), engine)
    bus = EventBus(engine.store, lambda: [engine.key])
    engine.listeners.append(bus.wake)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    from runtime.backtest.output import make_console

    console = make_console()
    view = _View(console)

    files = SessionFiles(out)

    def on_point(e: Engine) -> None:
        """After every checkpoint: bring the outputs up to date and refresh the view."""
        files.write(e)
        view.update(e)

    engine.on_point = on_point
    client = exchange.asynchronous()
    try:
        if trading is not None:
            await trading.start()
        with view:
            await engine.start(client)
            console.print(f"{options.mode} session {engine.key} started; outputs in {out}; Ctrl-C stops it")
            log_to(str(out / "strat.log"))
            # The front-ends, and saves of the spec (or a file it uses) reloading it between two bars. The
            # front-ends stop after the engine: its last events (the stop, a flatten on exit) are notified.
            stopped = asyncio.Event()
            front = host(service, bus, bind, stopped, notify=True)
            if bind is not None:
                bound = "" if bind.tokens else " (no STRAT_API_TOKEN: loopback only)"
                console.print(f"API and dashboard on {bind.url}{bound}")
            saves = asyncio.create_task(_watch_saves(engine, stop))
            try:
                await engine.run(client, stop)
            finally:
                stop.set()
                stopped.set()
                await asyncio.gather(saves, *front)
    finally:
        await client.close()
        if trading is not None:
            await trading.close()
    console.print(f"{options.mode} session stopped; state saved (strat status shows it); outputs in {out}")
    return 0


async def _watch_saves(engine: Engine, stop: asyncio.Event) -> None:
    """Tell the engine to reload on every (debounced) save of its spec or a file the spec uses."""
    from dsl.checker import check_file
    from runtime.watcher import SpecWatcher

    path = engine.options.spec_path
    watcher = SpecWatcher([path, *check_file(path).sources])
    try:
        while not stop.is_set():
            if await asyncio.to_thread(watcher.wait, 0.25):
                engine.reload_requested.set()
                # The files it uses now (an edit may add or drop a `use`).
                watcher.watch([path, *check_file(path).sources])
    finally:
        watcher.close()


class SessionFiles:
    """A session's output folder, kept up to date after every bar.

    trades.csv, orders.csv and risk_events.csv are rewritten (the open trade's row changes every bar);
    equity.csv and events.csv grow by the rows that are new (a restarted session goes on appending to
    equity.csv: the broker's checkpoint keeps only its latest point, the file keeps them all; events.csv is
    written whole from the store at its first bar).
    """

    def __init__(self, out: Path) -> None:
        """Write into `out`; rows already in its equity.csv are kept."""
        self.out = out  # the output folder
        self.written_ms = -1  # close time of the last equity row written, UTC ms (-1: none)
        self.peak: float | None = None  # highest equity of the rows written (None: none)
        self.event_id = 0  # store id of the last event written to events.csv (0: none yet)
        equity = out / "equity.csv"
        if equity.exists():
            # Rows of an earlier run of the session: carry on after its last row and its peak.
            with equity.open(encoding="utf-8") as handle:
                rows = list(csv.reader(handle))[1:]
            if rows:
                self.written_ms = parse_time(rows[-1][0])  # the file's last row
                self.peak = max(float(r[1]) for r in rows)  # the file's highest equity

    def write(self, engine: Engine) -> None:
        """Bring the files up to the engine's latest point."""
        from runtime.backtest.output import write_equity, write_orders, write_risk_events, write_trades

        session = engine.session
        assert session is not None  # started
        out = self.out
        out.mkdir(
            parents=True, exist_ok=True
        )  # made at the first bar: a session that cannot start leaves none
        result = session.simulator.finish().since(engine.start_ms)
        memo: dict[float, str] = {}
        write_trades(result, out / "trades.csv", memo)
        write_orders(result, out / "orders.csv", memo)
        write_risk_events(result, out / "risk_events.csv")
        new = result.since(self.written_ms)
        if len(new.time):
            write_equity(new, out / "equity.csv", self.peak if self.peak is not None else result.capital)
            self.written_ms = int(new.time[-1])
            self.peak = max(self.peak if self.peak is not None else result.capital, float(new.equity.max()))
        # events.csv: written whole from the store at the first bar of this process, then appended to.
        events = engine.store.events(engine.key, limit=_ALL, since_id=self.event_id)
        with (out / "events.csv").open(
            "w" if self.event_id == 0 else "a", newline="", encoding="utf-8"
        ) as handle:
            writer = csv.writer(handle)
            if self.event_id == 0:
                writer.writerow(EVENT_COLUMNS)
            for event_id, e in events:
                writer.writerow((format_time(e.time_ms), e.kind, e.sleeve, e.message, e.who))
                self.event_id = event_id


class _View:
    """The console's live view of a session (rich), refreshed after every bar; plain lines off a terminal."""

    def __init__(self, console: Console) -> None:
        """Show the view on `console` (a live table on a terminal, event lines otherwise)."""
        from rich.live import Live

        self.console = console  # where the view goes
        # The live table (on a terminal only).
        self.live = Live(console=console, auto_refresh=False) if console.is_terminal else None
        self.last: Any = None  # the last event printed (off a terminal)

    def __enter__(self) -> _View:
        """Start showing."""
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop showing."""
        if self.live is not None:
            self.live.stop()

    def update(self, engine: Engine) -> None:
        """Show the engine's latest state."""
        if self.live is None:
            recent = engine.recent
            seen = [i for i, e in enumerate(recent) if e is self.last]
            for e in recent[seen[0] + 1 :] if seen else recent:
                self.console.print(f"{format_time(e.time_ms)} {e.kind} {e.sleeve} {e.message}".strip())
            self.last = recent[-1] if recent else None
            return
        self.live.update(self._render(engine), refresh=True)

    @staticmethod
    def _render(engine: Engine) -> RenderableType:
        """The sleeves table and the latest events."""
        from rich.console import Group
        from rich.table import Table

        table = Table(title=f"{engine.key}  {format_time(engine.clock.now())}")
        columns = ("sleeve", "position", "avg entry", "last bar", "realized", "unrealized", "flags", "orders")
        for column in columns:
            table.add_column(
                column, justify="right" if column in ("position", "realized", "unrealized") else "left"
            )
        for s in engine.sleeve_status():
            flags = " ".join(name for name, on in (("paused", s.paused), ("halted", s.halted)) if on)
            orders = ", ".join(f"{o.side} {o.qty:g} ({o.status})" for o in s.open_orders)
            entry = "" if s.position == 0 else f"{s.avg_entry:,.2f}"
            table.add_row(
                s.sleeve, f"{s.position:g}", entry, format_time(s.last_bar_ms), f"{s.realized_pnl:,.2f}",
                f"{s.unrealized_pnl:,.2f}", flags, orders,
            )  # fmt: skip
        events = [f"{format_time(e.time_ms)} {e.kind:<9} {e.sleeve} {e.message}" for e in engine.recent[-8:]]
        return Group(table, *events)
