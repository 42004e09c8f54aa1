"""Candles made ready for use: read from CSV files, then cleaned, resampled, cut to a range, gap-filled.

Whatever the source (a CSV file or folder here, the synthetic market in `synthetic`, the store and the
exchange above this package), `prepare` cleans the series (`validate.clean`), resamples it when only a
finer timeframe was available, cuts it to the requested range and, when asked, fills its gaps; the report
of what was found comes back with the candles so that the caller can show it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from runtime.data.candles import Candles, DataError
from runtime.data.validate import CheckReport, clean


@dataclass(frozen=True)
class Loaded:
    """Candles ready for use and the validation report of the data they came from."""

    candles: Candles  # cleaned, resampled, sliced (and gap-filled if asked) candles
    report: CheckReport  # what cleaning found and did
    origin: str = ""  # where they came from, e.g. "BTCUSDT-5m.csv (5m, resampled)"; "" when not a file


def from_csv(
    path: Path, symbol: str, timeframe: str, start: int = 0, end: int | None = None
) -> tuple[Candles, Path]:
    """Read a CSV file, or find the symbol's file in a directory; return the candles and the file read.

    A file whose name says its market (`ETHUSDT-1h.csv`) must hold `symbol` at `timeframe` or at a finer
    timeframe that resamples to it; a file whose name says nothing is taken for `symbol`. In a directory
    the file at `timeframe` or finer that covers most of [start, end) is read (the coarsest of equals).
    """
    from runtime.data.csvfiles import list_files, name_market, read_csv
    from runtime.data.resample import can_resample, finer_timeframes

    if path.is_file():
        named = name_market(path)
        if named is None:
            return read_csv(path, symbol=symbol), path
        held, tf = named
        if held != symbol or not (tf == timeframe or can_resample(tf, timeframe)):
            raise DataError(
                f"--data {path}: its name says {held} {tf}, but the spec reads {symbol} {timeframe}; "
                f"pass the {symbol} file (at {timeframe} or finer) or a folder of SYMBOL-TIMEFRAME.csv files"
            )
        return read_csv(path, symbol=held, timeframe=tf), path
    if not path.is_dir():
        raise FileNotFoundError(f"--data {path}: no such file or directory")
    files = list_files(path)
    candidates = [
        (tf, files[symbol, tf]) for tf in (timeframe, *finer_timeframes(timeframe)) if (symbol, tf) in files
    ]
    if not candidates:
        have = ", ".join(f"{s} {tf}" for s, tf in sorted(files)) or "no SYMBOL-TIMEFRAME.csv files"
        raise FileNotFoundError(f"--data {path}: no {symbol} file at {timeframe} or finer (found: {have})")
    tf, chosen = max(
        candidates, key=lambda c: (_coverage(c[1], c[0], timeframe, start, end), -candidates.index(c))
    )
    return read_csv(chosen, symbol=symbol, timeframe=tf), chosen


def _coverage(path: Path, file_timeframe: str, timeframe: str, start: int, end: int | None) -> int:
    """How much of [start, end) the `timeframe` bars made from a file's rows can cover, ms (0: unknown)."""
    from dsl.units import timeframe_ms
    from runtime.data.csvfiles import peek_span

    span = peek_span(path)
    if span is None:
        return 0
    step = timeframe_ms(timeframe)
    # Only whole periods are resampled: the last one counts when the file's last bar completes it.
    last_end = (span[1] + timeframe_ms(file_timeframe)) // step * step
    return max(min(last_end, end if end is not None else last_end) - max(span[0], start), 0)


def prepare(
    raw: Candles, timeframe: str, start_ms: int, end_ms: int, *, fill_gaps: bool, drop_bad_rows: bool = False
) -> Loaded:
    """Clean, resample to `timeframe` if needed, slice to [start_ms, end_ms) and optionally fill gaps.

    The report carries the repairs made to the raw series and the gaps of the final one. Raises
    DataError when the raw series must not be used (`CheckReport.refusal`; `drop_bad_rows` lets
    impossible rows be dropped).
    """
    from runtime.data.resample import resample

    repaired, first = clean(raw)
    problem = first.refusal(drop_bad_rows=drop_bad_rows)
    if problem:
        raise DataError(f"{raw.symbol} {raw.timeframe}: {problem}")
    series = resample(repaired, timeframe).slice(start_ms, end_ms)
    # A series left whole (same timeframe, nothing cut off, no gap to fill) has the first report's facts.
    unchanged = series.timeframe == repaired.timeframe and len(series) == len(repaired)
    if unchanged and not (fill_gaps and first.missing_bars):
        return Loaded(series, first)
    series, final = clean(series, fill_gaps=fill_gaps)
    report = dataclasses.replace(
        final,
        rows=first.rows,
        unsorted=first.unsorted,
        duplicates=first.duplicates,
        misaligned=first.misaligned,
        crowded=first.crowded,
        mixed_units=first.mixed_units,
        ohlc_errors=first.ohlc_errors,
        nonfinite=first.nonfinite,
        nonpositive=first.nonpositive,
        negative_volume=first.negative_volume,
    )
    return Loaded(series, report)
