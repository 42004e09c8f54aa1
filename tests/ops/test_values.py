"""Operator values: hand-computed exact cases, and the `ta` package as an independent reference.

The `ta` comparisons run on a seeded synthetic random walk (always) and on real ETH/USDT hours (when
../shared/data is there). Recursive indicators are compared after their seeds have converged (bar 500 on),
since `ta` seeds some of them differently (EMA/MACD from the first value) and puts 0.0 in ATR/ADX warm-up.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import ta

from runtime.ops.registry import OPERATORS

NA = math.nan
# The 6-value series of the hand-computed cases.
X = [1.0, 3.0, 2.0, 5.0, 4.0, 6.0]


def run(name: str, *args: object) -> list[list[float]]:
    """Batch outputs of an operator as lists (inputs are the leading list arguments, then the params)."""
    op = OPERATORS[name]
    inputs = [np.array(a, dtype=float) for a in args[: len(op.inputs)]]
    return [out.tolist() for out in op.batch(*inputs, *args[len(op.inputs) :])]


def same(actual: list[float], expected: list[float]) -> bool:
    """Equal within 1e-12 relative, na matching na."""
    return len(actual) == len(expected) and all(
        (math.isnan(a) and math.isnan(e)) or math.isclose(a, e, rel_tol=1e-12, abs_tol=1e-12)
        for a, e in zip(actual, expected, strict=True)
    )


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("sma", (3,), [NA, NA, 2.0, 10 / 3, 11 / 3, 5.0]),
        ("sum", (3,), [NA, NA, 6.0, 10.0, 11.0, 15.0]),
        ("highest", (3,), [NA, NA, 3.0, 5.0, 5.0, 6.0]),
        ("lowest", (3,), [NA, NA, 1.0, 2.0, 2.0, 4.0]),
        ("wma", (3,), [NA, NA, 13 / 6, 22 / 6, 4.0, 31 / 6]),
        ("variance", (3,), [NA, NA, 2 / 3, 14 / 9, 14 / 9, 2 / 3]),
        ("stdev", (3,), [NA, NA, math.sqrt(2 / 3), math.sqrt(14 / 9), math.sqrt(14 / 9), math.sqrt(2 / 3)]),
        ("ema", (3,), [NA, NA, 2.0, 3.5, 3.75, 4.875]),
        ("rma", (3,), [NA, NA, 2.0, 3.0, 10 / 3, 38 / 9]),
        ("roc", (2,), [NA, NA, 100.0, 100 * (5 / 3 - 1), 100.0, 20.0]),
        ("change", (1,), [NA, 2.0, -1.0, 3.0, -1.0, 2.0]),
        ("momentum", (2,), [NA, NA, 1.0, 2.0, 2.0, 1.0]),
        ("offset", (2,), [NA, NA, 1.0, 3.0, 2.0, 5.0]),
        ("offset", (0,), X),
        ("rsi", (2,), [NA, NA, 100 - 100 / 3, 100 - 100 / 9, 100 - 100 / 2.6, 100 - 100 / 5.8]),
    ],
)
def test_hand_computed_single_series(name: str, params: tuple[float, ...], expected: list[float]) -> None:
    (out,) = run(name, X, *params)
    assert same(out, expected), out


def test_windows_are_na_while_they_hold_an_na() -> None:
    x = [1.0, 2.0, NA, 4.0, 5.0, 6.0, 7.0]
    assert same(run("sma", x, 2)[0], [NA, 1.5, NA, NA, 4.5, 5.5, 6.5])
    assert same(run("highest", x, 3)[0], [NA, NA, NA, NA, NA, 6.0, 7.0])


def test_recursive_filters_skip_na_bars() -> None:
    # The seed averages the first 2 valid values (1, 3); the na bar is na and leaves the state as it was.
    assert same(run("ema", [1.0, NA, 3.0, NA, 5.0], 2)[0], [NA, NA, 2.0, NA, 2.0 + 2 / 3 * 3.0])


def test_macd_signal_seeds_from_the_first_valid_line_values() -> None:
    line, signal, hist = run("macd", X, 1, 2, 2)
    # ema(1) is x itself; ema(2) seeds with (1+3)/2 at bar 1, then alpha 2/3.
    slow = [NA, 2.0, 2.0 + 2 / 3 * 0.0, 2.0 + 2 / 3 * 3.0, 4.0 + 2 / 3 * 0.0, 4.0 + 2 / 3 * 2.0]
    expected_line = [x - s for x, s in zip(X, slow, strict=True)]
    assert same(line, expected_line)
    seed = (expected_line[1] + expected_line[2]) / 2
    expected_signal = [NA, NA, seed]
    for value in expected_line[3:]:
        expected_signal.append(expected_signal[-1] + 2 / 3 * (value - expected_signal[-1]))
    assert same(signal, expected_signal)
    assert same(hist, [a - b for a, b in zip(expected_line, expected_signal, strict=True)])


def test_rsi_is_100_without_losses_and_0_without_gains() -> None:
    assert run("rsi", [1.0, 2.0, 3.0, 4.0], 2)[0][2:] == [100.0, 100.0]
    assert run("rsi", [4.0, 3.0, 2.0, 1.0], 2)[0][2:] == [0.0, 0.0]
    assert run("rsi", [5.0, 5.0, 5.0], 2)[0][2:] == [100.0]


def test_crosses() -> None:
    level = [2.5] * 6
    assert run("crosses_above", X, level) == [[0.0, 1.0, 0.0, 1.0, 0.0, 0.0]]
    assert run("crosses_below", X, level) == [[0.0, 0.0, 1.0, 0.0, 0.0, 0.0]]
    # Touching is not crossing until it moves through: 2.5 -> 2.5 -> 3.0 crosses on the third bar.
    assert run("crosses_above", [2.0, 2.5, 3.0], [2.5] * 3) == [[0.0, 0.0, 1.0]]
    # Any na among the four values makes it false.
    assert run("crosses_above", [1.0, NA, 3.0, 1.0, 4.0], [2.5, 2.5, 2.5, NA, 2.5]) == [[0.0] * 5]


def test_barssince_and_valuewhen() -> None:
    assert same(run("barssince", [0.0, 1.0, 0.0, 0.0, 1.0, NA, 0.0])[0], [NA, 0.0, 1.0, 2.0, 0.0, 1.0, 2.0])
    cond = [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    assert same(run("valuewhen", cond, X, 0)[0], [NA, 3.0, 3.0, 5.0, 5.0, 6.0])
    assert same(run("valuewhen", cond, X, 1)[0], [NA, NA, NA, 3.0, 3.0, 5.0])


def test_true_range_and_atr() -> None:
    high, low, close = [10.0, 12.0, 15.0, 14.0], [8.0, 9.0, 14.0, 13.0], [9.0, 11.0, 14.5, 13.5]
    # Bar 0: high - low; bar 1: max(3, |12-9|, |9-9|); bar 2: the gap up, |15 - 11|; bar 3: |13 - 14.5|.
    assert run("tr", high, low, close) == [[2.0, 3.0, 4.0, 1.5]]
    # ATR(2): the mean of the first two, then Wilder's alpha 1/2.
    assert same(run("atr", high, low, close, 2)[0], [NA, 2.5, 3.25, 2.375])


def test_obv_ignores_unchanged_closes() -> None:
    assert run("obv", [1.0, 2.0, 2.0, 1.0, 3.0], [10.0, 20.0, 30.0, 40.0, 50.0]) == [
        [0.0, 20.0, 20.0, -20.0, 30.0]
    ]


def test_supertrend_flips_on_band_breaks() -> None:
    high, low, close = [11.0, 13.0, 12.0, 9.0], [9.0, 11.0, 10.0, 7.0], [10.0, 12.5, 10.5, 7.5]
    line, direction = run("supertrend", high, low, close, 1.0, 1)
    # Starts down on the upper band 12; the close 12.5 breaks it (up, lower band 9, which then holds);
    # the close 7.5 breaks the lower band 9 (down, upper band hl2 + tr = 8 + 3.5).
    assert line == [12.0, 9.0, 9.0, 11.5]
    assert direction == [-1.0, 1.0, 1.0, -1.0]


def test_math() -> None:
    assert same(run("abs", [-2.0, NA, 3.0])[0], [2.0, NA, 3.0])
    assert same(run("log", [math.e, 0.0, -1.0, NA])[0], [1.0, NA, NA, NA])
    assert same(run("sqrt", [9.0, 0.0, -1.0])[0], [3.0, 0.0, NA])
    assert same(run("min", [1.0, 5.0, NA], [2.0, 4.0, 1.0])[0], [1.0, 4.0, NA])
    assert same(run("max", [1.0, 5.0, 1.0], [2.0, 4.0, NA])[0], [2.0, 5.0, NA])
    assert run("round", [2.5, -2.5, 1.4, NA, 1e300], 0)[0][:3] == [3.0, -3.0, 1.0]
    assert run("round", [0.125, 1234.5], 2)[0] == [0.13, 1234.5]
    assert run("round", [1250.0, -1249.0], -2)[0] == [1300.0, -1200.0]
    assert same(run("round", [NA, 1e300], 3)[0], [NA, 1e300])
    assert same(run("nz", [NA, 2.0], 7.5)[0], [7.5, 2.0])


def test_flat_ranges_give_na() -> None:
    flat = [5.0] * 4
    assert same(run("stoch", flat, flat, flat, 2, 1)[0], [NA] * 4)
    assert same(run("cci", flat, flat, flat, 2)[0], [NA] * 4)
    assert same(run("vwap", flat, flat, flat, [0.0] * 4, 2)[0], [NA] * 4)
    assert same(run("stdev", flat, 2)[0], [NA, 0.0, 0.0, 0.0])


@pytest.fixture(params=["synthetic", "ETHUSDT-1h"])
def bars(request: pytest.FixtureRequest) -> pd.DataFrame:
    """OHLCV bars with a plain RangeIndex: a seeded random walk, or real ETH/USDT hours."""
    if request.param == "synthetic":
        rng = np.random.default_rng(7)
        close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, 3000)))
        open_ = np.concatenate([[100.0], close[:-1]])
        spread = close * rng.uniform(0.0, 0.01, 3000)
        return pd.DataFrame(
            {
                "high": np.maximum(open_, close) + spread,
                "low": np.minimum(open_, close) - spread,
                "close": close,
                "volume": rng.uniform(1.0, 100.0, 3000),
            }
        )
    folder: Path = request.getfixturevalue("shared_data")
    return pd.read_csv(folder / "ETHUSDT-1h.csv")


def _window_variance(close: pd.Series, n: int) -> np.ndarray:
    """Exact two-pass population variance of each n-bar window (na for the first n - 1 bars)."""
    windows = np.lib.stride_tricks.sliding_window_view(close.to_numpy(), n)
    return np.concatenate([np.full(n - 1, np.nan), windows.var(axis=1)])


# (operator, params, reference outputs from `ta` in the operator's output order).
REFERENCES: list[tuple[str, tuple[float, ...], Callable[[pd.DataFrame], list[pd.Series]]]] = [
    ("sma", (20,), lambda b: [ta.trend.SMAIndicator(b.close, 20).sma_indicator()]),
    ("ema", (20,), lambda b: [ta.trend.EMAIndicator(b.close, 20).ema_indicator()]),
    ("wma", (20,), lambda b: [ta.trend.WMAIndicator(b.close, 20).wma()]),
    ("roc", (12,), lambda b: [ta.momentum.ROCIndicator(b.close, 12).roc()]),
    ("rsi", (14,), lambda b: [ta.momentum.RSIIndicator(b.close, 14).rsi()]),
    (
        "macd",
        (12, 26, 9),
        lambda b: (m := ta.trend.MACD(b.close, 26, 12, 9)) and [m.macd(), m.macd_signal(), m.macd_diff()],
    ),
    (
        "bbands",
        (20, 2.0),
        lambda b: (
            (m := ta.volatility.BollingerBands(b.close, 20, 2))
            and [m.bollinger_hband(), m.bollinger_mavg(), m.bollinger_lband()]
        ),
    ),
    (
        "atr",
        (14,),
        lambda b: [ta.volatility.AverageTrueRange(b.high, b.low, b.close, 14).average_true_range()],
    ),
    ("adx", (14,), lambda b: [ta.trend.ADXIndicator(b.high, b.low, b.close, 14).adx()]),
    (
        "stoch",
        (14, 3),
        lambda b: (
            (m := ta.momentum.StochasticOscillator(b.high, b.low, b.close, 14, 3))
            and [m.stoch(), m.stoch_signal()]
        ),
    ),
    ("cci", (20,), lambda b: [ta.trend.CCIIndicator(b.high, b.low, b.close, 20, 0.015).cci()]),
    (
        "vwap",
        (14,),
        lambda b: [
            ta.volume.VolumeWeightedAveragePrice(
                b.high, b.low, b.close, b.volume, 14
            ).volume_weighted_average_price()
        ],
    ),
    (
        "keltner",
        (20, 2.0, 10),
        lambda b: (
            (
                m := ta.volatility.KeltnerChannel(
                    b.high, b.low, b.close, 20, 10, original_version=False, multiplier=2
                )
            )
            and [m.keltner_channel_hband(), m.keltner_channel_mband(), m.keltner_channel_lband()]
        ),
    ),
    (
        "donchian",
        (20,),
        lambda b: (
            (m := ta.volatility.DonchianChannel(b.high, b.low, b.close, 20))
            and [m.donchian_channel_hband(), m.donchian_channel_mband(), m.donchian_channel_lband()]
        ),
    ),
    # Two-pass numpy over each window (pandas' online rolling variance loses ~1e-9 on prices near 3,000).
    ("stdev", (20,), lambda b: [pd.Series(np.sqrt(_window_variance(b.close, 20)))]),
    ("variance", (20,), lambda b: [pd.Series(_window_variance(b.close, 20))]),
    ("sum", (20,), lambda b: [b.close.rolling(20).sum()]),
    ("highest", (20,), lambda b: [b.close.rolling(20).max()]),
    ("lowest", (20,), lambda b: [b.close.rolling(20).min()]),
]


@pytest.mark.parametrize(("name", "params", "reference"), REFERENCES, ids=[r[0] for r in REFERENCES])
def test_against_reference(
    bars: pd.DataFrame, name: str, params: tuple[float, ...], reference: Callable
) -> None:  # type: ignore[type-arg]
    op = OPERATORS[name]
    ours = op.batch(*(bars[col].to_numpy() for col in (op.inputs if op.implicit else ("close",))), *params)
    start = 500 if op.recursive else op.first_valid(*params)
    expected = reference(bars)
    assert len(ours) == len(expected)
    for mine, theirs in zip(ours, expected, strict=True):
        np.testing.assert_allclose(mine[start:-1], theirs.to_numpy()[start:-1], rtol=1e-9, atol=1e-9)
    # The warm-up is the first bar where every output is valid.
    all_valid = ~np.any([np.isnan(out) for out in ours], axis=0)
    assert int(np.argmax(all_valid)) == op.first_valid(*params)


def test_obv_steps_match_reference_where_the_close_moves(bars: pd.DataFrame) -> None:
    (ours,) = OPERATORS["obv"].batch(bars.close.to_numpy(), bars.volume.to_numpy())
    theirs = ta.volume.OnBalanceVolumeIndicator(bars.close, bars.volume).on_balance_volume().to_numpy()
    moved = np.diff(bars.close.to_numpy()) != 0.0
    np.testing.assert_allclose(np.diff(ours)[moved], np.diff(theirs)[moved], rtol=1e-9)
    assert (np.diff(ours)[~moved] == 0.0).all()
