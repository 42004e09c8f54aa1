"""Reading candles from CSV: plain `timestamp,open,high,low,close,volume` and Binance's raw kline files.

The format is detected from the first line: a header or not, 6 columns (plain) or 12 (Binance kline
dump, where the open time may be in ms or, since 2025, in µs). The unit of each open time is told by
its magnitude (`time_unit_scale`): seconds, ms and µs are all read, and a file mixing them has the rows
outside its main unit counted (`Candles.mixed_units`) so that validation refuses it. Files are named
`SYMBOL-TIMEFRAME.csv` (`BTCUSDT-1h.csv`), or `SYMBOL-TIMEFRAME-anything.csv` as Binance names its
monthly dumps; anything else in a folder (a directory named `x.csv`, say) is not a candle file.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsl.units import TIMEFRAMES
from runtime.data.candles import PRICE_COLUMNS, Candles, DataError, split_pair

# Open times at or above this are microseconds (1e14 ms would be the year 5138, 1e14 µs is 1973).
_US_FROM = 100_000_000_000_000
# Open times from this up to _MS_FROM are seconds (1e9 s is 2001, 1e11 s is the year 5138); below it they
# are ms of the first days of 1970, as tests and hand-made files write them.
_S_FROM = 1_000_000_000
# Open times at or above this are ms (1e11 ms is 1973).
_MS_FROM = 100_000_000_000
# `BTCUSDT-1h.csv`, `BTC_USDT-1h.csv`, `BTCUSDT-1h-2024-01.csv`, `BTCUSDT-1s.csv`.
_NAME_RE = re.compile(r"^([A-Za-z0-9_]+)-(\d+[smhdw])(?:-.*)?\.csv$")
# Header names accepted for the open-time column.
_TIME_NAMES = ("timestamp", "time", "open_time", "opentime", "date")


@dataclass(frozen=True)
class CsvLayout:
    """What the first line of a file says about its format."""

    header: bool  # True when the first line names the columns
    columns: int  # number of columns (6 plain, 12 Binance kline)
    usecols: tuple[int, ...]  # positions of time, open, high, low, close, volume in each row


def name_market(path: Path) -> tuple[str, str] | None:
    """Return (symbol, timeframe) from a `SYMBOL-TIMEFRAME*.csv` file name, or None."""
    match = _NAME_RE.match(path.name)
    if match is None or match.group(2) not in TIMEFRAMES:
        return None
    try:
        return split_pair(match.group(1)), match.group(2)
    except ValueError:
        return None


def sniff(path: Path) -> CsvLayout:
    """Detect header and column layout from the first line; raise DataError on an unknown format."""
    with path.open("r", encoding="utf-8") as handle:
        first = handle.readline().strip()
    if not first:
        raise DataError(f"{path}: empty file")
    cells = [c.strip().strip('"').lower() for c in first.split(",")]
    header = not _is_number(cells[0])
    if len(cells) not in (6, 12):
        separator = next((c for c in ";\t|" if c in first), None)
        raise DataError(
            f"{path}: {len(cells)} columns; expected 6 (timestamp,open,high,low,close,volume) "
            "or 12 (Binance kline), separated by commas"
            + (f" (this file separates them by {separator!r})" if separator else "")
        )
    usecols: tuple[int, ...] = (0, 1, 2, 3, 4, 5)
    # A plain file with a header may order its columns freely: map them by name.
    if header and len(cells) == 6:
        time_col = next((cells.index(n) for n in _TIME_NAMES if n in cells), None)
        if time_col is None or not set(PRICE_COLUMNS) <= set(cells):
            raise DataError(f"{path}: header {first!r} lacks a time column or one of {PRICE_COLUMNS}")
        usecols = (time_col, *(cells.index(n) for n in PRICE_COLUMNS))
    return CsvLayout(header=header, columns=len(cells), usecols=usecols)


def _is_number(text: str) -> bool:
    """Whether a CSV cell is a number."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_csv(path: str | Path, symbol: str | None = None, timeframe: str | None = None) -> Candles:
    """Read one CSV file into `Candles` (exchange "csv"), rows exactly as in the file.

    Symbol and timeframe come from the arguments, else from the file name, else the timeframe is
    inferred from the most common spacing. Rows are not sorted or cleaned here: `validate.clean` does
    that and reports it. A file `prefetch` started reading (and unchanged since) is taken from there.
    """
    path = Path(path)
    pending = _PREFETCHED.pop(_file_key(path), None)
    raw, prices = pending.result() if pending is not None else _read_columns(path)
    time, mixed = to_ms(raw)
    named = name_market(path)
    symbol = symbol or (named[0] if named else path.stem.upper())
    timeframe = timeframe or (named[1] if named else infer_timeframe(time))
    return Candles.from_arrays("csv", symbol, timeframe, time, prices, mixed_units=mixed)


def time_unit_scale(raw: np.ndarray) -> np.ndarray:
    """Per open time as written, the factor to ms of its unit told by magnitude: 1000 (s), 1 (ms), -1000 (µs).

    A negative factor means "divide by its absolute value".
    """
    seconds = (raw >= _S_FROM) & (raw < _MS_FROM)
    return np.where(seconds, 1000, np.where(raw < _US_FROM, 1, -1000))


def to_ms(raw: np.ndarray) -> tuple[np.ndarray, int]:
    """Open times as written (s, ms or µs, told per row) in ms, and how many rows are not in the main unit."""
    scale = time_unit_scale(raw)
    time = np.where(scale > 0, raw * np.maximum(scale, 1), raw // 1000)
    if not len(scale):
        return time, 0
    # The file's unit is the one most rows use; the others are counted as mixed.
    _, counts = np.unique(scale, return_counts=True)
    return time, int(len(scale) - counts.max())


def _read_columns(path: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    """The open times (as written) and the five price/volume columns of a CSV file, in file order."""
    import pandas as pd

    layout = sniff(path)
    # One pass of pandas' C parser over only the six needed columns, dtypes fixed up front.
    try:
        frame = pd.read_csv(
            path,
            header=None,
            skiprows=1 if layout.header else 0,
            usecols=list(layout.usecols),
            dtype={layout.usecols[0]: np.int64, **{c: np.float64 for c in layout.usecols[1:]}},
            engine="c",
        )
    except (ValueError, pd.errors.ParserError) as error:
        raise DataError(_bad_cell(path, layout) or f"{path}: {error}") from None
    time = frame[layout.usecols[0]].to_numpy(np.int64)
    return time, [frame[c].to_numpy(np.float64) for c in layout.usecols[1:]]


def _bad_cell(path: Path, layout: CsvLayout) -> str | None:
    """Where a file the fast parser refused goes wrong: the first row with a missing or non-number cell.

    Only read after a failure (a slow line-by-line pass), so that the message names the row and column.
    """
    names = ("time", *PRICE_COLUMNS)
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if number == 1 and layout.header:
                continue
            cells = line.rstrip("\r\n").split(",")
            if len(cells) != layout.columns:
                return f"{path}, row {number}: {len(cells)} columns; the file has {layout.columns}"
            for name, col in zip(names, layout.usecols, strict=True):
                text = cells[col].strip().strip('"')
                if not _is_number(text) or (name == "time" and not text.lstrip("-").isdigit()):
                    return f"{path}, row {number}: {name} is {text!r}, not a number"
    return None


class _Pending:
    """The columns of one CSV file being read on a background thread."""

    def __init__(self, path: Path) -> None:
        """Start reading `path`."""
        self.columns: tuple[np.ndarray, list[np.ndarray]] | None = None  # the result once read
        self.error: BaseException | None = None  # what reading raised, re-raised to the reader
        self.thread = threading.Thread(target=self._run, args=(path,), name="csv-prefetch")  # the reader
        self.thread.start()

    def _run(self, path: Path) -> None:
        """Read the file, keeping the result or the error for `result`."""
        try:
            self.columns = _read_columns(path)
        except BaseException as error:  # handed to the thread that asks for the result
            self.error = error

    def result(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """Wait for the read and return its columns (or raise what it raised)."""
        self.thread.join()
        if self.error is not None:
            raise self.error
        assert self.columns is not None  # set by _run when it did not fail
        return self.columns


# Files being read ahead by `prefetch`, by (resolved path, size, mtime): taken by the next `read_csv`.
_PREFETCHED: dict[tuple[str, int, int], _Pending] = {}


def _file_key(path: Path) -> tuple[str, int, int]:
    """What identifies one version of a file: its resolved path, size and modification time (ns)."""
    try:
        stat = path.stat()
    except OSError:
        return str(path), -1, -1
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def prefetch(path: str | Path) -> None:
    """Start reading a CSV file on a background thread so that a later `read_csv` of it need not wait.

    pandas' parser releases the GIL, so the read overlaps whatever the caller does meanwhile (checking
    the spec, importing the engine). pandas itself is imported here, on the calling thread: an import
    holds the GIL throughout, and two threads importing at once only take turns at a cost. A path that
    is not a regular file is ignored; a file changed since is read again by `read_csv`.
    """
    path = Path(path)
    if path.is_file():
        key = _file_key(path)
        if key not in _PREFETCHED:
            import pandas  # noqa: F401  (see above)

            _PREFETCHED[key] = _Pending(path)


def infer_timeframe(time: np.ndarray) -> str:
    """Return the timeframe whose length is the most common spacing between sorted open times."""
    steps = np.diff(np.unique(time))
    if len(steps) == 0:
        raise DataError("cannot infer the timeframe of fewer than two bars; name the file SYMBOL-TF.csv")
    values, counts = np.unique(steps, return_counts=True)
    step = int(values[np.argmax(counts)])
    for name, ms in TIMEFRAMES.items():
        if ms == step:
            return name
    raise DataError(f"bar spacing of {step} ms is not a supported timeframe")


def find_file(directory: Path, symbol: str, timeframe: str) -> Path | None:
    """Return the file for (symbol, timeframe) in a directory of `SYMBOL-TIMEFRAME.csv` files."""
    return list_files(directory).get((symbol, timeframe))


def list_files(directory: Path) -> dict[tuple[str, str], Path]:
    """Map every (symbol, timeframe) found by file name in a directory to its file."""
    found: dict[tuple[str, str], Path] = {}
    for path in sorted(directory.glob("*.csv")):
        named = name_market(path)
        # Only regular files hold candles (a directory may be named like one).
        if named is not None and path.is_file():
            found.setdefault(named, path)
    return found


def peek_span(path: Path) -> tuple[int, int] | None:
    """Open times (ms) of the first and the last row of a CSV file, read without parsing it whole.

    None when either row does not start with an integer time (the file is then judged when read).
    """
    layout = sniff(path)
    with path.open("rb") as handle:
        head = handle.read(4096).decode("utf-8", "replace").splitlines()
        handle.seek(0, 2)
        handle.seek(max(handle.tell() - 4096, 0))
        tail = [line for line in handle.read().decode("utf-8", "replace").splitlines() if line.strip()]
    rows = head[1:] if layout.header else head
    if not rows or not tail:
        return None
    times = []
    for line in (rows[0], tail[-1]):
        text = line.split(",")[layout.usecols[0]].strip().strip('"') if "," in line else ""
        if not text.isdigit():
            return None
        times.append(int(text))
    first, last = to_ms(np.array(times, dtype=np.int64))[0]
    return int(first), int(last)
