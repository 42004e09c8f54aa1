"""The one way commands get candles: from a CSV path, the synthetic market, or the store then exchange.

Whatever the source, the series is cleaned (`validate.clean`), resampled when only a finer timeframe
is available, cut to the requested range and, when asked, gap-filled; the report of what was found comes
back with it so the caller can show it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dsl.units import timeframe_ms
from runtime.data.candles import Candles, market_symbol
from runtime.data.validate import CheckReport, clean

if TYPE_CHECKING:
    from runtime.data.exchange import ExchangeFeed, Progress
    from runtime.store.candles import CandleStore

# Bars loaded when a request gives no start.
DEFAULT_BARS = 1000
# The `--data` value that selects the synthetic market.
SYNTHETIC = "synthetic"


@dataclass(frozen=True)
class Source:
    """Where candles come from, as chosen by the data options of a command."""

    data: str | None = None  # CSV file or directory, "synthetic", or None for the store then exchange
    exchange: str = "binance"  # ccxt exchange id when the symbol names none
    fill_gaps: bool = False  # forward-fill missing bars with zero volume (marked filled)
    db_url: str | None = None  # store URL (None: $STRAT_DB_URL or the default SQLite file)
    api_url: str | None = None  # exchange REST base URL override (a proxy or a local test server)
    seed: int = 0  # seed of the synthetic market


@dataclass(frozen=True)
class Loaded:
    """Candles ready for use and the validation report of the data they came from."""

    candles: Candles  # cleaned, resampled, sliced (and gap-filled if asked) candles
    report: CheckReport  # what cleaning found and did


def load(
    source: Source,
    symbol: str,
    timeframe: str,
    start_ms: int | None = None,
    end_ms: int | None = None,
    *,
    now_ms: int | None = None,
    feed: ExchangeFeed | None = None,
) -> Loaded:
    """Load closed candles with start_ms <= open time < end_ms (None: the last DEFAULT_BARS bars).

    `symbol` may name its exchange (`BINANCE:BTC/USDT`). `feed` is an `ExchangeFeed` to use instead of
    creating one (tests pass one with a fake clock); `now_ms` defaults to the feed's clock.
    """
    named_exchange, pair = market_symbol(symbol)
    exchange = named_exchange or source.exchange
    step = timeframe_ms(timeframe)
    if source.data is None and feed is None:
        from runtime.data.exchange import ExchangeFeed

        feed = ExchangeFeed(exchange, api_url=source.api_url)
    now = now_ms if now_ms is not None else (feed.clock() if feed is not None else _now_ms())
    end = now if end_ms is None else end_ms
    start = end - DEFAULT_BARS * step if start_ms is None else start_ms
    if source.data == SYNTHETIC:
        from runtime.data.synthetic import generate_range

        raw = generate_range(pair, timeframe, start, end, seed=source.seed)
    elif source.data is not None:
        raw = _from_csv(Path(source.data), pair, timeframe)
    else:
        assert feed is not None  # created above when no --data was given
        raw = _from_store(source, feed, exchange, pair, timeframe, start, min(end, now))
    return prepare(raw, timeframe, start, end, fill_gaps=source.fill_gaps)


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


def _now_ms() -> int:
    """The current UTC time in ms."""
    import time

    return time.time_ns() // 1_000_000


def _from_csv(path: Path, symbol: str, timeframe: str) -> Candles:
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


def _from_store(
    source: Source, feed: ExchangeFeed, exchange: str, symbol: str, timeframe: str, start: int, end: int
) -> Candles:
    """Read from the store; use a finer stored timeframe if it covers the range, else download the gaps."""
    from runtime.data.resample import finer_timeframes
    from runtime.store.candles import CandleStore

    store = CandleStore(source.db_url)
    if store.missing(exchange, symbol, timeframe, start, end):
        for finer in finer_timeframes(timeframe):
            if store.coverage(exchange, symbol, finer) and not store.missing(
                exchange, symbol, finer, start, end
            ):
                return store.read(exchange, symbol, finer, start, end)
        download(store, feed, exchange, symbol, timeframe, start, end)
    return store.read(exchange, symbol, timeframe, start, end)


def download(
    store: CandleStore,
    feed: ExchangeFeed,
    exchange: str,
    symbol: str,
    timeframe: str,
    start: int,
    end: int,
    progress: Progress | None = None,
) -> int:
    """Fetch the ranges of [start, end) the store lacks, store them, and return the candles added.

    Each fetched range is recorded as covered up to the last closed bar, so that bars missing at the
    exchange are not asked for again while the still-open bar will be.
    """
    from runtime.store.markets import save_rules

    step = timeframe_ms(timeframe)
    closed_end = feed.clock() // step * step
    added = 0
    for lo, hi in store.missing(exchange, symbol, timeframe, start, min(end, closed_end)):
        candles = feed.fetch(symbol, timeframe, lo, hi, progress)
        store.write(candles, exchange=exchange, covered=(lo, hi))
        added += len(candles)
    # The market's trading rules ride along (ccxt loaded the markets for the download anyway).
    rules = feed.rules(symbol)
    if rules is not None:
        save_rules(rules, engine=store.engine)
    return added
