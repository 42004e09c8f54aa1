"""`strat run SPEC --backtest | --replay | --paper | --live`: simulate a portfolio over history, or trade it.

Prints a summary table, writes summary.json, trades.csv, equity.csv, orders.csv, risk_events.csv and
report.html into the output folder, and saves the run in the store (`strat runs` lists saved runs).
--paper and --live hand over to `runtime.commands.live`.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.commands.live import add_live_arguments
from runtime.commands.serve import add_api_arguments
from runtime.commands.source import Source, SourceKind, add_data_arguments
from runtime.commands.tuning import batch_process
from runtime.errors import StratError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from dsl.ir import Program
    from runtime.backtest.metrics import Summary
    from runtime.broker.result import BacktestResult


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `run` sub-command."""
    parser = subparsers.add_parser("run", help="backtest or replay a spec over history")
    parser.add_argument("spec", metavar="SPEC", help="the .strat file to run")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--backtest", action="store_true", help="vectorized backtest (the default)")
    mode.add_argument(
        "--replay",
        action="store_true",
        help="feed history bar by bar through the live engine's streaming path",
    )
    mode.add_argument("--paper", action="store_true", help="trade live candles with simulated fills")
    mode.add_argument("--live", action="store_true", help="trade live candles with real orders")
    parser.add_argument("--strategy", metavar="NAME", help="run this strategy (or portfolio) of the file")
    parser.add_argument(
        "--capital",
        type=positive_amount,
        help="starting capital of a single strategy (default 10,000)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a param (checked against its domain); repeatable",
    )
    parser.add_argument("--from", dest="start", metavar="DATE", help="first bar (UTC date or date-time)")
    parser.add_argument("--to", dest="end", metavar="DATE", help="end of the range (exclusive)")
    parser.add_argument("--out", metavar="DIR", help="output folder (default reports/<spec>-<UTC time>/)")
    parser.add_argument("--no-report", action="store_true", help="skip report.html")
    parser.add_argument("--no-save", action="store_true", help="do not save the run in the store")
    parser.add_argument(
        "--watch",
        action="store_true",
        help="run again on every save of the spec (or a file it uses), printing what changed; "
        "report.html in the open browser tab reloads by itself",
    )
    add_data_arguments(parser)
    add_live_arguments(parser)
    add_api_arguments(parser)
    parser.set_defaults(handler=run)


def positive_amount(text: str) -> float:
    """An argparse type: a finite amount above zero (capital), refused otherwise with a plain message."""
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the capital must be a finite amount above 0")
    return value


def out_problem(out: Path) -> str | None:
    """Why outputs cannot be written to folder `out` (a file is in the way, no permission), or None."""
    if out.exists() and not out.is_dir():
        return "is a file, not a folder"
    # The nearest existing ancestor must let us create what is missing below it.
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def parse_overrides(items: list[str], command: str) -> dict[str, str] | None:
    """Parse `--set name=value` items; None after printing a usage error."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            print(f"strat {command}: --set expects NAME=VALUE, got {item!r}", file=sys.stderr)
            return None
        out[name.strip()] = value.strip()
    return out


def check_spec(path: str, overrides: dict[str, str]) -> Program | None:
    """Check a spec with its overrides, printing every diagnostic; the program, or None on errors."""
    from dsl.checker import check_file

    checked = check_file(path, overrides=overrides)
    if checked.diagnostics:
        print(checked.render(), file=sys.stderr)
    return checked.program


def batch_source(args: argparse.Namespace, command: str) -> Source | None:
    """The data source of a batch command (`run`, `optimize`), its spec and output folder checked.

    None after printing why not (a usage error).
    """
    # No BLAS routine runs in a backtest: numpy, not loaded yet in a `strat` process, then starts
    # OpenBLAS without its pool of spinning worker threads (one per core otherwise).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        source = Source.from_args(args)
    except (ValueError, StratError) as error:
        print(f"strat {command}: {error}", file=sys.stderr)
        return None
    if not Path(args.spec).is_file():
        print(f"strat {command}: {args.spec}: no such file", file=sys.stderr)
        return None
    # Where the outputs go is checked before anything is computed, so no finished run is lost.
    problem = out_problem(Path(args.out or "reports"))
    if problem:
        print(
            f"strat {command}: {'--out ' + args.out if args.out else 'reports'}: {problem}", file=sys.stderr
        )
        return None
    return source


def prefetch_csv(source: Source) -> None:
    """Parse a CSV source on another thread while the spec is checked and the engine imported."""
    if source.kind is SourceKind.CSV:
        from runtime.data.csvfiles import prefetch

        prefetch(str(source.path))


def run(args: argparse.Namespace) -> int:
    """Check, plan, simulate, report and save one run (or run a paper or live session)."""
    if args.paper or args.live:
        from runtime.commands.live import run_live

        return run_live(args, "live" if args.live else "paper")
    overrides = parse_overrides(args.set, "run")
    if overrides is None:
        return 2
    source = batch_source(args, "run")
    if source is None:
        return 2
    began = time.perf_counter()
    with batch_process() as settle:
        prefetch_csv(source)
        from runtime.commands.compiling import compile_notice

        if args.watch:
            with compile_notice():
                return _watch(args, source, overrides, began, settle)
        program = check_spec(args.spec, overrides)
        if program is None:
            return 1
        with compile_notice():  # the first run after an install compiles the kernels: say so
            return _simulate(args, source, program, overrides, began, settle)[0]


def _simulate(
    args: argparse.Namespace,
    source: Source,
    program: Program,
    overrides: dict[str, str],
    began: float,
    settle: Callable[[], None],
) -> tuple[int, Summary | None]:
    """Plan and simulate a checked program, then write and save the results (`settle`: see tuning).

    Returns the exit code and the run's metrics (None when it failed).
    """
    from runtime.backtest.drive import backtest, replay, warm_kernels
    from runtime.backtest.metrics import compute_metrics
    from runtime.backtest.output import make_console, new_out_dir, print_summary, write_outputs
    from runtime.plan.inputs import market_pair
    from runtime.plan.plan import RUN_ERRORS, plan
    from runtime.plan.select import select

    console = make_console()
    # numba's one-time setup runs now, while a prefetched CSV file may still be parsing.
    warm_kernels()
    settle()
    try:
        portfolio = select(program, args.strategy, args.capital)
        source = source.with_setting(portfolio.data)
        # The validation note of every candle series loaded, by label, for the report's data section.
        notes: dict[str, str] = {}
        load = functools.partial(source.candles, notes=notes)
        run_plan = plan(program, portfolio, load, source.start, source.end, source.rules)
        for note in run_plan.notes:
            print(f"strat run: {note}", file=sys.stderr)
        if args.replay or any(sp.graph.needs_state for sp in run_plan.sleeves):
            # The bar-by-bar path is the long one: show its progress (on a terminal only).
            with _progress_bar() as (bar, task):
                result = replay(run_plan, lambda done, total: bar.update(task, completed=done, total=total))
        else:
            result = backtest(run_plan)
    except RUN_ERRORS as error:
        print(f"strat run: {error}", file=sys.stderr)
        return 1, None
    bar_ms = min(sp.graph.base.ms for sp in run_plan.sleeves)
    summary = compute_metrics(result, bar_ms)
    out = Path(args.out) if args.out else new_out_dir(args.spec)
    write_outputs(result, summary, out)
    if not args.no_report:
        from runtime.backtest.report import plotted_lines, run_setup, write_report

        # The price charts start where the reported period does (no warm-up bar before --from).
        candles = {
            market_pair(sp.sleeve.symbol): sp.feeds.candles[0].slice(run_plan.start, None)
            for sp in run_plan.sleeves
        }
        write_report(
            result,
            summary,
            candles,  # type: ignore[arg-type]
            out / "report.html",
            title=run_plan.name,
            lines=plotted_lines(run_plan),
            setup=run_setup(run_plan, args.spec, notes),
            watch=args.watch,
        )
    # The alert count is news only for a spec that has alert rules.
    has_alerts = any(sp.graph.alerts for sp in run_plan.sleeves)
    print_summary(summary, console, alerts=len(result.alerts) if has_alerts else None)
    if not args.no_save:
        report = "" if args.no_report else str((out / "report.html").resolve())
        _save(args, source, result, summary, overrides, console, report)
    console.print(f"outputs in {out}  ({time.perf_counter() - began:.2f} s)")
    return 0, summary


# The metrics a --watch run compares with the previous version: (label, Summary field, as a percentage).
_WATCHED = (
    ("return", "total_return", True),
    ("max drawdown", "max_drawdown", True),
    ("sharpe", "sharpe", False),
    ("trades", "entries", False),
    ("win rate", "win_rate", True),
    ("profit factor", "profit_factor", False),
    ("final equity", "final_equity", False),
)


def metric_changes(before: Summary, after: Summary) -> list[str]:
    """One line per key metric that changed between two runs: `label: old -> new (delta)`."""
    lines = []
    for label, name, percent in _WATCHED:
        old, new = getattr(before, name), getattr(after, name)
        if old == new:
            continue
        shown = [("–" if v is None else f"{v * 100:.2f}%" if percent else f"{v:,.2f}") for v in (old, new)]
        delta = (
            ""
            if old is None or new is None
            else f" ({(new - old) * (100 if percent else 1):+,.2f}{' pt' if percent else ''})"
        )
        lines.append(f"  {label}: {shown[0]} -> {shown[1]}{delta}")
    return lines or ["  no key metric changed"]


def _watch(
    args: argparse.Namespace,
    source: Source,
    overrides: dict[str, str],
    began: float,
    settle: Callable[[], None],
) -> int:
    """The authoring loop: run, then run again on every save of the spec or a file it uses, until Ctrl-C.

    Each run rewrites the same output folder (report.html there reloads itself in the browser), is not
    saved in the store, and prints how the key metrics moved from the previous good version. A save that
    does not check prints its diagnostics and keeps the last good outputs.
    """
    from dsl.checker import check_file
    from runtime.watcher import SpecWatcher

    if args.out is None:
        args.out = str(Path("reports") / f"{Path(args.spec).stem}-watch")
    args.no_save = True
    watcher = SpecWatcher([args.spec])
    previous: Summary | None = None
    try:
        while True:
            checked = check_file(args.spec, overrides=overrides)
            # The files it uses now (an edit may add or drop a `use`).
            watcher.watch([args.spec, *checked.sources])
            if checked.diagnostics:
                print(checked.render(), file=sys.stderr)
            if checked.program is None:
                print(
                    "strat run: the spec has errors; the last good outputs stay", file=sys.stderr, flush=True
                )
            else:
                _, summary = _simulate(args, source, checked.program, overrides, began, settle)
                # The engine is loaded and frozen once; later runs leave the collector alone.
                settle = _nothing
                if summary is not None and previous is not None:
                    changes = metric_changes(previous, summary)
                    print("changes from the previous version:\n" + "\n".join(changes), flush=True)
                previous = summary or previous
            print(f"watching {args.spec} (Ctrl-C stops)", flush=True)
            watcher.wait()
            began = time.perf_counter()
    except KeyboardInterrupt:
        return 0
    finally:
        watcher.close()


def _nothing() -> None:
    """Do nothing (a `settle` already done)."""


@contextmanager
def _progress_bar() -> Iterator[tuple[Progress, TaskID]]:
    """A transient progress bar on stderr, shown only when stderr is a terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    columns = (TextColumn("replaying bars"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        yield bar, bar.add_task("replay", total=None)


def _save(
    args: argparse.Namespace,
    source: Source,
    result: BacktestResult,
    summary: Summary,
    overrides: dict[str, str],
    console: Console,
    report: str,
) -> None:
    """Save the run (and where its `report` is) in the store; a store problem is reported, never fatal."""
    from runtime.store.runs import RunRecord, RunStore
    from runtime.store.schema import open_store

    try:
        record = RunRecord.from_result(
            result,
            summary,
            spec_path=args.spec,
            spec_text=Path(args.spec).read_text(encoding="utf-8"),
            params=tuple(overrides.items()),
            mode="replay" if args.replay else "backtest",
            report=report,
        )
        run_id = RunStore(open_store(source.db_url)).save(record)
        console.print(f"saved as run {run_id} (strat runs show {run_id})")
    except Exception as error:
        print(f"strat run: could not save the run: {error}", file=sys.stderr)
