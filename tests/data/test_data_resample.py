"""Resampling: Binance's own 1h candles reproduced from its 5m ones, alignment, completeness."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from runtime.data.candles import PRICE_COLUMNS, Candles
from runtime.data.csvfiles import read_csv
from runtime.data.resample import finer_timeframes, period_start, resample

M5 = 300_000  # five minutes, ms


@pytest.mark.parametrize("symbol", ["ETHUSDT", "BTCUSDT"])
def test_5m_resampled_to_1h_equals_binance_1h_exactly(shared_data: Path, symbol: str) -> None:
    five = read_csv(shared_data / f"{symbol}-5m.csv")
    hourly = read_csv(shared_data / f"{symbol}-1h.csv")
    mine = resample(five, "1h")
    # Compare on the hours both files cover (BTC's 1h file ends in April 2024).
    common, mine_at, theirs_at = np.intersect1d(mine.time, hourly.time, return_indices=True)
    assert len(common) == {"ETHUSDT": 5980, "BTCUSDT": 2679}[symbol]
    for name in PRICE_COLUMNS:
        assert np.array_equal(getattr(mine, name)[mine_at], getattr(hourly, name)[theirs_at]), name
    if symbol == "ETHUSDT":
        # Every complete hour is in Binance's file; the last 5m bars (04:00-04:40) form no complete hour.
        assert np.array_equal(mine.time, hourly.time)


def test_only_complete_periods_and_epoch_alignment() -> None:
    start = 1_704_067_200_000 + 2 * M5  # 00:10, so the first hour is incomplete
    time = start + M5 * np.arange(40)  # to 03:25
    time = np.delete(time, 20)  # drop 01:50 -> the 01:00 hour is incomplete
    n = len(time)
    ones = np.ones(n)
    candles = Candles.from_arrays("csv", "X/USDT", "5m", time, [ones, ones * 2, ones / 2, ones, ones * 0.1])
    hourly = resample(candles, "1h")
    assert hourly.time.tolist() == [1_704_067_200_000 + 2 * 3_600_000]  # only 02:00 is complete
    assert hourly.volume.tolist() == [1.2]  # twelve 0.1 volumes summed exactly


def test_weeks_start_on_monday() -> None:
    # 2024-01-03 (a Wednesday) belongs to the week opening Monday 2024-01-01 00:00 UTC.
    assert period_start(np.array([1_704_240_000_000]), "1w").tolist() == [1_704_067_200_000]


def test_aggregates_and_filled_flag() -> None:
    time = 1_704_067_200_000 + M5 * np.arange(3)
    candles = Candles.from_arrays(
        "csv",
        "X/USDT",
        "5m",
        time,
        [
            np.array([10.0, 11, 12]),
            np.array([11.0, 15, 13]),
            np.array([9.0, 10, 8]),
            np.array([11.0, 12, 12.5]),
            np.array([1.5, 0, 2.25]),
        ],
        filled=np.array([False, True, False]),
    )
    bar = resample(candles, "15m")
    assert [bar.open[0], bar.high[0], bar.low[0], bar.close[0], bar.volume[0]] == [
        10.0,
        15.0,
        8.0,
        12.5,
        3.75,
    ]
    assert bar.filled.tolist() == [True]


def test_not_a_whole_multiple_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot resample 3d to 1w: not a coarser whole multiple"):
        resample(Candles.empty("csv", "X/USDT", "3d"), "1w")
    with pytest.raises(ValueError, match="cannot resample 1h to 3m: not a coarser whole multiple"):
        resample(Candles.empty("csv", "X/USDT", "1h"), "3m")
    assert finer_timeframes("1h") == ["30m", "15m", "5m", "3m", "1m", "1s"]
