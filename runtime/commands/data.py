"""`strat data download|import|list|check`: fill the store with candles, show it, validate CSV files."""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.commands.source import (
    Source,
    SourceKind,
    add_db_argument,
    add_exchange_arguments,
    parse_time,
    report_note,
)
from runtime.data.times import format_time

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from runtime.data.candles import Candles


def timeframe_arg(text: str) -> str:
    """An argparse type: a supported timeframe (`1h`), refused with the list of supported ones."""
    from dsl.units import TIMEFRAMES

    if text not in TIMEFRAMES:
        raise argparse.ArgumentTypeError(f"{text!r} is not available; supported: {', '.join(TIMEFRAMES)}")
    return text


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `strat data` and its sub-commands."""
    data = subparsers.add_parser("data", help="download, import, list and check market data")
    commands = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    download = commands.add_parser("download", help="download candles from the exchange into the store")
    download.add_argument("symbols", nargs="+", metavar="SYMBOL", help="e.g. BTC/USDT or BINANCE:BTC/USDT")
    download.add_argument(
        "--timeframe", "-t", default="1h", type=timeframe_arg, help="bar length (default: 1h)"
    )
    download.add_argument(
        "--since", required=True, help="first bar, UTC: 2024-01-01, 2024-01-01T12:00, or ms"
    )
    download.add_argument("--until", help="end (exclusive), UTC; default: now")
    add_exchange_arguments(download)
    add_db_argument(download)
    download.set_defaults(handler=_download)

    imp = commands.add_parser("import", help="import CSV files (or directories of them) into the store")
    imp.add_argument("files", nargs="+", metavar="FILE", type=Path)
    imp.add_argument(
        "--exchange", default="binance", help="source name to store them under (default: binance)"
    )
    imp.add_argument("--symbol", help="market symbol, when the file name does not say (BTCUSDT-1h.csv)")
    imp.add_argument("--timeframe", type=timeframe_arg, help="bar length, when the file name does not say")
    add_db_argument(imp)
    imp.set_defaults(handler=_import)

    listing = commands.add_parser("list", help="show what the store holds")
    add_db_argument(listing)
    listing.set_defaults(handler=_list)

    chk = commands.add_parser("check", help="validate a CSV file or directory; exit 1 if rows need repair")
    chk.add_argument("path", type=Path, metavar="PATH")
    chk.add_argument("--json", action="store_true", help="print the report as JSON")
    chk.add_argument("--timeframe", type=timeframe_arg, help="bar length, when the file name does not say")
    chk.set_defaults(handler=_check)


def _download(args: argparse.Namespace) -> int:
    """Handler of `strat data download`."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from dsl.units import timeframe_ms
    from runtime.data.candles import market_symbol
    from runtime.exchange.client import ExchangeRejected, ExchangeUnavailable
    from runtime.exchange.feed import ExchangeFeed
    from runtime.store.feed import CachedFeed
    from runtime.store.schema import open_store

    timeframe_ms(args.timeframe)  # reject an unknown timeframe before any network call
    source = Source(
        kind=SourceKind.STORE,
        exchange=args.exchange,
        api_url=args.exchange_url,
        db_url=args.db,
        start=parse_time(args.since),
        end=parse_time(args.until) if args.until else None,
    )
    engine = open_store(source.db_url)
    status = 0
    # One progress bar per symbol, on stderr, only when that is a terminal (logs and pipes stay clean).
    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as bar:
        for text in args.symbols:
            named, symbol = market_symbol(text)
            exchange = named or source.exchange
            cache = CachedFeed(engine, exchange, partial(ExchangeFeed, exchange, api_url=source.api_url))
            start, end = source.span(source.start, source.end, cache.clock(), args.timeframe)
            task = bar.add_task(f"{exchange} {symbol} {args.timeframe}", total=None)
            try:
                added = cache.download(symbol, args.timeframe, start, end, partial(_advance, bar, task))
            except (ExchangeUnavailable, ExchangeRejected) as error:
                print(f"error: {exchange} {symbol}: {error}", file=sys.stderr)
                status = 1
                continue
            stored = cache.candles.read(exchange, symbol, args.timeframe, start, end)
            print(
                f"{exchange} {symbol} {args.timeframe}: {added} new candles; {len(stored)} stored from "
                f"{format_time(_first(stored))} to {format_time(_last(stored))}"
            )
    return status


def _advance(bar: Progress, task: TaskID, done: int, total: int) -> None:
    """Progress callback of a download: move the symbol's bar to `done` of `total` candles."""
    bar.update(task, completed=done, total=total)


def _first(candles: Candles) -> int | None:
    """First open time of a series, or None when empty."""
    return int(candles.time[0]) if len(candles) else None


def _last(candles: Candles) -> int | None:
    """Last open time of a series, or None when empty."""
    return int(candles.time[-1]) if len(candles) else None


def _csv_paths(paths: list[Path]) -> list[Path]:
    """Expand directories into their CSV files; raise FileNotFoundError for a missing path."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            # Only regular files hold candles (a directory may be named like one).
            found.extend(p for p in sorted(path.glob("*.csv")) if p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or directory")
    return found


def _import(args: argparse.Namespace) -> int:
    """Handler of `strat data import`: read, clean (reporting), store with the file's range covered."""
    from runtime.data.candles import DataError
    from runtime.data.csvfiles import read_csv
    from runtime.data.validate import clean
    from runtime.store.candles import CandleStore
    from runtime.store.schema import open_store

    store = CandleStore(open_store(args.db))
    for path in _csv_paths(args.files):
        candles, report = clean(read_csv(path, symbol=args.symbol, timeframe=args.timeframe))
        # Impossible rows are dropped with a count; open times that do not fit the timeframe are refused.
        problem = report.refusal(drop_bad_rows=True)
        if problem:
            raise DataError(f"{path}: {problem}")
        covered = (
            (int(candles.time[0]), int(candles.time[-1]) + candles.timeframe_ms) if len(candles) else None
        )
        store.write(candles, exchange=args.exchange, covered=covered)
        note = report_note(report)
        print(
            f"{path.name}: {len(candles)} candles of {args.exchange} {candles.symbol} {candles.timeframe} "
            f"stored ({format_time(report.start)} to {format_time(report.end)})"
            + (f"; {note}" if note else "")
        )
    return 0


def _list(args: argparse.Namespace) -> int:
    """Handler of `strat data list`."""
    from rich.console import Console
    from rich.table import Table

    from runtime.store.candles import CandleStore
    from runtime.store.schema import find_store

    table = Table("exchange", "symbol", "timeframe", "first", "last", "rows")
    engine = find_store(args.db)
    for series in CandleStore(engine).list_series() if engine is not None else []:
        table.add_row(
            series.exchange,
            series.symbol,
            series.timeframe,
            format_time(series.first),
            format_time(series.last),
            str(series.rows),
        )
    Console(width=120).print(table)
    return 0


def _check(args: argparse.Namespace) -> int:
    """Handler of `strat data check`: exit 1 when any file has rows that need repair."""
    from runtime.data.csvfiles import read_csv
    from runtime.data.validate import check

    reports = {path: check(read_csv(path, timeframe=args.timeframe)) for path in _csv_paths([args.path])}
    if args.json:
        objects = [{"file": str(path), **report.to_json()} for path, report in reports.items()]
        print(json.dumps(objects[0] if args.path.is_file() else objects, indent=2))
    else:
        for path, report in reports.items():
            print(
                f"{path.name}: {report.symbol} {report.timeframe}, {report.rows} rows, "
                f"{format_time(report.start)} to {format_time(report.end)}: {report_note(report) or 'clean'}"
            )
    return 0 if all(r.ok for r in reports.values()) else 1
