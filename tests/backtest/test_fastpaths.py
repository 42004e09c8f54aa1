"""The compiled fast paths write exactly what their plain Python / numpy definitions give."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.backtest import fastcsv
from runtime.backtest.curve import curve_stats
from runtime.backtest.drive import warm_kernels
from runtime.backtest.fastcsv import iso_column, rows_text
from runtime.backtest.metrics import drawdown, iso_times
from runtime.data import fastclean
from runtime.data.candles import Candles
from runtime.data.csvfiles import read_csv
from runtime.data.validate import clean

# 2020-01-01 00:00 UTC in milliseconds.
T2020 = 1_577_836_800_000


def test_fixed8_matches_percent_format_bit_for_bit() -> None:
    rng = np.random.default_rng(3)
    # Exact ties of the eighth decimal (k / 2**9 * 1e8 ends in .5), signed zeros, tiny and huge values,
    # and random values of every scale an equity, cash, exposure or drawdown column can hold.
    ties = np.arange(1, 2000) / 512.0
    special = [0.0, -0.0, 1e-300, -1e-12, 0.5e-8, 1.5e-8, 2.5e-8, 99_999_999.999999995, 4.5e15, 9.1e18]
    dyadic = rng.integers(0, 2**20, 5000) / 2.0 ** rng.integers(1, 40, 5000)
    values = np.concatenate(
        (ties, -ties, special, dyadic, rng.random(5000) * 2.5e6, rng.standard_normal(5000) * 1e-3)
    )
    values = np.concatenate((values, [np.nan, np.inf, -np.inf]))
    times = T2020 + 60_000 * np.arange(len(values))
    text = rows_text(times, values.reshape(1, -1), False)
    assert text is not None
    fixed = [f"{v:.8f}" for v in values.tolist()]  # the same as "%.8f" % v
    expected = [f"{t},{v}" for t, v in zip(iso_times(times, False), fixed, strict=True)]
    assert text.tobytes().decode().splitlines() == expected
    assert rows_text(times[:1], np.array([[1e19]]), False) is None  # beyond int64: left to Python


def test_iso_column_matches_numpy() -> None:
    rng = np.random.default_rng(4)
    ms = np.sort(rng.integers(-(10**12), 10**13, 3000))
    assert iso_column(ms, True) == iso_times(ms, True)
    assert iso_column(ms // 1000 * 1000, False) == iso_times(ms // 1000 * 1000, False)
    assert iso_column(np.array([T2020]), False) == ["2020-01-01T00:00:00Z"]
    assert iso_column(np.array([-62_135_596_800_001]), False) is None  # year 0: left to numpy


def test_curve_stats_match_the_numpy_definitions() -> None:
    rng = np.random.default_rng(5)
    curve = 100.0 * np.cumprod(1.0 + rng.standard_normal(20_000) * 0.01)
    curve[5000:5010] = 0.0  # a wiped-out stretch: returns after a non-positive point are 0
    rets, worst, longest = curve_stats(curve)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = np.where(curve[:-1] > 0, curve[1:] / curve[:-1] - 1.0, 0.0)
    assert np.array_equal(rets, expected)
    assert worst == float(drawdown(curve).max())
    peak = np.maximum.accumulate(curve)
    index = np.arange(len(curve))
    last_peak = np.maximum.accumulate(np.where(curve >= peak, index, 0))
    under = curve < peak
    assert longest == int(np.max((index[1:] - last_peak[:-1])[under[1:] | under[:-1]]))
    rising, no_dd, no_wait = curve_stats(np.array([4.0, 5.0, 7.5]))
    assert (rising.tolist(), no_dd, no_wait) == ([0.25, 0.5], 0.0, 0)


def test_float_fields_are_reprs_with_a_shared_memo() -> None:
    from runtime.backtest.output import _floats

    memo: dict[float, str] = {}
    first = np.array([0.1, -0.0, 2.5, 0.0, 1 / 3, np.nan, 0.1])
    assert _floats(first, memo) == ["0.1", "-0.0", "2.5", "0.0", "0.3333333333333333", "nan", "0.1"]
    # A second column reuses the texts; signed zeros stay apart although 0.0 == -0.0 as dict keys.
    assert _floats(np.array([0.0, 1 / 3, -0.0, np.inf]), memo) == ["0.0", "0.3333333333333333", "-0.0", "inf"]
    assert memo[2.5] == "2.5"


def _candles_from_csv(times: np.ndarray, folder: Path) -> Candles:
    """Candles at `times` with rising prices, read back from a CSV file as `strat run` reads them."""
    path = folder / "BTCUSDT-1m.csv"
    lines = [f"{t},{i + 1}.0,{i + 2}.0,{i + 0.5},{i + 1.5},1.0" for i, t in enumerate(times.tolist())]
    path.write_text("timestamp,open,high,low,close,volume\n" + "\n".join(lines) + "\n")
    return read_csv(path)


def test_warm_kernels_loads_the_signatures_a_run_uses(tmp_path: Path) -> None:
    warm_kernels()
    kernels = (fastcsv._rows_block, fastcsv._iso_block, fastclean._scan, fastclean._spike_mask)
    loaded = [len(k.signatures) for k in kernels]
    assert min(loaded) >= 1
    # The real path (read-only candle columns from a file, writable output columns) adds no signature.
    times = T2020 + 60_000 * np.arange(5)
    clean(_candles_from_csv(times, tmp_path))
    rows_text(times, np.ones((4, 5)), False)
    iso_column(times, False)
    assert [len(k.signatures) for k in kernels] == loaded
