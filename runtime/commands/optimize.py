"""`strat optimize SPEC [NAME]`: run an optimize block (grid, random or Bayesian search, walk-forward).

Checks the spec once, plans the widest member first (which reads the candles once), then backtests every
member through the chosen executor (this process, `--jobs N` local processes, or a Dask cluster with
`--cluster tcp://HOST:8786`). Writes results.csv (appended as members finish), best.json and report.html
into the output folder, prints the top members, the overfitting statistics and the walk-forward folds,
and saves the best member's run in the store (`strat runs` lists it as an optimize run). Ctrl-C keeps
the finished members; `--resume --out DIR` continues from them.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.commands.run import batch_source, check_spec, positive_amount, prefetch_csv
from runtime.commands.source import Source, add_data_arguments
from runtime.commands.tuning import batch_process

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from rich.console import Console

    from dsl.ir import Program
    from runtime.optimize.executor import Outcome
    from runtime.optimize.runner import Optimization

# Members listed in the console's table of the best.
TOP = 10


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `optimize` sub-command."""
    parser = subparsers.add_parser("optimize", help="search a strategy's params (an optimize block)")
    parser.add_argument("spec", metavar="SPEC", help="the .strat file holding the optimize block")
    parser.add_argument("name", metavar="NAME", nargs="?", help="the optimize block (default: the only one)")
    parser.add_argument("--from", dest="start", metavar="DATE", help="first bar (default: the block's start)")
    parser.add_argument(
        "--to", dest="end", metavar="DATE", help="end of the range (default: the block's end)"
    )
    parser.add_argument("--capital", type=positive_amount, help="starting capital of each member (10,000)")
    parser.add_argument(
        "--jobs",
        type=_workers,
        default=usable_cores(),
        metavar="N",
        help=f"local worker processes (default: every core this process may use, {usable_cores()} here; "
        "1 runs the members in this process)",
    )
    parser.add_argument(
        "--cluster", metavar="tcp://HOST:8786", help="run the members on this Dask distributed scheduler"
    )
    parser.add_argument("--out", metavar="DIR", help="output folder (default reports/<spec>-<UTC time>/)")
    parser.add_argument("--no-report", action="store_true", help="skip report.html")
    parser.add_argument("--no-save", action="store_true", help="do not save the best run in the store")
    parser.add_argument(
        "--resume", action="store_true", help="continue the interrupted optimisation in --out DIR"
    )
    add_data_arguments(parser)
    parser.set_defaults(handler=optimize)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity; the machine's count where that is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this platform
        return os.cpu_count() or 1


def _workers(text: str) -> int:
    """An argparse type: a whole number of workers >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: --jobs takes a whole number >= 1")
    return int(text)


def optimize(args: argparse.Namespace) -> int:
    """Check, search, write and save one optimisation."""
    if args.resume and not args.out:
        print("strat optimize: --resume needs --out DIR (the folder of the run to continue)", file=sys.stderr)
        return 2
    source = batch_source(args, "optimize")
    if source is None:
        return 2
    began = time.perf_counter()
    with batch_process() as settle:
        prefetch_csv(source)
        program = check_spec(args.spec, {})
        if program is None:
            return 1
        from runtime.commands.compiling import compile_notice

        with compile_notice():
            return _optimize(args, source, program, began, settle)


def _optimize(
    args: argparse.Namespace, source: Source, program: Program, began: float, settle: Callable[[], None]
) -> int:
    """Run the checked program's optimize block and write its outputs (see the module docstring)."""
    from runtime.backtest.drive import warm_kernels
    from runtime.backtest.output import make_console, new_out_dir
    from runtime.optimize.results import ResultsFile, read_done
    from runtime.optimize.runner import Optimizer, Settings, find_block
    from runtime.plan.model import DEFAULT_CAPITAL
    from runtime.plan.plan import RUN_ERRORS

    console = make_console()
    warm_kernels()
    settle()
    try:
        block = find_block(program, args.name)
        source = source.with_setting(program.strategy(block.target).data)
        settings = Settings(
            start=source.start if source.start is not None else block.start_ms,
            end=source.end if source.end is not None else block.end_ms,
            capital=args.capital or DEFAULT_CAPITAL,
            jobs=args.jobs,
            cluster=args.cluster,
            exact=source.fill_gaps,
        )
        load = functools.partial(source.candles, notes={})
        optimizer = Optimizer(program, block, settings, load, source.rules)
    except RUN_ERRORS as error:
        print(f"strat optimize: {error}", file=sys.stderr)
        return 1
    out = Path(args.out) if args.out else new_out_dir(args.spec)
    names = optimizer.space.names
    blocks = len(optimizer.edges) - 1
    try:
        done = read_done(out, names, blocks) if args.resume else {}
        results = ResultsFile(out, names, blocks, args.resume)
    except RUN_ERRORS as error:
        print(f"strat optimize: {error}", file=sys.stderr)
        return 1
    planned = (optimizer.total() or 0) * (1 + len(optimizer.folds()))
    try:
        with _progress(planned) as advance:

            def sink(fold: int, index: int, item: Outcome, fresh: bool) -> None:
                """Append a finished member's row and move the progress bar."""
                if fresh:
                    value = optimizer.objective.value(item)
                    results.add(fold, index, item, value, optimizer.passes(item))
                    results.flush()
                advance()

            result = optimizer.run(sink, done)
    except KeyboardInterrupt:
        again = " ".join(x for x in (args.spec, args.name) if x)
        print(
            f"strat optimize: interrupted; the finished members are in {out / 'results.csv'}: "
            f"strat optimize {again} --out {out} --resume (with the same options) continues",
            file=sys.stderr,
        )
        return 130
    except RUN_ERRORS as error:
        print(f"strat optimize: {error}", file=sys.stderr)
        return 1
    finally:
        results.close()
    _write(args, result, out, console)
    console.print(f"outputs in {out}  ({time.perf_counter() - began:.2f} s)")
    return 0


def _write(args: argparse.Namespace, result: Optimization, out: Path, console: Console) -> None:
    """best.json, report.html, the console tables and the store's record."""
    from runtime.optimize.results import best_json

    best_json(result, out / "best.json")
    if not args.no_report:
        from runtime.optimize.report import write_report

        write_report(result, out / "report.html", spec=args.spec)
    _print(result, console)
    if not args.no_save and result.best_run is not None:
        _save(args, result, console)


def _print(result: Optimization, console: Console) -> None:
    """The top members, the overfitting statistics and the walk-forward folds."""
    from rich.table import Table

    from runtime.backtest.output import fmt_num, fmt_pct
    from runtime.optimize.members import member_text

    objective = result.objective
    order = sorted(range(len(result.outcomes)), key=lambda i: objective.key(result.outcomes[i]))
    table = Table(
        title=f"{result.block.name}: {result.method}, {objective}, "
        f"{sum(result.passed):,} of {len(result.outcomes):,} members meet the requirement"
    )
    for name in ("#", "Params", objective.metric, "Return", "Sharpe", "Max DD", "Trades", "Passes"):
        table.add_column(name, justify="left" if name == "Params" else "right")
    for rank, i in enumerate(order[:TOP], 1):
        item = result.outcomes[i]
        table.add_row(
            str(rank),
            member_text(item.params),
            fmt_num(objective.value(item), 4),
            fmt_pct(item.metric("total_return")),
            fmt_num(item.metric("sharpe")),
            fmt_pct(item.metric("max_drawdown")),
            fmt_num(item.metric("entries"), 0),
            "yes" if result.passed[i] else "no",
        )
    console.print(table)
    if result.best is None:
        console.print("no member meets the requirement", style="red")
    else:
        console.print(f"best: {member_text(result.best.params)}")
    fit = result.overfit
    if fit is not None:
        console.print(
            f"deflated Sharpe ratio {fmt_num(fit.dsr, 3)} (best of {fit.trials:,} members; per-bar Sharpe "
            f"{fit.sharpe:.4f} against {fit.expected_max:.4f} expected by chance) · probability of "
            f"backtest overfitting {fmt_num(fit.pbo, 3)}"
        )
    walk = result.walk
    if walk is not None:
        folds = Table(title=f"Walk-forward ({walk.scheme})")
        for name in ("Fold", "Train", "Test", "Params", f"IS {objective.metric}", f"OOS {objective.metric}"):
            folds.add_column(name, justify="right" if "S " in name else "left")
        from runtime.backtest.metrics import iso_time

        for k, f in enumerate(walk.folds, 1):
            folds.add_row(
                str(k),
                f"{iso_time(f.fold.train_start)[:10]} → {iso_time(f.fold.train_end)[:10]}",
                f"{iso_time(f.fold.train_end)[:10]} → {iso_time(f.fold.test_end)[:10]}",
                "–" if f.train is None else member_text(f.train.params),
                fmt_num(None if f.train is None else objective.value(f.train), 4),
                fmt_num(None if f.test is None else objective.value(f.test), 4),
            )
        console.print(folds)
        oos = walk.oos_stats
        console.print(
            f"out of sample: return {fmt_pct(oos.total_return)}, Sharpe {fmt_num(oos.sharpe)}, "
            f"max drawdown {fmt_pct(oos.max_drawdown)} over {oos.bars:,} bars; param stability "
            + ", ".join(f"{s.name} {s.spread:.2f}" for s in walk.stability)
        )


@contextmanager
def _progress(total: int) -> Iterator[Callable[[], None]]:
    """A progress bar with ETA on stderr (on a terminal only); yields `advance()`."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    columns = (TextColumn("members"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("optimize", total=total or None)
        yield lambda: progress.advance(task)


def _save(args: argparse.Namespace, result: Optimization, console: Console) -> None:
    """Save the best member's run in the store (as an optimize run); a store problem is not fatal."""
    import numpy as np

    from runtime.optimize.members import overrides
    from runtime.store.runs import RunRecord, RunStore
    from runtime.store.schema import open_store

    run = result.best_run
    assert run is not None and result.best is not None  # saved only when a member won
    try:
        record = RunRecord(
            spec_name=Path(args.spec).stem,
            spec_path=args.spec,
            spec_text=Path(args.spec).read_text(encoding="utf-8"),
            params=tuple(overrides(result.best.params).items()),
            data_start=int(run.time[0]) - run.summary.bar_ms,
            data_end=int(run.time[-1]),
            summary=run.summary,
            trades=(),
            equity_time=np.asarray(run.time, dtype=np.int64),
            equity=np.asarray(run.equity, dtype=np.float64),
            mode="optimize",
        )
        run_id = RunStore(open_store(args.db)).save(record)
        console.print(f"best member saved as run {run_id} (strat runs show {run_id})")
    except Exception as error:
        print(f"strat optimize: could not save the run: {error}", file=sys.stderr)
