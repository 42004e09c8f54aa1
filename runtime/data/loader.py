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

from runtime.data.candles import Candles
from runtime.data.validate import CheckReport, clean


@dataclass(frozen=True)
class Loaded:
    """Candles ready for use and the validation report of the data they came from."""

    candles: Candles  # cleaned, resampled, sliced (and gap-filled if asked) candles
    report: CheckReport  # what cleaning found and did


def from_csv(path: Path, symbol: str, timeframe: str) -> Candles:
    """Read a CSV file, or find the symbol's file (or a finer timeframe's) in a directory."""
    from runtime.data.csvfiles import list_files, read_csv
    from runtime.data.resample import finer_timeframes

    if path.is_file():
        return read_csv(path, symbol=symbol)
    if not path.is_dir():
        raise FileNotFoundError(f"--data {path}: no such file or directory")
    files = list_files(path)
    for tf in (timeframe, *finer_timeframes(timeframe)):
        if (symbol, tf) in files:
            return read_csv(files[symbol, tf], symbol=symbol, timeframe=tf)
    have = ", ".join(f"{s} {tf}" for s, tf in sorted(files)) or "no SYMBOL-TIMEFRAME.csv files"
    raise FileNotFoundError(f"--data {path}: no {symbol} file at {timeframe} or finer (found: {have})")


def prepare(raw: Candles, timeframe: str, start_ms: int, end_ms: int, *, fill_gaps: bool) -> Loaded:
    """Clean, resample to `timeframe` if needed, slice to [start_ms, end_ms) and optionally fill gaps.

    The report carries the repairs made to the raw series and the gaps of the final one.
    """
    from runtime.data.resample import resample

    repaired, first = clean(raw)
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
        ohlc_errors=first.ohlc_errors,
        nonpositive=first.nonpositive,
    )
    return Loaded(series, report)
