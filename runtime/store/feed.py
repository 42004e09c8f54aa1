"""Candles of one exchange read through the store: what is stored is read locally, the rest downloaded.

The store is the exchange's cache: `CachedFeed.download` fetches only the ranges the store has not
covered yet and stores them (with the market's trading rules), and `CachedFeed.read` serves a range from
the store, from a finer stored timeframe that covers it, or after downloading what is missing. The
exchange is contacted (and ccxt imported) only when something is missing: a range the store covers is
served without any network call, up to the last bar closed by the local clock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from dsl.units import timeframe_ms
from runtime.data.candles import Candles
from runtime.data.resample import finer_timeframes
from runtime.data.times import wall_clock_ms
from runtime.store.candles import CandleStore
from runtime.store.markets import MarketStore

if TYPE_CHECKING:
    from runtime.exchange.feed import ExchangeFeed, Progress


class CachedFeed:
    """An exchange's candles cached in a store, under the exchange's ccxt id."""

    def __init__(
        self,
        engine: Engine,
        exchange: str,
        connect: Callable[[], ExchangeFeed],
        *,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        """Cache the candles of exchange `exchange` in the store behind `engine`.

        Args:
            engine: the store.
            exchange: ccxt id of the exchange, the name its candles are stored under.
            connect: makes the exchange's feed; called once, at the first download.
            clock: current UTC time in ms; a bar is served once it has closed by this clock.
        """
        self.candles = CandleStore(engine)  # stored candles and their fetched ranges
        self.markets = MarketStore(engine)  # stored trading rules
        self.exchange = exchange  # the name the candles are stored under
        self.clock = clock  # current UTC time, ms
        self._connect = connect  # makes the exchange feed on first use
        self._feed: ExchangeFeed | None = None  # the exchange feed, once made

    @property
    def feed(self) -> ExchangeFeed:
        """The exchange the candles come from (made on first use: a stored range needs none)."""
        if self._feed is None:
            self._feed = self._connect()
        return self._feed

    def read(self, symbol: str, timeframe: str, start: int, end: int) -> Candles:
        """Stored candles of [start, end); a finer stored timeframe if it covers the range, else download.

        The range is cut at the last bar closed by the local clock, so that a store that holds every
        closed bar serves an open-ended range ("until now") without asking the exchange.
        """
        store, exchange = self.candles, self.exchange
        end = min(end, self.clock() // timeframe_ms(timeframe) * timeframe_ms(timeframe))
        if store.missing(exchange, symbol, timeframe, start, end):
            for finer in finer_timeframes(timeframe):
                if store.coverage(exchange, symbol, finer) and not store.missing(
                    exchange, symbol, finer, start, end
                ):
                    return store.read(exchange, symbol, finer, start, end)
            self.download(symbol, timeframe, start, end)
        return store.read(exchange, symbol, timeframe, start, end)

    def download(
        self, symbol: str, timeframe: str, start: int, end: int, progress: Progress | None = None
    ) -> int:
        """Fetch the ranges of [start, end) the store lacks, store them, and return the candles added.

        Each fetched range is recorded as covered up to the last closed bar, so that bars missing at the
        exchange are not asked for again while the still-open bar will be. Raises ExchangeUnavailable
        naming the exchange, the series and the missing range when the exchange cannot be reached.
        """
        from runtime.exchange.client import ExchangeUnavailable

        step = timeframe_ms(timeframe)
        closed_end = self.clock() // step * step
        missing = self.candles.missing(self.exchange, symbol, timeframe, start, min(end, closed_end))
        if not missing:
            return 0
        added = 0
        try:
            for lo, hi in missing:
                candles = self.feed.fetch(symbol, timeframe, lo, hi, progress)
                self.candles.write(candles, exchange=self.exchange, covered=(lo, hi))
                added += len(candles)
            # The market's trading rules ride along (ccxt loaded the markets for the download anyway).
            rules = self.feed.rules(symbol)
        except ExchangeUnavailable as error:
            raise ExchangeUnavailable(self._unreachable(symbol, timeframe, missing, error)) from error
        if rules is not None:
            self.markets.save(rules)
        return added

    def _unreachable(
        self, symbol: str, timeframe: str, missing: list[tuple[int, int]], error: Exception
    ) -> str:
        """The message of a download that could not reach the exchange: what is missing, what to do."""
        held = [
            f"{tf} {_moment(ranges[0][0])} to {_moment(ranges[-1][1])}"
            for tf in (timeframe, *finer_timeframes(timeframe))
            if (ranges := self.candles.coverage(self.exchange, symbol, tf))
        ]
        advice = (
            f"it holds {symbol} {', '.join(held)}: choose a range inside that with --from/--to, or"
            if held
            else f"it holds no {symbol} candles at {timeframe} or finer:"
        )
        return (
            f"{error}; the store lacks {self.exchange} {symbol} {timeframe} candles from "
            f"{_moment(missing[0][0])} to {_moment(missing[-1][1])} ({advice} run offline with --data PATH "
            "(CSV files) or --data synthetic, or store candles with strat data import FILE)"
        )


def _moment(ms: int) -> str:
    """A UTC time as `2024-01-01 00:00`."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")
