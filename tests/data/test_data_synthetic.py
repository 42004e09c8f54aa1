"""The synthetic market: seeded, labelled, and with the stylised facts it promises."""

from __future__ import annotations

import numpy as np

from runtime.data.resample import resample
from runtime.data.synthetic import generate, generate_range
from runtime.data.validate import check

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC


def test_same_seed_same_market_and_labelled_synthetic() -> None:
    a = generate("BTC/USDT", "1h", T0, 2_000, seed=7)
    b = generate("BTC/USDT", "1h", T0, 2_000, seed=7)
    c = generate("BTC/USDT", "1h", T0, 2_000, seed=8)
    assert np.array_equal(a.close, b.close) and not np.array_equal(a.close, c.close)
    assert a.synthetic and a.exchange == "synthetic" and a.label == "synthetic BTC/USDT 1h [SYNTHETIC]"
    assert check(a).synthetic
    assert not np.array_equal(a.close, generate("ETH/USDT", "1h", T0, 2_000, seed=7).close)


def test_bars_are_consistent_and_aligned() -> None:
    bars = generate_range("ETH/USDT", "15m", T0 + 1, T0 + 1_000 * 900_000)
    assert len(bars) == 999 and bars.time[0] == T0 + 900_000
    report = check(bars)
    assert (report.ohlc_errors, report.nonpositive, report.gaps, report.misaligned, report.zero_volume) == (
        0,
    ) * 5
    assert np.array_equal(bars.open[1:], bars.close[:-1])


def test_volatility_clusters_and_volume_follows_it() -> None:
    bars = generate("BTC/USDT", "1h", T0, 20_000, seed=3)
    ret = np.diff(np.log(bars.close))
    size = np.abs(ret)
    # Absolute returns are autocorrelated (clustering) while returns themselves are not.
    assert np.corrcoef(size[1:], size[:-1])[0, 1] > 0.1
    assert abs(np.corrcoef(ret[1:], ret[:-1])[0, 1]) < 0.05
    # Busy bars trade more: volume rises with the size of the move.
    assert np.corrcoef(size, bars.volume[1:])[0, 1] > 0.3
    # Fat tails from jumps: excess kurtosis well above a normal's 0.
    assert ((ret - ret.mean()) ** 4).mean() / ret.var() ** 2 - 3 > 1.0


def test_one_market_per_symbol_whatever_the_timeframe_or_range() -> None:
    # The 1h candles are the 5m candles resampled, bit for bit, and two overlapping ranges agree.
    m5 = generate_range("ETH/USDT", "5m", T0, T0 + 20 * 86_400_000)
    h1 = generate_range("ETH/USDT", "1h", T0 + 7 * 3_600_000, T0 + 30 * 86_400_000)
    again = resample(m5, "1h")
    shared = np.isin(again.time, h1.time)
    assert shared.sum() == 20 * 24 - 7
    for column in ("open", "high", "low", "close", "volume"):
        assert np.array_equal(getattr(again, column)[shared], getattr(h1, column)[: shared.sum()]), column
    later = generate_range("ETH/USDT", "1h", T0 + 10 * 86_400_000, T0 + 12 * 86_400_000)
    assert np.array_equal(later.close, h1.close[np.isin(h1.time, later.time)])
    # Weeks start on Monday (2024-01-01 was one); days and weeks come from the same path.
    weeks = generate_range("ETH/USDT", "1w", T0, T0 + 28 * 86_400_000)
    days = generate_range("ETH/USDT", "1d", T0, T0 + 28 * 86_400_000)
    assert len(weeks) == 4 and np.array_equal(weeks.close, days.close[6::7])
