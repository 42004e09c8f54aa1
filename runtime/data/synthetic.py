"""A seeded synthetic market for tests and offline demos; its output is always flagged synthetic.

Log returns follow a GARCH(1,1) process (volatility clustering) plus a slowly switching trend regime
and rare jumps; bars get wicks from the bar's volatility, and volume rises with volatility and with the
size of the move, around a daily cycle. The same seed, market and range give the same candles.
"""

from __future__ import annotations

import zlib

import numpy as np

from dsl.units import timeframe_ms
from runtime.data.candles import Candles

# GARCH(1,1) persistence parameters: weight of the last squared shock and of the last variance.
_ALPHA, _BETA = 0.08, 0.90
# Long-run volatility per square root of a day, as a fraction (3% daily, crypto-like).
_DAILY_VOL = 0.03
# Mean bars between trend regime switches, and the trend's drift in long-run sigmas per bar.
_REGIME_BARS, _TREND_SIGMAS = 500.0, 0.05
# Jump probability per bar and jump size in long-run sigmas.
_JUMP_PROB, _JUMP_SIGMAS = 0.002, 8.0
_DAY_MS = 86_400_000  # one day, ms


def seed_for(symbol: str, seed: int = 0) -> int:
    """A stable per-market seed, so that different symbols get different (but repeatable) markets."""
    return zlib.crc32(symbol.encode()) ^ seed


def generate(
    symbol: str,
    timeframe: str,
    start_ms: int,
    bars: int,
    *,
    seed: int = 0,
    price: float = 100.0,
) -> Candles:
    """Generate `bars` closed candles starting at `start_ms` (rounded up to the timeframe), seeded."""
    step = timeframe_ms(timeframe)
    rng = np.random.default_rng(seed_for(symbol, seed))
    sigma = _DAILY_VOL * np.sqrt(step / _DAY_MS)  # long-run per-bar volatility
    shocks = rng.standard_normal(bars)
    # GARCH variance recursion: today's variance from yesterday's shock and variance.
    omega = sigma**2 * (1 - _ALPHA - _BETA)
    var = np.empty(bars)
    ret = np.empty(bars)
    v = sigma**2
    for i in range(bars):
        var[i] = v
        ret[i] = np.sqrt(v) * shocks[i]
        v = omega + _ALPHA * ret[i] ** 2 + _BETA * v
    # Trend regimes: a sign (+1 up, -1 down, 0 flat) that switches at random, adding a drift.
    switches = np.cumsum(rng.random(bars) < 1 / _REGIME_BARS)
    regime = rng.choice([-1.0, 0.0, 1.0], size=int(switches[-1]) + 1 if bars else 1)[switches]
    jumps = (rng.random(bars) < _JUMP_PROB) * rng.standard_normal(bars) * _JUMP_SIGMAS * sigma
    ret = ret + regime * _TREND_SIGMAS * sigma + jumps
    close = price * np.exp(np.cumsum(ret))
    open_ = np.r_[price, close[:-1]]
    # Wicks: each side extends beyond the body by a half-normal multiple of the bar's volatility.
    vol_bar = np.sqrt(var)
    high = np.maximum(open_, close) * np.exp(np.abs(rng.standard_normal(bars)) * 0.5 * vol_bar)
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.standard_normal(bars)) * 0.5 * vol_bar)
    time = (-(-start_ms // step) + np.arange(bars, dtype=np.int64)) * step
    # Volume: lognormal noise scaled by relative volatility, move size and a daily activity cycle.
    hour = (time % _DAY_MS) / _DAY_MS * 2 * np.pi
    activity = 1 + 0.3 * np.sin(hour - np.pi / 2)
    volume = (
        1_000.0
        * np.sqrt(step / 60_000)
        * activity
        * (vol_bar / sigma)
        * (1 + np.abs(ret) / sigma)
        * rng.lognormal(0, 0.4, bars)
    )
    return Candles.from_arrays(
        "synthetic", symbol, timeframe, time, [open_, high, low, close, volume], synthetic=True
    )


def generate_range(
    symbol: str, timeframe: str, start_ms: int, end_ms: int, *, seed: int = 0, price: float = 100.0
) -> Candles:
    """Generate the closed candles whose open time lies in [start_ms, end_ms)."""
    step = timeframe_ms(timeframe)
    first = -(-start_ms // step) * step
    bars = max(0, -(-(end_ms - first) // step))
    return generate(symbol, timeframe, first, bars, seed=seed, price=price)
