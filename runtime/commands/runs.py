"""`strat runs` (list saved backtest runs) and `strat runs show ID` (print one run's summary).

Only argparse is imported at start-up; the store (SQLAlchemy) and rich load inside the handlers.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add the `runs` command and its `show` sub-command."""
    runs = subparsers.add_parser("runs", help="list saved backtest runs (`strat runs show ID` prints one)")
    runs.add_argument("--db", metavar="URL", help="database URL (default $STRAT_DB_URL or .strat/strat.db)")
    runs.add_argument("--limit", type=int, default=50, help="most runs listed, newest first (default 50)")
    runs.set_defaults(handler=list_command)
    actions = runs.add_subparsers(dest="runs_command", metavar="ACTION")
    show = actions.add_parser("show", help="print one saved run's summary")
    show.add_argument("id", type=int, help="run id, as listed by `strat runs`")
    # SUPPRESS keeps a --db given before `show` from being reset by this parser's default.
    show.add_argument("--db", metavar="URL", default=argparse.SUPPRESS, help="database URL")
    show.add_argument("--trades", action="store_true", help="also list the run's trades")
    show.set_defaults(handler=show_command)


def list_command(args: argparse.Namespace) -> int:
    """Print the saved runs, newest first; exit code 0."""
    from rich import box
    from rich.table import Table

    from runtime.backtest.metrics import iso_time
    from runtime.backtest.output import fmt_num, fmt_pct, make_console
    from runtime.store.runs import RunStore
    from runtime.store.schema import find_store

    engine = find_store(args.db)
    runs = RunStore(engine).latest(args.limit) if engine is not None else []
    console = make_console()
    if not runs:
        console.print("no saved runs")
        return 0
    table = Table(title="Saved runs", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for name in ("ID", "Saved (UTC)", "Spec", "Data", "Return", "Max DD", "Sharpe"):
        table.add_column(
            name, justify="left" if name in ("Saved (UTC)", "Spec", "Data") else "right", no_wrap=True
        )
    for run in runs:
        table.add_row(
            str(run.id),
            iso_time(run.created_at // 1000 * 1000)[:16].replace("T", " "),
            run.spec_name
            + ("" if run.mode == "backtest" else f" ({run.mode})")
            + (" [SYNTHETIC]" if run.synthetic else ""),
            f"{iso_time(run.data_start)[:10]} → {iso_time(run.data_end)[:10]}",
            fmt_pct(run.total_return),
            fmt_pct(run.max_drawdown),
            fmt_num(run.sharpe),
        )
    console.print(table)
    return 0


def show_command(args: argparse.Namespace) -> int:
    """Print one saved run: its spec, parameters, data range and summary; exit code 1 when unknown."""
    from rich.table import Table

    from runtime.backtest.metrics import iso_time
    from runtime.backtest.output import TRADE_COLUMNS, make_console, print_summary, trade_cells
    from runtime.store.runs import RunStore
    from runtime.store.schema import find_store

    console = make_console()
    engine = find_store(args.db)
    stored = RunStore(engine).get(args.id) if engine is not None else None
    if stored is None:
        console.print(f"no saved run with id {args.id}", style="red")
        return 1
    run = stored.record
    console.print(
        f"Run {stored.id}: {run.spec_name} ({run.mode}), saved {iso_time(run.created_at // 1000 * 1000)}"
    )
    console.print(f"Spec: {run.spec_path}  sha256 {run.spec_hash[:16]}")
    params = ", ".join(f"{name}={value}" for name, value in run.params) or "none"
    console.print(f"Parameters: {params}")
    console.print(f"Data: {iso_time(run.data_start)} → {iso_time(run.data_end)}")
    print_summary(run.summary, console)
    if args.trades:
        table = Table(title=f"Trades ({len(run.trades)})")
        for name in TRADE_COLUMNS:
            table.add_column(name)
        for row in trade_cells(run.trades):
            table.add_row(*row)
        console.print(table)
    return 0
