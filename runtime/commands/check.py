"""`strat check FILE...`: print every diagnostic; exit 0 clean (warnings allowed), 1 on errors, 2 on usage.

`--paper` and `--live` add the errors of trading the file on its venues (E080).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dsl.checker import check_file, explain
from dsl.diagnostics import Diagnostic, to_json
from runtime.commands.tuning import batch_process


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `check` sub-command."""
    parser = subparsers.add_parser("check", help="check .strat files and print diagnostics")
    parser.add_argument("files", nargs="+", metavar="FILE", help=".strat files to check")
    parser.add_argument("--json", action="store_true", help="print diagnostics as a JSON list (for editors)")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="also print each strategy's params, settings, timeframes and warm-up",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--paper",
        dest="mode",
        action="store_const",
        const="paper",
        default="backtest",
        help="also check what paper trading refuses (short entries on a spot market, E080)",
    )
    mode.add_argument(
        "--live",
        dest="mode",
        action="store_const",
        const="live",
        help="also check what live trading refuses (short entries on a spot market, E080)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Check each file; the exit code is 1 when any file has an error, 2 when a file does not exist."""
    missing = [path for path in args.files if not Path(path).is_file()]
    if missing:
        for path in missing:
            print(f"strat check: no such file: {path}", file=sys.stderr)
        return 2
    with batch_process():
        return _check(args)


def _check(args: argparse.Namespace) -> int:
    """Check and report each file of the command line (all of them exist)."""
    everything: list[Diagnostic] = []
    failed = False
    for path in args.files:
        result = check_file(path, mode=args.mode)
        failed |= not result.ok
        everything.extend(result.diagnostics)
        if args.json:
            continue
        if result.diagnostics:
            print(result.render())
        errors = sum(d.is_error for d in result.diagnostics)
        warnings = len(result.diagnostics) - errors
        print(f"{path}: {errors} error(s), {warnings} warning(s)" if result.diagnostics else f"{path}: ok")
        if args.explain and result.program is not None:
            print(explain(result.program))
    if args.json:
        print(to_json(everything))
    return 1 if failed else 0
