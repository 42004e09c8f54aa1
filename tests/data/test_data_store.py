"""The candle store on SQLite and (where a server runs) PostgreSQL: exact round trips, upserts, coverage."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.data.candles import PRICE_COLUMNS, Candles
from runtime.data.csvfiles import read_csv
from runtime.data.synthetic import generate
from runtime.store.candles import BLOCK_BARS, CandleStore, StoredSeries, merge_ranges, subtract
from runtime.store.schema import open_store

H = 3_600_000  # one hour, ms
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC


def _same(a: Candles, b: Candles) -> bool:
    return all(np.array_equal(getattr(a, n), getattr(b, n)) for n in ("time", *PRICE_COLUMNS))


def test_real_series_round_trips_bit_for_bit(db_url: str, shared_data: Path) -> None:
    store = CandleStore(open_store(db_url))
    btc = read_csv(shared_data / "BTCUSDT-1h.csv")
    store.write(btc, exchange="binance")
    back = store.read("binance", "BTC/USDT", "1h")
    assert _same(back, btc) and back.exchange == "binance" and not back.synthetic
    part = store.read("binance", "BTC/USDT", "1h", 1518048000000, 1518048000000 + 40 * H)
    assert part.time.tolist() == [1518048000000, *(1518048000000 + H * np.arange(34, 40)).tolist()]
    assert store.list_series() == [
        StoredSeries("binance", "BTC/USDT", "1h", 1502942400000, 1713708000000, 58_419),
    ]


def test_upsert_replaces_and_extends_across_blocks(db_url: str) -> None:
    store = CandleStore(open_store(db_url))
    first = generate("ETH/USDT", "1h", T0, BLOCK_BARS + 100, seed=1)
    store.write(first, exchange="binance")
    # Rewrite 50 bars that straddle a block boundary with new prices, and append 10 new bars.
    later = generate("ETH/USDT", "1h", T0 + (BLOCK_BARS - 25) * H, 135, seed=2)
    store.write(later, exchange="binance")
    back = store.read("binance", "ETH/USDT", "1h")
    assert len(back) == BLOCK_BARS + 110
    assert _same(back.slice(None, T0 + (BLOCK_BARS - 25) * H), first.slice(None, T0 + (BLOCK_BARS - 25) * H))
    assert _same(back.slice(T0 + (BLOCK_BARS - 25) * H), later)
    assert store.list_series()[0].rows == BLOCK_BARS + 110


def test_coverage_and_missing_ranges(db_url: str) -> None:
    store = CandleStore(open_store(db_url))
    bars = generate("SOL/USDT", "1h", T0, 10)
    store.write(bars.take(np.array([0, 1, 2, 7, 8, 9])), exchange="kraken", covered=(T0, T0 + 10 * H))
    # The gap 3..6 was fetched (the exchange had nothing): it is not missing.
    assert store.missing("kraken", "SOL/USDT", "1h", T0 - 2 * H, T0 + 12 * H) == [
        (T0 - 2 * H, T0),
        (T0 + 10 * H, T0 + 12 * H),
    ]
    store.write(Candles.empty("kraken", "SOL/USDT", "1h"), covered=(T0 + 10 * H, T0 + 11 * H))
    assert store.coverage("kraken", "SOL/USDT", "1h") == [(T0, T0 + 11 * H)]
    assert store.missing("kraken", "SOL/USDT", "1h", T0 + H // 2, T0 + 5 * H) == []
    assert store.missing("nowhere", "SOL/USDT", "1h", T0, T0 + H) == [(T0, T0 + H)]
    assert len(store.read("nowhere", "SOL/USDT", "1h")) == 0


def test_range_arithmetic() -> None:
    assert merge_ranges([(5, 7), (1, 3), (3, 4), (6, 9), (10, 10)]) == [(1, 4), (5, 9)]
    assert subtract((0, 10), [(2, 3), (5, 12)]) == [(0, 2), (3, 5)]
    assert subtract((4, 6), [(0, 10)]) == []
