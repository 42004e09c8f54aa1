"""`strat run SPEC --backtest | --replay`: simulate a portfolio (or one strategy) over history.

Prints a summary table, writes summary.json, trades.csv, equity.csv, orders.csv, risk_events.csv and
report.html into the output folder, and saves the run in the store (`strat runs` lists saved runs).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.data.commands import add_data_arguments, load_for, parse_time

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from dsl.ir import Program
    from runtime import runner
    from runtime.backtest.metrics import Summary
    from runtime.broker.result import BacktestResult
    from runtime.data.markets import MarketRules


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
    parser.add_argument("--strategy", metavar="NAME", help="run this strategy (or portfolio) of the file")
    parser.add_argument(
        "--capital", type=float, help="starting capital of a single strategy (default 10,000)"
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
    add_data_arguments(parser)
    parser.set_defaults(handler=run)


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


def run(args: argparse.Namespace) -> int:
    """Check, plan, simulate, report and save one run."""
    # No BLAS routine runs in a backtest: numpy, not loaded yet in a `strat` process, then starts
    # OpenBLAS without its pool of spinning worker threads (one per core otherwise).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    overrides = parse_overrides(args.set, "run")
    if overrides is None:
        return 2
    try:
        start = parse_time(args.start) if args.start else None
        end = parse_time(args.end) if args.end else None
    except ValueError as error:
        print(f"strat run: {error}", file=sys.stderr)
        return 2
    if not Path(args.spec).is_file():
        print(f"strat run: {args.spec}: no such file", file=sys.stderr)
        return 2
    began = time.perf_counter()
    _keep_freed_memory()
    if args.data not in (None, "synthetic"):
        from runtime.data.csvfiles import prefetch

        # A CSV file is parsed on another thread while the spec is checked and the engine imported.
        prefetch(args.data)
    with _long_lived_heap():
        program = check_spec(args.spec, overrides)
        if program is None:
            return 1
        return _simulate(args, program, overrides, start, end, began)


@contextmanager
def _long_lived_heap() -> Iterator[None]:
    """Keep the garbage collector off the engine's long-lived objects during and after a run.

    numba's typing tables, the grammar and the imported modules are some hundred thousand objects that
    live as long as the process; each full collection walks them all again (about 0.1 s in a run) and so
    does the interpreter's teardown at exit (about 0.2 s). Collection is paused while the engine loads;
    `_settle_heap` (called once it has) moves everything alive into the collector's permanent generation;
    and on the way out the run's own garbage is collected and the survivors are frozen too, so the exit
    has nothing left to walk. Objects are freed by reference counting as usual throughout.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.collect()
        gc.freeze()
        # Back to the caller's setting, whatever `_settle_heap` did meanwhile.
        (gc.enable if enabled else gc.disable)()


def _settle_heap() -> None:
    """Freeze what is alive now (the loaded engine) and let the collector run again for the run itself."""
    gc.freeze()
    gc.enable()


def _simulate(
    args: argparse.Namespace,
    program: Program,
    overrides: dict[str, str],
    start: int | None,
    end: int | None,
    began: float,
) -> int:
    """Plan and simulate a checked program, then write and save the results."""
    from rich.console import Console

    from runtime import runner
    from runtime.backtest.metrics import compute_metrics
    from runtime.backtest.output import default_out_dir, print_summary, write_outputs

    console = Console()
    # Without --from a CSV is read whole; synthetic and exchange data default to the last year.
    default_first = 0 if args.data not in (None, "synthetic") else _year_ago()

    def load(symbol: str, timeframe: str, first: int | None, last: int | None) -> object:
        """Candles of one clock from the command's data source."""
        first = default_first if first is None else max(first, 0)
        return load_for(args, symbol, timeframe, first, last)

    # numba's one-time setup runs now, while a prefetched CSV file may still be parsing.
    runner.warm_kernels()
    _settle_heap()
    try:
        portfolio = runner.select(program, args.strategy, args.capital)
        plan = runner.plan(program, portfolio, load, start, end, _rules_lookup(args))
        if args.replay or any(sp.graph.needs_state for sp in plan.sleeves):
            # The bar-by-bar path is the long one: show its progress (on a terminal only).
            with _progress_bar() as (bar, task):
                result = runner.replay(
                    plan, lambda done, total: bar.update(task, completed=done, total=total)
                )
        else:
            result = runner.backtest(plan)
    except runner.RUN_ERRORS as error:
        print(f"strat run: {error}", file=sys.stderr)
        return 1
    bar_ms = min(sp.graph.base.ms for sp in plan.sleeves)
    summary = compute_metrics(result, bar_ms)
    out = Path(args.out) if args.out else default_out_dir(args.spec)
    candles = {_pair(sp.sleeve.symbol): sp.feeds.candles[0] for sp in plan.sleeves}
    write_outputs(
        result,
        summary,
        out,
        spec_name=Path(args.spec).stem,
        report=not args.no_report,
        candles_by_symbol=candles,
    )  # type: ignore[arg-type]
    print_summary(summary, console)
    if not args.no_save:
        _save(args, result, summary, overrides, console)
    console.print(f"outputs in {out}  ({time.perf_counter() - began:.2f} s)")
    return 0


# glibc's mallopt parameters: freed heap memory kept up to this many bytes (M_TRIM_THRESHOLD), and the
# size from which a block gets its own fresh mapping (M_MMAP_THRESHOLD; 32 MB is the most glibc allows).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_RETAINED_BYTES = 1 << 30
_MMAP_FROM_BYTES = 32 << 20


def _keep_freed_memory() -> None:
    """Let glibc reuse freed memory instead of returning it to the system after every large array.

    A million-bar run creates and drops dozens of 8 MB arrays; by default each is a fresh mapping whose
    pages the kernel must fault in and zero again (about 0.15 s of system time). Nothing changes in what
    the run computes; elsewhere than glibc (or without it) this does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_TRIM_THRESHOLD, _RETAINED_BYTES)
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_FROM_BYTES)
    except (OSError, AttributeError):  # not glibc: keep the allocator's defaults
        return


@contextmanager
def _progress_bar() -> Iterator[tuple[Progress, TaskID]]:
    """A transient progress bar on stderr, shown only when stderr is a terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    columns = (TextColumn("replaying bars"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        yield bar, bar.add_task("replay", total=None)


def _rules_lookup(args: argparse.Namespace) -> runner.RulesLookup:
    """Trading rules of a symbol from the store.

    They are looked up after the candles were loaded (a download has just stored them); no database is
    created just to look.
    """
    from runtime.store import resolve_url, store_exists

    url = resolve_url(getattr(args, "db", None))

    def lookup(symbol: str) -> MarketRules | None:
        """The stored rules of `EXCHANGE:BASE/QUOTE`, or None."""
        if not store_exists(url):
            return None
        from runtime.data.candles import market_symbol
        from runtime.store.markets import load_rules

        exchange, pair = market_symbol(symbol)
        return load_rules(exchange or args.exchange, pair, url=url)

    return lookup


def _pair(symbol: str) -> str:
    """`BASE/QUOTE` of a spec symbol."""
    return symbol.split(":", 1)[-1]


def _year_ago() -> int:
    """UTC ms one year before now (the default start of exchange and synthetic data)."""
    return int(time.time() * 1000) - 365 * 86_400_000


def _save(
    args: argparse.Namespace,
    result: BacktestResult,
    summary: Summary,
    overrides: dict[str, str],
    console: Console,
) -> None:
    """Save the run in the store; a store problem is reported, never fatal."""
    from runtime.store.runs import RunRecord, save_run

    try:
        record = RunRecord.from_result(
            result,
            summary,
            spec_path=args.spec,
            spec_text=Path(args.spec).read_text(encoding="utf-8"),
            params=tuple(overrides.items()),
            mode="replay" if args.replay else "backtest",
        )
        run_id = save_run(getattr(args, "db", None), record)
        console.print(f"saved as run {run_id} (strat runs show {run_id})")
    except Exception as error:
        print(f"strat run: could not save the run: {error}", file=sys.stderr)
