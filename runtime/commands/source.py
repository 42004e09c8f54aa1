"""Where a command's candles come from: the market-data options decoded once into a `Source`.

`--data`, `--exchange`, `--exchange-url`, `--fill-gaps`, `--db`, `--from` and `--to` become one typed
`Source` (`Source.from_args`); nothing below the commands sees the argparse namespace. A source is a CSV
file or folder, the seeded synthetic market, or the store backed by the exchange (the default). Without
`--data`, the spec's `data:` setting picks it (`Source.with_setting`). A source carries the one range
policy of every command that reads candles (run, series, data download):

- the range ends at `--to` (exclusive), else now by the local clock (a store that holds every bar
  closed by then is read without asking the exchange anything);
- it starts at `--from` (a run asks for its warm-up bars before that), else a CSV source is read from
  its first row (the whole file) and the synthetic market and the exchange give `DEFAULT_HISTORY_MS`
  (one year) before the end, or `DEFAULT_HISTORY_BARS` bars when fewer (second bars: 11.6 days);
- it never starts before the epoch.

Only argparse, the standard library and the local clock are imported at module level, so that
`strat check` starts fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.data.times import wall_clock_ms

if TYPE_CHECKING:
    from runtime.data.candles import Candles
    from runtime.data.loader import Loaded
    from runtime.data.markets import MarketRules
    from runtime.data.validate import CheckReport
    from runtime.exchange.feed import ExchangeFeed

# The `--data` value that selects the synthetic market.
SYNTHETIC = "synthetic"
# The `--data` value that selects the store backed by the exchange (the default without --data).
EXCHANGE = "exchange"
# History given when a synthetic or exchange source is asked for no start: one year before the end, ms.
DEFAULT_HISTORY_MS = 365 * 86_400_000
# The most bars that default gives (a year of 1s bars would be 31.5 million); a year of 1m bars is fewer.
DEFAULT_HISTORY_BARS = 1_000_000


class SourceKind(enum.Enum):
    """The three places candles come from."""

    CSV = "csv"  # a CSV file, or a folder of SYMBOL-TIMEFRAME.csv files
    SYNTHETIC = "synthetic"  # the seeded synthetic market (always labelled synthetic)
    STORE = "store"  # the store, downloading from the exchange what it lacks


@dataclass(frozen=True)
class Source:
    """The market data a command reads, and the range it reads by default."""

    kind: SourceKind = SourceKind.STORE  # where candles come from
    path: Path | None = None  # the CSV file or folder (kind CSV only)
    exchange: str = "binance"  # ccxt exchange id when a symbol names none (and the store's name for it)
    exchange_asked: bool = False  # --exchange was given: a symbol naming another exchange is an error
    api_url: str | None = None  # exchange REST base URL override (a proxy or a local test server)
    db_url: str | None = None  # store URL (None: $STRAT_DB_URL or the default SQLite file)
    fill_gaps: bool = False  # forward-fill missing bars with zero volume (marked filled)
    drop_bad_rows: bool = False  # drop rows with impossible values (NaN, inf, price <= 0, volume < 0)
    start: int | None = None  # first open time asked for (--from), UTC ms; None: the policy's default
    end: int | None = None  # end of the range asked for (--to, exclusive), UTC ms; None: now
    seed: int = 0  # seed of the synthetic market
    # symbol each CSV file without a market in its name fed so far (one file cannot feed two symbols)
    unnamed: dict[Path, str] = field(default_factory=dict, compare=False, repr=False)
    chosen: bool = False  # whether --data chose the kind (a spec's `data:` setting then does not apply)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Source:
        """Decode the options of `add_data_arguments` and the command's --from (`start`) and --to (`end`).

        Raises ValueError for a date that does not parse, StoreError for a --db that is no database URL.
        """
        kinds = {None: SourceKind.STORE, EXCHANGE: SourceKind.STORE, SYNTHETIC: SourceKind.SYNTHETIC}
        kind = kinds.get(args.data, SourceKind.CSV)
        if args.db is not None:
            from runtime.store.schema import check_url

            check_url(args.db)
        return cls(
            kind=kind,
            path=Path(args.data) if kind is SourceKind.CSV else None,
            exchange=args.exchange or cls.exchange,
            exchange_asked=args.exchange is not None,
            api_url=args.exchange_url,
            db_url=args.db,
            fill_gaps=args.fill_gaps,
            drop_bad_rows=args.drop_bad_rows,
            start=parse_time(args.start) if args.start else None,
            end=parse_time(args.end) if args.end else None,
            chosen=args.data is not None,
        )

    def with_setting(self, data: str | None) -> Source:
        """This source with a spec's `data:` setting applied, unless --data chose one.

        `data` is the checked setting (`dsl.ir.PortfolioIR.data`): "exchange", "synthetic" or the path
        of a folder of CSV files (already resolved against the spec's file); None leaves the source.
        """
        if self.chosen or data is None:
            return self
        if data == EXCHANGE:
            return dataclasses.replace(self, kind=SourceKind.STORE, path=None)
        if data == SYNTHETIC:
            return dataclasses.replace(self, kind=SourceKind.SYNTHETIC, path=None)
        return dataclasses.replace(self, kind=SourceKind.CSV, path=Path(data))

    def span(
        self, first: int | None, last: int | None, now: int, timeframe: str | None = None
    ) -> tuple[int, int]:
        """The range [start, end) to read, UTC ms, by the range policy (see the module's docstring).

        `first` and `last` are what the caller asks for (None: the policy's default); `now` is the
        current time of the source's clock; `timeframe` the bars read (None: no cap on their number).
        """
        from dsl.units import timeframe_ms

        end = now if last is None else last
        if first is None:
            bars = DEFAULT_HISTORY_BARS * timeframe_ms(timeframe) if timeframe else DEFAULT_HISTORY_MS
            first = 0 if self.kind is SourceKind.CSV else end - min(DEFAULT_HISTORY_MS, bars)
        return max(first, 0), end

    def load(
        self,
        symbol: str,
        timeframe: str,
        first: int | None = None,
        last: int | None = None,
        *,
        feed: ExchangeFeed | None = None,
    ) -> Loaded:
        """Closed candles of `symbol` (which may name its exchange, `BINANCE:BTC/USDT`) over `span`.

        `feed` is an `ExchangeFeed` to use instead of creating one (tests pass one with a fake clock).
        """
        from runtime.data.loader import Loaded, from_csv, prepare

        exchange, pair = self.market(symbol)
        if self.kind is SourceKind.STORE:
            from runtime.store.feed import CachedFeed
            from runtime.store.schema import open_store

            # The exchange (and ccxt) is reached for only when the store lacks part of the range.
            connect: Callable[[], ExchangeFeed] = partial(_exchange_feed, exchange, self.api_url)
            clock = wall_clock_ms
            if feed is not None:
                given: ExchangeFeed = feed  # the caller's feed (tests: a fake exchange and its clock)
                connect, clock = (lambda: given), feed.clock
            start, end = self.span(first, last, clock(), timeframe)
            cache = CachedFeed(open_store(self.db_url), exchange, connect, clock=clock)
            raw = cache.read(pair, timeframe, start, end)
        elif self.kind is SourceKind.SYNTHETIC:
            from runtime.data.synthetic import generate_range

            start, end = self.span(first, last, wall_clock_ms(), timeframe)
            raw = generate_range(pair, timeframe, start, end, seed=self.seed)
        else:
            assert self.path is not None  # a CSV source always has its path
            start, end = self.span(first, last, wall_clock_ms(), timeframe)
            raw, path = from_csv(self.path, pair, timeframe, start, end)
            self._feed_once(path, raw, pair)
            loaded = prepare(
                raw, timeframe, start, end, fill_gaps=self.fill_gaps, drop_bad_rows=self.drop_bad_rows
            )
            resampled = ", resampled" if raw.timeframe != timeframe else ""
            return Loaded(loaded.candles, loaded.report, f"{path.name} ({raw.timeframe}{resampled})")
        return prepare(raw, timeframe, start, end, fill_gaps=self.fill_gaps, drop_bad_rows=self.drop_bad_rows)

    def _feed_once(self, path: Path, raw: Candles, symbol: str) -> None:
        """Refuse a CSV file whose name says no market when it is asked to feed a second symbol."""
        from runtime.data.candles import DataError
        from runtime.data.csvfiles import name_market

        if name_market(path) is not None:
            return
        fed = self.unnamed.setdefault(path, symbol)
        if fed != symbol:
            raise DataError(
                f"--data {path}: its name says no market, so it can feed one symbol, but the spec reads "
                f"{fed} and {symbol}; name the files SYMBOL-TIMEFRAME.csv (BTCUSDT-1h.csv) in a folder"
            )

    def candles(
        self,
        symbol: str,
        timeframe: str,
        first: int | None,
        last: int | None,
        notes: dict[str, str] | None = None,
    ) -> Candles:
        """`load` for a command: the candles, with their file and what validation found printed to stderr.

        `notes`, when given, also receives that line under the candles' label (the file that fed them and
        the note; '' for clean candles of no file). A series read again later (a finer file covering more
        of the range) replaces its earlier line.
        """
        loaded = self.load(symbol, timeframe, first, last)
        note = report_note(loaded.report)
        origin = f" from {loaded.origin}" if loaded.origin else ""
        if notes is not None:
            notes[loaded.candles.label] = "; ".join(x for x in (origin.strip(), note) if x)
        if note or origin:
            print(f"{loaded.candles.label}{origin}" + (f": {note}" if note else ""), file=sys.stderr)
        return loaded.candles

    def rules(self, symbol: str) -> MarketRules | None:
        """The stored trading rules of `symbol` (`EXCHANGE:BASE/QUOTE`), or None.

        Rules are looked up after the candles were loaded (a download has just stored them); no database
        is created just to look.
        """
        from runtime.store import store_exists

        # Looked at before SQLAlchemy is imported: a run without a store pays nothing for the lookup.
        if not store_exists(self.db_url):
            return None
        from runtime.store.markets import MarketStore
        from runtime.store.schema import open_store

        exchange, pair = self.market(symbol)
        return MarketStore(open_store(self.db_url)).get(exchange, pair)

    def market(self, symbol: str) -> tuple[str, str]:
        """The exchange and pair of `symbol`: the exchange it names, else --exchange (or binance).

        Raises DataError when the symbol names another exchange than an --exchange given on the command.
        """
        from runtime.data.candles import DataError, market_symbol

        named, pair = market_symbol(symbol)
        if named is not None and self.exchange_asked and named != self.exchange.lower():
            raise DataError(
                f"--exchange {self.exchange} disagrees with the symbol {symbol}, which names {named}: "
                "drop --exchange, or name the exchange in the symbol"
            )
        return named or self.exchange, pair


def _exchange_feed(exchange: str, api_url: str | None) -> ExchangeFeed:
    """The feed of exchange `exchange` (ccxt is imported here, when a download needs it)."""
    from runtime.exchange.feed import ExchangeFeed

    return ExchangeFeed(exchange, api_url=api_url)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --data, --exchange, --exchange-url, --fill-gaps and --db to a command that reads candles."""
    group = parser.add_argument_group("market data")
    group.add_argument(
        "--data",
        metavar="PATH|synthetic|exchange",
        help="a CSV file or a directory of SYMBOL-TIMEFRAME.csv files, 'synthetic' for the seeded "
        "synthetic market, or 'exchange' for the store, then the exchange; default: the spec's data: "
        "setting, else the exchange",
    )
    add_exchange_arguments(group, default=None)
    group.add_argument(
        "--fill-gaps",
        action="store_true",
        help="forward-fill missing bars at the previous close with zero volume (marked as filled)",
    )
    group.add_argument(
        "--drop-bad-rows",
        action="store_true",
        help="drop rows with impossible values (NaN, inf, price <= 0, volume < 0), printing how many; "
        "by default such a file is refused",
    )
    add_db_argument(group)


def add_exchange_arguments(
    group: argparse._ArgumentGroup | argparse.ArgumentParser, default: str | None = "binance"
) -> None:
    """Add --exchange and --exchange-url; a `default` of None lets `Source` tell an --exchange given."""
    group.add_argument("--exchange", default=default, help="ccxt exchange id (default: binance)")
    group.add_argument(
        "--exchange-url",
        metavar="URL",
        help="send the exchange's REST calls to this base URL (a proxy, or a local test server)",
    )


def add_db_argument(group: argparse._ArgumentGroup | argparse.ArgumentParser) -> None:
    """Add --db."""
    group.add_argument(
        "--db", metavar="URL", help="database URL (default: $STRAT_DB_URL, else sqlite .strat/strat.db)"
    )


def parse_time(text: str) -> int:
    """Parse a UTC date/time (`2024-01-01`, `2024-01-01T12:00`, `...Z`) or integer ms into UTC ms."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise ValueError(f"not a date: {text!r} (use 2024-01-01 or 2024-01-01T12:00)") from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def report_note(report: CheckReport) -> str:
    """One line listing the defects, repairs and flags of a report ('' when there is nothing to say)."""
    parts = [
        f"{count} {what}"
        for count, what in (
            (report.unsorted, "rows out of order (sorted)"),
            (report.duplicates, "duplicate timestamps (kept once)"),
            (report.nonfinite, "rows with a NaN or infinite value (dropped)"),
            (report.nonpositive, "rows with non-positive prices (dropped)"),
            (report.negative_volume, "rows with negative volume (dropped)"),
            (report.ohlc_errors, "OHLC inconsistencies (high/low widened)"),
            (report.mixed_units, "timestamps in another unit (s/ms/µs) than the rest"),
            (report.misaligned, "timestamps not aligned to the timeframe"),
            (report.crowded, "timestamps less than one bar after the previous one"),
            (report.gaps, f"gaps ({report.missing_bars} missing bars, longest {report.longest_gap_bars})"),
            (report.filled, "bars filled (zero volume)"),
            (report.zero_volume, "zero-volume bars"),
            (report.spikes, "spikes (flagged)"),
        )
        if count
    ]
    if report.synthetic:
        parts.insert(0, "SYNTHETIC data")
    return "; ".join(parts)
