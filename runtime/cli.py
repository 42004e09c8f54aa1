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

from runtime.errors import StratError

# Modules that contribute sub-commands, in the order they appear in `strat --help`.
COMMAND_MODULES: tuple[str, ...] = (
    "runtime.commands.check",
    "runtime.commands.run",
    "runtime.commands.optimize",
    "runtime.commands.runs",
    "runtime.commands.status",
    "runtime.commands.serve",
    "runtime.commands.series",
    "runtime.commands.data",
)


# Exit codes of `strat`: success, problems found (diagnostics, bad data, a failed run), usage error,
# internal error (a bug; the trace is logged), interrupted.
EXIT_CODES = {"ok": 0, "errors": 1, "usage": 2, "internal": 3, "interrupted": 130}


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every registered sub-command."""
    parser = argparse.ArgumentParser(prog="strat", description="Declarative trading: check, backtest, run.")
    parser.add_argument("--version", action="version", version=f"strat {package_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def package_version() -> str:
    """The installed `strat` distribution's version (from its metadata); "unknown" when not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("strat")
    except PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `strat` command and return its exit code (see EXIT_CODES)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_CODES["usage"]
    # The error boundary: no traceback ever reaches the user (see runtime.errors).
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_CODES["interrupted"]
    except StratError as error:
        print(f"strat {args.command}: {error}", file=sys.stderr)
        return EXIT_CODES["errors"]
    except OSError as error:
        # A file the command could not read or write: its name and the system's reason say it all.
        where = f"{error.filename}: " if error.filename else ""
        print(f"strat {args.command}: {where}{error.strerror or error}", file=sys.stderr)
        return EXIT_CODES["errors"]
    except MemoryError:
        print(
            f"strat {args.command}: out of memory (a shorter range or fewer sleeves needs less)",
            file=sys.stderr,
        )
        return EXIT_CODES["errors"]
    except Exception as error:
        # Anything else is a bug: say so in one line and log the trace.
        return _internal_error(args, error)


def _internal_error(args: argparse.Namespace, error: Exception) -> int:
    """Log the full trace of an unexpected error to a file and print one line pointing at it."""
    # Imported here: only a bug reaches this path, and every command's start-up would pay ~10 ms for them.
    import json
    import os
    import tempfile
    import time
    import traceback
    from pathlib import Path

    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    log = Path(tempfile.gettempdir()) / f"strat-crash-{stamp}-{os.getpid()}.log"
    try:
        log.write_text(
            f"strat {' '.join(sys.argv[1:])}\n\n" + "".join(traceback.format_exception(error)),
            encoding="utf-8",
        )
        where = f"the full trace is in {log}"
    except OSError:
        where = "the trace could not be written"
    summary = f"{type(error).__name__}: {error}".splitlines()[0][:300]
    print(f"strat {args.command}: internal error ({summary}); {where}", file=sys.stderr)
    if getattr(args, "json", False):
        # An editor reading --json output tells a crash from diagnostics by this object.
        detail = {"type": type(error).__name__, "message": str(error), "log": str(log)}
        print(json.dumps({"internal_error": detail}))
    return EXIT_CODES["internal"]


if __name__ == "__main__":
    sys.exit(main())
