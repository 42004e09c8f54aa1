"""`strat series SPEC --out FILE.csv`: what a strategy sees, one row per base bar (like a data window).

Columns: `time` (bar open time, UTC ms), then one column per named binding (struct results as
`name.field`; booleans 0/1; na empty). `--stream` computes the same file with the streaming driver.
The candles are read as `strat run` reads them (`runtime.plan.plan`: the same range policy, warm-up bars
before `--from`), and rows start at `--from`. In a file with a portfolio, `--sleeve NAME` picks the sleeve
(its strategy with that sleeve's market, clock and overrides).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.commands.run import check_spec, parse_overrides
from runtime.commands.source import Source, add_data_arguments
from runtime.commands.tuning import batch_process

if TYPE_CHECKING:
    from dsl.ir import PortfolioIR, Program, SleeveIR


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `series` sub-command."""
    parser = subparsers.add_parser("series", help="write a strategy's named series to CSV")
    parser.add_argument("spec", metavar="SPEC", help="the .strat file")
    parser.add_argument("--strategy", metavar="NAME", help="the strategy (default: the file's only one)")
    parser.add_argument("--sleeve", metavar="NAME", help="the sleeve of a portfolio (required with several)")
    parser.add_argument("--from", dest="start", metavar="DATE", help="first bar (UTC)")
    parser.add_argument("--to", dest="end", metavar="DATE", help="end of the range (exclusive, UTC)")
    parser.add_argument("--stream", action="store_true", help="compute with the streaming (live) driver")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a param")
    parser.add_argument("--out", required=True, metavar="FILE.csv", help="output CSV file")
    add_data_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Check the spec, compile the strategy, evaluate it and write the CSV."""
    overrides = parse_overrides(args.set, "series")
    if overrides is None:
        return 2
    if not Path(args.spec).is_file():
        print(f"strat series: {args.spec}: no such file", file=sys.stderr)
        return 2
    with batch_process() as settle:
        program = check_spec(args.spec, overrides)
        if program is None:
            return 1
        settle()
        return _evaluate(args, program)


def _evaluate(args: argparse.Namespace, program: Program) -> int:
    """Plan the chosen sleeve of a checked program, evaluate its named series and write the CSV."""
    import numpy as np

    from runtime.graph.drivers import run_batch, run_stream
    from runtime.plan.plan import RUN_ERRORS, plan
    from runtime.plan.select import select

    try:
        portfolio = select(program, args.strategy, None)
        source = Source.from_args(args).with_setting(portfolio.data)
        one = portfolio.model_copy(update={"sleeves": (_sleeve(portfolio, args.sleeve),)})
        sp = plan(program, one, source.candles, source.start, source.end).sleeves[0]
    except RUN_ERRORS as error:
        print(f"strat series: {error}", file=sys.stderr)
        return 1
    graph, feeds = sp.graph, sp.feeds
    keep = [node for _, node in graph.columns]
    if any(graph.nodes[node].state for node in keep):
        names = [name for name, node in graph.columns if graph.nodes[node].state]
        print(f"strat series: {', '.join(names)} read trade state (position_size, ...), which only a "
              "simulated run has; use strat run", file=sys.stderr)  # fmt: skip
        return 1
    values = run_stream(graph, feeds, keep) if args.stream else run_batch(graph, feeds, keep)
    n = feeds.length(0)
    times = np.asarray(feeds.candles[0].time, dtype=np.int64)
    # Warm-up bars read before --from feed the values but get no row, as in `strat run`.
    first = 0 if source.start is None else int(np.searchsorted(times, source.start))
    columns = [np.broadcast_to(np.asarray(values[node], dtype=np.float64), (n,))[first:] for node in keep]
    booleans = {name for name, expr in sp.strategy.bindings if expr.kind == "bool"}
    names = [name for name, _ in graph.columns]
    _write(Path(args.out), times[first:], names, columns, [name in booleans for name in names])
    print(f"{args.out}: {n - first:,} rows of {graph.base.timeframe} bars, {len(columns)} series")
    return 0


def _sleeve(portfolio: PortfolioIR, name: str | None) -> SleeveIR:
    """The sleeve called `name`; with no name, the only one (several are an error listing them)."""
    from runtime.plan.select import RunError

    names = [s.name for s in portfolio.sleeves]
    if name is None and len(names) == 1:
        return portfolio.sleeves[0]
    if name is None:
        raise RunError(
            f"portfolio {portfolio.name} has sleeves {', '.join(names)}: choose one with --sleeve NAME"
        )
    for sleeve in portfolio.sleeves:
        if sleeve.name == name:
            return sleeve
    raise RunError(f"no sleeve '{name}' in {portfolio.name}; its sleeves: {', '.join(names)}")


def _write(
    path: Path, times: object, names: list[str], columns: Sequence[object], booleans: Sequence[bool]
) -> None:
    """Write the CSV: `repr` of each float (exact round trip), booleans as 0/1, na as an empty cell."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(",".join(["time", *names]) + "\n")
        cols = [np.asarray(c, dtype=np.float64).tolist() for c in columns]
        text = [(lambda v: str(int(v))) if flag else repr for flag in booleans]
        for i, t in enumerate(np.asarray(times).tolist()):
            cells = [str(t)] + ["" if c[i] != c[i] else f(c[i]) for c, f in zip(cols, text, strict=True)]
            out.write(",".join(cells) + "\n")
