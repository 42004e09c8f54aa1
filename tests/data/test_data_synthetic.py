"""The synthetic market: seeded, labelled, and with the stylised facts it promises."""

from __future__ import annotations

import numpy as np

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
