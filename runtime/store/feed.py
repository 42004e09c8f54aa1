"""Candles of one exchange read through the store: what is stored is read locally, the rest downloaded.

The store is the exchange's cache: `CachedFeed.download` fetches only the ranges the store has not
covered yet and stores them (with the market's trading rules), and `CachedFeed.read` serves a range from
the store, from a finer stored timeframe that covers it, or after downloading what is missing.
"""

from __future__ import annotations

from sqlalchemy import Engine

from dsl.units import timeframe_ms
from runtime.data.candles import Candles
from runtime.data.resample import finer_timeframes
from runtime.exchange.feed import ExchangeFeed, Progress
from runtime.store.candles import CandleStore
from runtime.store.markets import MarketStore


class CachedFeed:
    """An exchange's candles cached in a store, under the exchange's ccxt id."""

    def __init__(self, engine: Engine, feed: ExchangeFeed) -> None:
        """Cache the candles of `feed` in the store behind `engine`."""
        self.candles = CandleStore(engine)  # stored candles and their fetched ranges
        self.markets = MarketStore(engine)  # stored trading rules
        self.feed = feed  # the exchange the candles come from
        self.exchange = feed.exchange_id  # the name the candles are stored under

    def read(self, symbol: str, timeframe: str, start: int, end: int) -> Candles:
        """Stored candles of [start, end); a finer stored timeframe if it covers the range, else download."""
        store, exchange = self.candles, self.exchange
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
        exchange are not asked for again while the still-open bar will be.
        """
        step = timeframe_ms(timeframe)
        closed_end = self.feed.clock() // step * step
        added = 0
        for lo, hi in self.candles.missing(self.exchange, symbol, timeframe, start, min(end, closed_end)):
            candles = self.feed.fetch(symbol, timeframe, lo, hi, progress)
            self.candles.write(candles, exchange=self.exchange, covered=(lo, hi))
            added += len(candles)
        # The market's trading rules ride along (ccxt loaded the markets for the download anyway).
        rules = self.feed.rules(symbol)
        if rules is not None:
            self.markets.save(rules)
        return added
