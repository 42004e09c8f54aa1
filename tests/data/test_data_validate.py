"""Validation and cleaning: the real BTC file's known defects, and files with planted ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.data.candles import Candles
from runtime.data.csvfiles import read_csv
from runtime.data.validate import check, clean, find_spikes

H = 3_600_000  # one hour, ms
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC


def test_real_btc_1h_has_exactly_the_documented_defects(shared_data: Path) -> None:
    report = check(read_csv(shared_data / "BTCUSDT-1h.csv"))
    assert (report.rows, report.gaps, report.missing_bars, report.longest_gap_bars, report.zero_volume) == (
        58_419,
        28,
        128,
        33,
        4,
    )
    assert (
        report.unsorted,
        report.duplicates,
        report.ohlc_errors,
        report.nonpositive,
        report.misaligned,
    ) == (
        0,
        0,
        0,
        0,
        0,
    )
    assert report.ok and report.start == 1502942400000 and report.end == 1713708000000


def test_real_btc_1h_fill_gaps_invents_exactly_the_missing_bars(shared_data: Path) -> None:
    raw = read_csv(shared_data / "BTCUSDT-1h.csv")
    filled, report = clean(raw, fill_gaps=True)
    assert (len(filled), report.filled, int(filled.filled.sum())) == (58_419 + 128, 128, 128)
    assert np.all(np.diff(filled.time) == H)
    # The longest outage: after 2018-02-08 00:00 the next bar is 2018-02-09 10:00; 33 bars invented.
    gap = filled.slice(1518048000000 + H, 1518048000000 + 34 * H)
    assert len(gap) == 33 and gap.filled.all() and np.all(gap.volume == 0)
    assert not filled.slice(1518048000000 + 34 * H, None).filled[0]
    before = raw.slice(None, 1518048000000 + H)
    assert np.all(gap.open == before.close[-1]) and np.all(gap.high == before.close[-1])
    # Real bars are untouched.
    assert np.array_equal(filled.take(~filled.filled).close, raw.close)


def _planted() -> Candles:
    """Ten hourly bars with one of each defect."""
    time = T0 + H * np.array([0, 1, 2, 4, 3, 5, 5, 6, 7, 8, 12, 13])  # swapped 3/4, duplicate 5, gap 9..11
    close = np.array([100, 101, 102, 104, 103, 105, 105.5, 106, 400, 107, 108, 109], dtype=float)
    open_ = np.r_[100.0, close[:-1]]
    open_[4] = 102.0  # bar at 3h (second physical row after the swap) opens at 102 then
    open_[3] = 103.0
    high = np.maximum(open_, close) + 1
    low = np.minimum(open_, close) - 1
    high[1] = 100.5  # below its close 101: OHLC error
    low[9] = 108.0  # above open 400? no: bar 9 opens at 400 and closes 107, low 108 > 107: OHLC error
    volume = np.full(12, 10.0)
    volume[2] = 0.0
    close[10] = -1.0  # non-positive price: dropped
    low[10] = -2.0
    return Candles.from_arrays("csv", "BTC/USDT", "1h", time, [open_, high, low, close, volume])


def test_planted_defects_are_each_found_and_repaired() -> None:
    raw = _planted()
    cleaned, report = clean(raw)
    assert report.rows == 12
    assert report.unsorted == 2  # 4h->3h and 5h->5h step backwards or stand still
    assert report.duplicates == 1
    assert report.nonpositive == 1
    assert report.ohlc_errors == 2
    assert report.zero_volume == 1
    assert (report.gaps, report.missing_bars, report.longest_gap_bars) == (1, 4, 4)  # 9..12h missing
    assert report.spikes == 1 and report.spike_times == (T0 + 7 * H,)
    assert not report.ok
    assert cleaned.time.tolist() == [T0 + H * i for i in (0, 1, 2, 3, 4, 5, 6, 7, 8, 13)]
    assert cleaned.close[5] == 105.5  # the later duplicate wins
    assert cleaned.high[1] == 101.0  # widened to the close
    assert cleaned.low[8] == 107.0  # widened to the close
    assert check(cleaned).ok


def test_spike_needs_a_return_back() -> None:
    base = 100 * np.exp(np.cumsum(np.random.default_rng(1).normal(0, 0.001, 600)))
    spiked = base.copy()
    spiked[300] *= 1.5
    jumped = base.copy()
    jumped[300:] *= 1.5  # a level shift, not a spike
    assert np.flatnonzero(find_spikes(spiked)).tolist() == [300]
    assert np.flatnonzero(find_spikes(jumped)).tolist() == []


def test_report_json_has_the_documented_keys(shared_data: Path) -> None:
    data = check(read_csv(shared_data / "ETHUSDT-1h.csv")).to_json()
    for key in (
        "rows",
        "start",
        "end",
        "timeframe",
        "duplicates",
        "gaps",
        "missing_bars",
        "longest_gap_bars",
    ):
        assert key in data
    assert (data["zero_volume"], data["spikes"], data["ohlc_errors"], data["rows"]) == (0, 0, 0, 5980)


def _numpy_spikes(close: np.ndarray, sigmas: float = 10.0, block: int = 256) -> np.ndarray:
    """The plain numpy definition of the spike mask (block medians by np.median)."""
    mask = np.zeros(len(close), dtype=bool)
    ret = np.diff(np.log(close))
    size = np.abs(ret)
    medians = np.array([np.median(size[i : i + block]) for i in range(0, len(ret), block)])
    scale = 1.4826 * np.repeat(medians, block)
    into, out = ret[:-1], ret[1:]
    limit = sigmas * np.minimum(scale[: len(ret) - 1], scale[1 : len(ret)])
    big = (np.abs(into) > limit) & (np.abs(out) > limit) & (limit > 0)
    back = np.abs(into + out) < 0.5 * np.minimum(np.abs(into), np.abs(out))
    mask[1:-1] = big & back
    return mask


def test_compiled_spike_mask_equals_the_numpy_definition() -> None:
    rng = np.random.default_rng(7)
    for n, sigmas in ((5_000, 10.0), (1_537, 3.0), (257, 2.0), (3, 1.0)):
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
        close[rng.integers(1, n - 1, 10)] *= 1.2  # planted spikes
        close[n // 2 : n // 2 + 40] = close[n // 2]  # a flat run: ties and zero returns in the medians
        assert np.array_equal(find_spikes(close, sigmas), _numpy_spikes(close, sigmas)), n
    assert find_spikes(np.array([1.0, 2.0])).tolist() == [False, False]


def test_clean_series_report_matches_a_repaired_ones_counts() -> None:
    # The same defects (a gap, a zero volume, an OHLC error) with and without rows to repair.
    time = T0 + H * np.array([0, 1, 2, 5, 6], dtype=np.int64)
    close = np.array([10.0, 11.0, 12.0, 13.0, 14.0])
    volume = np.array([1.0, 0.0, 1.0, 1.0, 1.0])
    high = close + 1
    high[3] = 12.5  # below its close: widened
    tidy = Candles.from_arrays("csv", "BTC/USDT", "1h", time, [close, high, close - 1, close, volume])
    messy = tidy.take(np.array([0, 1, 2, 2, 4, 3]))  # a duplicate and a swap
    _, a = clean(tidy)
    cleaned, b = clean(messy)
    assert (a.unsorted, a.duplicates, b.unsorted, b.duplicates) == (0, 0, 2, 1)
    for report in (a, b):
        assert (report.gaps, report.missing_bars, report.longest_gap_bars) == (1, 2, 2)
        assert (report.ohlc_errors, report.zero_volume, report.misaligned, report.nonpositive) == (1, 1, 0, 0)
    assert cleaned.high.tolist() == [11.0, 12.0, 13.0, 13.0, 15.0]
