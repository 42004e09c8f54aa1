"""`strat status [--json] [--db URL]`: the persisted state of every paper and live deployment.

It reads the store only (a missing store is not created), so it works whether an engine runs or not. A
deployment stored as running whose engine wrote no heartbeat for `HEARTBEAT_STALE_MS` is shown as stopped:
a killed process leaves "running" behind. Open orders are the stored intents not final yet (written ahead
of every request, so newer than the last checkpoint); everything else comes from the last checkpoint.
Only argparse is imported at start-up; the store and rich load inside the handler.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from runtime.store.live import Checkpoint, Deployment, Intent, LiveStore


@dataclass(frozen=True)
class SleeveView:
    """One sleeve as `strat status` shows it (None where no checkpoint has it yet)."""

    sleeve: str  # sleeve name
    symbol: str  # market symbol
    timeframe: str | None  # bar length
    position: float | None  # signed quantity, base units
    avg_entry: float | None  # average entry price, quote currency (None when flat)
    realized_pnl: float | None  # quote currency
    unrealized_pnl: float | None  # quote currency
    paused: bool | None  # whether new entries are paused
    halted: bool | None  # whether a risk rule halted it
    open_orders: tuple[Intent, ...]  # its stored intents not final yet


@dataclass(frozen=True)
class DeploymentView:
    """One deployment as `strat status` shows it."""

    deployment: Deployment  # as stored
    state: str  # "running", "stopped" or "halted" (stale heartbeats read as stopped)
    feeds: tuple[tuple[str, str, int], ...]  # (symbol, timeframe, last processed bar close ms)
    sleeves: tuple[SleeveView, ...]  # every sleeve of the last checkpoint, then any other with orders
    checkpoint: Checkpoint | None  # the last checkpoint, None before the first


def register(subparsers: Any) -> None:
    """Add the `status` sub-command."""
    parser = subparsers.add_parser("status", help="show paper and live deployments, running or not")
    parser.add_argument("--json", action="store_true", help='print one JSON object {"deployments": [...]}')
    parser.add_argument("--db", metavar="URL", help="database URL (default $STRAT_DB_URL or .strat/strat.db)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print every deployment's state (a table, or JSON with --json); exit code 0."""
    import json

    from runtime.data.times import wall_clock_ms
    from runtime.store.live import LiveStore
    from runtime.store.schema import find_store

    engine = find_store(args.db)
    store = LiveStore(engine) if engine is not None else None
    now = wall_clock_ms()
    views = [view(store, d, now) for d in store.deployments()] if store is not None else []
    if args.json:
        print(json.dumps({"deployments": [as_json(v) for v in views]}, indent=2))
    elif not views:
        print("no paper or live deployments")
    else:
        from runtime.backtest.output import make_console

        print_views(views, make_console())
    return 0


def view(store: LiveStore, d: Deployment, now_ms: int) -> DeploymentView:
    """Gather what `strat status` shows of one deployment."""
    checkpoint = store.last_checkpoint(d.key)
    orders: dict[str, list[Intent]] = {}
    for intent in store.intents(d.key, unfinished=True):
        orders.setdefault(intent.sleeve, []).append(intent)
    sleeves = [
        SleeveView(
            s.sleeve,
            s.symbol,
            s.timeframe,
            s.position,
            None if math.isnan(s.avg_entry) else s.avg_entry,
            s.realized_pnl,
            s.unrealized_pnl,
            s.paused,
            s.halted,
            tuple(orders.pop(s.sleeve, ())),
        )
        for s in (checkpoint.sleeves if checkpoint is not None else ())
    ]
    # Orders of sleeves the last checkpoint does not know (written before the first one) still show.
    sleeves += [
        SleeveView(name, found[0].symbol, None, None, None, None, None, None, None, tuple(found))
        for name, found in orders.items()
    ]
    from runtime.store.live import shown_state

    return DeploymentView(d, shown_state(d, now_ms), tuple(store.feeds(d.key)), tuple(sleeves), checkpoint)


def as_json(v: DeploymentView) -> dict[str, Any]:
    """The JSON object of one deployment (NaN as null)."""
    d, checkpoint = v.deployment, v.checkpoint
    return {
        "key": d.key,
        "name": d.name,
        "mode": d.mode,
        "exchange": d.exchange,
        "account": d.account,
        "spec_sha256": d.spec_sha,
        "state": v.state,
        "heartbeat_ms": d.heartbeat_ms,
        "feeds": [{"symbol": s, "timeframe": tf, "last_bar_ms": ms} for s, tf, ms in v.feeds],
        "sleeves": [
            {
                "sleeve": s.sleeve,
                "symbol": s.symbol,
                "timeframe": s.timeframe,
                "position": s.position,
                "avg_entry": s.avg_entry,
                "open_orders": [
                    {"client_id": o.client_id, "side": o.side, "qty": o.qty, "filled": o.filled}
                    for o in s.open_orders
                ],
                "realized_pnl": _finite(s.realized_pnl),
                "unrealized_pnl": _finite(s.unrealized_pnl),
                "paused": s.paused,
                "halted": s.halted,
            }
            for s in v.sleeves
        ],
        "equity": None if checkpoint is None else _finite(checkpoint.equity),
        "cash": None if checkpoint is None else _finite(checkpoint.cash),
    }


def print_views(views: list[DeploymentView], console: Console) -> None:
    """Print the deployments table, then each deployment's feeds and sleeves."""
    from rich import box
    from rich.table import Table

    from runtime.backtest.output import fmt_num

    def table(title: str, *columns: str) -> Table:
        """A table in the style of `strat runs`, numbers right-aligned."""
        made = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        for name in columns:
            made.add_column(name, justify="right" if name in _NUMERIC else "left", no_wrap=True)
        return made

    main = table("Deployments", "Name", "Mode", "Exchange", "Account", "Spec", "State", "Equity", "Cash")
    for v in views:
        d, checkpoint = v.deployment, v.checkpoint
        state = v.state
        if state == "stopped" and d.state == "running":
            state = f"stopped (no heartbeat since {_when(d.heartbeat_ms)})"
        money = ("–", "–") if checkpoint is None else (fmt_num(checkpoint.equity), fmt_num(checkpoint.cash))
        main.add_row(d.name, d.mode, d.exchange, d.account, d.spec_sha[:12], state, *money)
    console.print(main)
    for v in views:
        name = f"{v.deployment.name} ({v.deployment.mode}, {v.deployment.exchange})"
        if v.feeds:
            feeds = table(f"{name}: feeds", "Symbol", "TF", "Last bar (UTC)")
            for symbol, timeframe, ms in v.feeds:
                feeds.add_row(symbol, timeframe, _when(ms))
            console.print(feeds)
        if v.sleeves:
            sleeves = table(f"{name}: sleeves", *_SLEEVE_COLUMNS)
            for s in v.sleeves:
                flags = ", ".join(f for f, on in (("paused", s.paused), ("halted", s.halted)) if on) or "–"
                orders = "\n".join(
                    f"{o.client_id} {o.side} {_qty(o.qty)} (filled {_qty(o.filled)})" for o in s.open_orders
                )
                sleeves.add_row(
                    s.sleeve,
                    s.symbol,
                    s.timeframe or "–",
                    _qty(s.position),
                    _price(s.avg_entry),
                    _price(s.realized_pnl),
                    _price(s.unrealized_pnl),
                    flags,
                    orders or "–",
                )
            console.print(sleeves)


# Columns of a deployment's sleeves table.
_SLEEVE_COLUMNS = (
    "Sleeve", "Symbol", "TF", "Position", "Avg entry", "Realized", "Unrealized", "Flags", "Open orders",
)  # fmt: skip
# Column names printed right-aligned (numbers).
_NUMERIC = frozenset({"Equity", "Cash", "Position", "Avg entry", "Realized", "Unrealized"})


def _finite(value: float | None) -> float | None:
    """A number for JSON: NaN as None."""
    return None if value is None or math.isnan(value) else value


def _qty(value: float | None) -> str:
    """A quantity with up to 8 significant digits; a dash when unknown."""
    return "–" if value is None or math.isnan(value) else f"{value:.8g}"


def _price(value: float | None) -> str:
    """An amount of quote currency with two decimals; a dash when unknown."""
    from runtime.backtest.output import fmt_num

    return fmt_num(_finite(value))


def _when(ms: int) -> str:
    """UTC ms as `2024-01-01 00:00:00`."""
    from runtime.backtest.metrics import iso_time

    return iso_time(ms // 1000 * 1000)[:19].replace("T", " ")
