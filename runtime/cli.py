"""The single `strat` command.

Every sub-command lives in a module of `runtime.commands` with a small `register(subparsers)` function;
this module only assembles them and dispatches. Heavy imports (pandas, numba, ccxt,
SQLAlchemy) stay inside the command handlers so that `strat check` starts quickly.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules that contribute sub-commands, in the order they appear in `strat --help`.
COMMAND_MODULES: tuple[str, ...] = (
    "runtime.commands.check",
    "runtime.commands.run",
    "runtime.commands.runs",
    "runtime.commands.series",
    "runtime.commands.data",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every registered sub-command."""
    parser = argparse.ArgumentParser(prog="strat", description="Declarative trading: check, backtest, run.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `strat` command and return its exit code (0 ok, 1 errors found, 2 usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
