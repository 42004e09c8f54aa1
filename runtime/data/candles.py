"""The candle value objects: one closed bar (`Candle`) and a column-oriented series of them (`Candles`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from dsl.units import parse_symbol, timeframe_ms
from runtime.errors import StratError

if TYPE_CHECKING:
    import pandas as pd

# Names of the five float64 price/volume columns, in file and table order.
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")


class DataError(StratError):
    """A data problem a command reports as a plain message (never a traceback)."""


@dataclass(frozen=True)
class Candle:
    """One closed bar, as the live stream yields them."""

    time: int  # open time, UTC ms
    open: float  # first trade price, quote currency
    high: float  # highest trade price, quote currency
    low: float  # lowest trade price, quote currency
    close: float  # last trade price, quote currency
    volume: float  # traded amount, base currency


@dataclass(frozen=True, eq=False)
class Candles:
    """A series of closed candles of one market and timeframe, as float64 columns.

    Arrays are read-only; every operation returns a new `Candles`.
    """

    exchange: str  # ccxt exchange id ("binance"); "csv" or "synthetic" for those sources
    symbol: str  # market symbol, "BTC/USDT"
    timeframe: str  # bar length, one of dsl.units.TIMEFRAMES ("1h")
    time: np.ndarray  # int64 open times, UTC ms, strictly increasing
    open: np.ndarray  # float64 opening prices, quote currency
    high: np.ndarray  # float64 highest prices, quote currency
    low: np.ndarray  # float64 lowest prices, quote currency
    close: np.ndarray  # float64 closing prices, quote currency
    volume: np.ndarray  # float64 volumes, base currency
    # bool per bar, True where --fill-gaps invented the bar (forward-filled price, zero volume)
    filled: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    synthetic: bool = False  # True when produced by the synthetic generator; shown wherever results are
    # rows whose open time the file wrote in another unit (s, ms or µs) than most of its rows; read per
    # row, counted so that validation refuses the file (set by `csvfiles.read_csv`, kept by no operation)
    mixed_units: int = 0

    def __post_init__(self) -> None:
        """Coerce the columns to their dtypes, check their lengths and freeze them."""
        n = len(self.time)
        # Normalise dtypes once here so every consumer can rely on them (frozen: set through object).
        object.__setattr__(self, "time", np.ascontiguousarray(self.time, dtype=np.int64))
        for name in PRICE_COLUMNS:
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), dtype=np.float64))
        if len(self.filled) == 0 and n:
            object.__setattr__(self, "filled", np.zeros(n, dtype=bool))
        else:
            object.__setattr__(self, "filled", np.ascontiguousarray(self.filled, dtype=bool))
        for name in (*PRICE_COLUMNS, "filled"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"column {name} has {len(getattr(self, name))} values, time has {n}")
        timeframe_ms(self.timeframe)  # raises on an unknown timeframe
        for name in ("time", *PRICE_COLUMNS, "filled"):
            getattr(self, name).flags.writeable = False

    def __len__(self) -> int:
        """Number of bars."""
        return len(self.time)

    @property
    def timeframe_ms(self) -> int:
        """Bar length in ms."""
        return timeframe_ms(self.timeframe)

    @property
    def label(self) -> str:
        """Human label of the series, e.g. `binance BTC/USDT 1h`, flagged when synthetic."""
        text = f"{self.exchange} {self.symbol} {self.timeframe}"
        return f"{text} [SYNTHETIC]" if self.synthetic else text

    def take(self, index: np.ndarray | slice) -> Candles:
        """Return the bars selected by a slice, boolean mask or sorted index array, same market."""
        return self.with_columns(
            time=self.time[index],
            open=self.open[index],
            high=self.high[index],
            low=self.low[index],
            close=self.close[index],
            volume=self.volume[index],
            filled=self.filled[index],
        )

    def with_columns(self, **columns: np.ndarray) -> Candles:
        """Return a copy with some columns replaced (all replaced columns must share one length)."""
        values = {name: columns.get(name, getattr(self, name)) for name in ("time", *PRICE_COLUMNS)}
        return Candles.from_arrays(
            self.exchange,
            self.symbol,
            self.timeframe,
            values["time"],
            [values[name] for name in PRICE_COLUMNS],
            filled=columns.get("filled", self.filled),
            synthetic=self.synthetic,
        )

    def slice(self, start_ms: int | None = None, end_ms: int | None = None) -> Candles:
        """Return the bars whose open time t satisfies start_ms <= t < end_ms (None: unbounded)."""
        lo = 0 if start_ms is None else int(np.searchsorted(self.time, start_ms, side="left"))
        hi = len(self) if end_ms is None else int(np.searchsorted(self.time, end_ms, side="left"))
        return self.take(slice(lo, hi))

    def bar(self, i: int) -> Candle:
        """Return bar i as a `Candle`."""
        return Candle(
            int(self.time[i]),
            float(self.open[i]),
            float(self.high[i]),
            float(self.low[i]),
            float(self.close[i]),
            float(self.volume[i]),
        )

    def to_frame(self) -> pd.DataFrame:
        """Return a pandas frame with a `timestamp` column (UTC ms) and the price columns."""
        import pandas as pd

        return pd.DataFrame(
            {
                "timestamp": self.time,
                **{name: getattr(self, name) for name in PRICE_COLUMNS},
                "filled": self.filled,
            }
        )

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        exchange: str,
        symbol: str,
        timeframe: str,
        synthetic: bool = False,
    ) -> Candles:
        """Build from a frame with `timestamp` (UTC ms) and price columns; `filled` is optional."""
        filled = frame["filled"].to_numpy(bool) if "filled" in frame else None
        return cls.from_arrays(
            exchange,
            symbol,
            timeframe,
            frame["timestamp"].to_numpy(np.int64),
            [frame[name].to_numpy(np.float64) for name in PRICE_COLUMNS],
            filled=filled,
            synthetic=synthetic,
        )

    @classmethod
    def from_arrays(
        cls,
        exchange: str,
        symbol: str,
        timeframe: str,
        time: np.ndarray,
        prices: Sequence[np.ndarray],
        *,
        filled: np.ndarray | None = None,
        synthetic: bool = False,
        mixed_units: int = 0,
    ) -> Candles:
        """Build from open times and the five price/volume columns in PRICE_COLUMNS order."""
        o, h, low, c, v = prices
        extra = {} if filled is None else {"filled": filled}
        return cls(
            exchange,
            symbol,
            timeframe,
            time,
            o,
            h,
            low,
            c,
            v,
            synthetic=synthetic,
            mixed_units=mixed_units,
            **extra,
        )

    @classmethod
    def empty(cls, exchange: str, symbol: str, timeframe: str, *, synthetic: bool = False) -> Candles:
        """An empty series of a market."""
        return cls.from_arrays(
            exchange, symbol, timeframe, np.zeros(0, np.int64), [np.zeros(0)] * 5, synthetic=synthetic
        )

    @classmethod
    def concat(cls, parts: list[Candles]) -> Candles:
        """Join series of one market in order (the caller ensures times stay increasing)."""
        first = parts[0]
        return first.with_columns(
            **{
                name: np.concatenate([getattr(p, name) for p in parts])
                for name in ("time", *PRICE_COLUMNS, "filled")
            }
        )


def split_pair(text: str) -> str:
    """Turn `BTCUSDT`, `BTC_USDT`, `BTC-USDT` or `BTC/USDT` into `BTC/USDT` (known quote assets)."""
    text = text.upper().replace("_", "/").replace("-", "/")
    if "/" in text:
        return text
    for quote in QUOTES:
        if text.endswith(quote) and len(text) > len(quote):
            return f"{text[: -len(quote)]}/{quote}"
    raise ValueError(f"cannot tell base from quote in {text!r}; write it as BASE/QUOTE")


# Quote assets recognised in concatenated symbols such as BTCUSDT, longest first.
QUOTES: tuple[str, ...] = (
    "FDUSD",
    "USDT",
    "USDC",
    "BUSD",
    "TUSD",
    "DAI",
    "USD",
    "EUR",
    "TRY",
    "BTC",
    "ETH",
    "BNB",
)


def market_symbol(text: str) -> tuple[str | None, str]:
    """Split `BINANCE:BTC/USDT` into ("binance", "BTC/USDT"); a bare symbol gives (None, symbol)."""
    parts = parse_symbol(text)
    if parts is not None:
        return parts[0].lower(), f"{parts[1]}/{parts[2]}"
    return None, split_pair(text)
