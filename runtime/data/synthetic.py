"""A seeded synthetic market for tests and offline demos; its output is always flagged synthetic.

Each (symbol, seed) is ONE market: a path of 1-minute candles on the UTC grid, the same whatever range or
timeframe is asked for, and every timeframe is that path resampled (so the 5m and 1h candles of a coin
agree exactly, and multi-timeframe specs mean something on it). Second bars are drawn inside each minute,
bridged to its open and close and touching its high and low, so that they resample to it exactly. The
path is addressable by day: the day level (volatility, trend regime, jumps, daily return) is generated
from a fixed origin day, which costs a few thousand draws, and each UTC day's minutes (and seconds) come
from their own seeded generator, tied by a bridge to exactly the day's return. So a range costs work in
proportion to its length, not to its distance from the origin.

Stylised facts: the daily variance follows GARCH(1,1) (volatility clustering), a slowly switching trend
regime adds drift, rare jumps give fat tails; within a day, volatility and volume follow a daily activity
cycle and an hourly random intensity, bars get wicks from their volatility, and volume rises with the size
of the move. The same seed and market always give the same candles.
"""

from __future__ import annotations

import functools
import math
import zlib

import numpy as np

from dsl.units import timeframe_ms
from runtime.data.candles import Candles
from runtime.data.resample import period_start, resample

# GARCH(1,1) persistence of the daily variance: weight of the last squared shock and of the last variance.
_ALPHA, _BETA = 0.08, 0.90
# Long-run volatility of a day, as a fraction (3% daily, crypto-like).
_DAILY_VOL = 0.03
# Mean days between trend regime switches, and the trend's drift in long-run daily sigmas per day.
_REGIME_DAYS, _TREND_SIGMAS = 20.0, 0.25
# Jump probability per minute and jump size in minute sigmas (fat tails at every timeframe).
_JUMP_PROB, _JUMP_SIGMAS = 0.0005, 12.0
# Spread of the hourly volatility intensity (lognormal sigma) and its persistence from hour to hour.
_HOUR_SPREAD, _HOUR_PERSIST = 0.5, 0.7
# Daily pull of the log price back to the starting price (a half-life of about a year).
_PULL = math.log(2) / 365
_DAY_MS = 86_400_000  # one day, ms
_MINUTE_MS = 60_000  # the base grid, ms
_MINUTES = 1_440  # minutes per day
_SECONDS = 60  # second bars per minute
# The days every market spans (2000-01-01 to 2100-01-01 as UTC day numbers); a range outside extends it.
_ORIGIN_DAY, _HORIZON_DAY = 10_957, 47_482


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
    """`bars` closed candles from `start_ms` (rounded up to the timeframe's grid) of the market's path."""
    step = timeframe_ms(timeframe)
    first = _grid_start(start_ms, timeframe)
    return generate_range(symbol, timeframe, first, first + bars * step, seed=seed, price=price)


def generate_range(
    symbol: str, timeframe: str, start_ms: int, end_ms: int, *, seed: int = 0, price: float = 100.0
) -> Candles:
    """The market's closed `timeframe` candles whose open time lies in [start_ms, end_ms)."""
    step = timeframe_ms(timeframe)
    first = _grid_start(start_ms, timeframe)
    if end_ms <= first:
        return Candles.empty("synthetic", symbol, timeframe, synthetic=True)
    # Whole days covering every period of the range (a week or 3 days may start before `first`'s day).
    d0 = first // _DAY_MS
    d1 = -(-(first + -(-(end_ms - first) // step) * step) // _DAY_MS)
    minutes = _minutes(symbol, seed, price, d0, d1)
    if step < _MINUTE_MS:
        series = _seconds(minutes, symbol, seed, first, end_ms)
    else:
        series = resample(minutes, timeframe) if timeframe != "1m" else minutes
    keep = (series.time >= first) & (series.time < end_ms)
    return series.take(keep)


def _grid_start(start_ms: int, timeframe: str) -> int:
    """The first period start of `timeframe` at or after `start_ms`, UTC ms."""
    step = timeframe_ms(timeframe)
    begin = int(period_start(np.array([start_ms], dtype=np.int64), timeframe)[0])
    return begin if begin == start_ms else begin + step


@functools.lru_cache(maxsize=16)
def _days(symbol: str, seed: int, origin: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Day level of the market for days origin..horizon-1: (log level at each day's open, each day's sigma).

    The level has one more entry (the close of the last day). The draws depend only on the market and
    the span, never on the range asked for, so every range reads the same path (cached per market).
    """
    n = horizon - origin
    rng = np.random.default_rng([seed_for(symbol, seed), 0])
    shocks = rng.standard_normal(n).tolist()
    # Trend regimes: a sign (+1 up, -1 down, 0 flat) that switches at random, adding a drift.
    switches = np.cumsum(rng.random(n) < 1 / _REGIME_DAYS)
    regime = rng.choice([-1.0, 0.0, 1.0], size=int(switches[-1]) + 1)[switches]
    drift = (regime * _TREND_SIGMAS * _DAILY_VOL).tolist()
    # GARCH variance recursion over days (today's variance from yesterday's shock and variance), and the
    # log level, pulled slowly back to the starting price so that decades of drift stay in a sane range.
    omega = _DAILY_VOL**2 * (1 - _ALPHA - _BETA)
    var = [0.0] * n
    level = [0.0] * (n + 1)
    v, x = _DAILY_VOL**2, 0.0
    for i in range(n):
        var[i], level[i] = v, x
        x += math.sqrt(v) * shocks[i] + drift[i] - _PULL * x
        v = omega + _ALPHA * v * shocks[i] ** 2 + _BETA * v
    level[n] = x
    return np.array(level), np.sqrt(np.array(var))


def _minutes(symbol: str, seed: int, price: float, d0: int, d1: int) -> Candles:
    """The 1-minute candles of days d0..d1-1 (each day bridged to the day level's return)."""
    origin = min(_ORIGIN_DAY, d0)
    level, sigma = _days(symbol, seed, origin, max(_HORIZON_DAY, d1))
    days = d1 - d0
    # Each day's draws come from its own generator (the path is addressable by day): rows are the return
    # shock, jump size, two wick sizes and the volume noise; then the jump coin and the hourly intensity.
    normal = np.empty((5, days, _MINUTES))
    coin = np.empty((days, _MINUTES))
    hourly = np.empty((days, 24))
    base = seed_for(symbol, seed)
    for k, day in enumerate(range(d0, d1)):
        rng = np.random.default_rng([base, 1, day])
        normal[:, k] = rng.standard_normal((5, _MINUTES))
        coin[k] = rng.random(_MINUTES)
        hourly[k] = rng.standard_normal(24)
    # Hourly intensity: a persistent lognormal factor (AR(1) over the hours), so volatility clusters
    # within a day too; times the daily activity cycle, normalised to the day's variance.
    for j in range(1, 24):
        hourly[:, j] = _HOUR_PERSIST * hourly[:, j - 1] + np.sqrt(1 - _HOUR_PERSIST**2) * hourly[:, j]
    cycle = 1 + 0.3 * np.sin(np.arange(_MINUTES) / _MINUTES * 2 * np.pi - np.pi / 2)
    weight = cycle * np.repeat(np.exp(_HOUR_SPREAD * hourly), 60, axis=1)
    weight /= np.sqrt(np.mean(weight**2, axis=1, keepdims=True))
    day_sigma = sigma[d0 - origin : d1 - origin, None]
    scale = day_sigma / np.sqrt(_MINUTES) * weight  # each minute's sigma
    ret = scale * normal[0] + (coin < _JUMP_PROB) * normal[1] * _JUMP_SIGMAS * scale
    # The bridge: spread the difference to the day's return over the minutes by their variance.
    target = np.diff(level[d0 - origin : d1 - origin + 1])[:, None]
    share = scale**2 / np.sum(scale**2, axis=1, keepdims=True)
    ret -= share * (np.sum(ret, axis=1, keepdims=True) - target)
    log_close = (level[d0 - origin : d1 - origin, None] + np.cumsum(ret, axis=1)).ravel()
    log_open = np.r_[level[d0 - origin], log_close[:-1]]
    open_, close = price * np.exp(log_open), price * np.exp(log_close)
    high = np.maximum(open_, close) * np.exp((np.abs(normal[2]) * 0.5 * scale).ravel())
    low = np.minimum(open_, close) * np.exp((-np.abs(normal[3]) * 0.5 * scale).ravel())
    # Volume: busier minutes (higher intensity, bigger moves) trade more. Rounded to whole thousandths like
    # an exchange's lot sizes: sums over any grouping of minutes are then exact, so a 1h candle's volume is
    # the same resampled from 1m or from 5m.
    noise = np.exp(0.4 * normal[4])
    volume = np.round((20.0 * weight * noise * (1 + np.abs(ret) / scale)).ravel(), 3)
    time = (d0 * _MINUTES + np.arange(days * _MINUTES, dtype=np.int64)) * _MINUTE_MS
    return Candles.from_arrays(
        "synthetic", symbol, "1m", time, [open_, high, low, close, volume], synthetic=True
    )


def _seconds(minutes: Candles, symbol: str, seed: int, start_ms: int, end_ms: int) -> Candles:
    """The 1-second candles of the minutes that overlap [start_ms, end_ms), each minute resampling to itself.

    Each minute's seconds are a random walk bridged from its open to its close and kept inside its range;
    the seconds where the walk peaks and bottoms touch the minute's high and low, and its volume (whole
    thousandths) is split into whole thousandths, so 1s resampled to 1m gives the minute bit for bit. The
    draws come from one generator per UTC day, so a minute's seconds never depend on the range asked for.
    """
    # Minutes overlapping the range, as indices into `minutes` (whole days, the first starting at row 0).
    first = int(np.searchsorted(minutes.time, start_ms // _MINUTE_MS * _MINUTE_MS))
    last = int(np.searchsorted(minutes.time, end_ms))
    parts = []
    for k in range(first // _MINUTES, (last - 1) // _MINUTES + 1):
        # The whole day's draws (the path is addressable by day); then only the minutes in the range.
        day = int(minutes.time[k * _MINUTES]) // _DAY_MS
        draws = np.random.default_rng([seed_for(symbol, seed), 2, day]).standard_normal(
            (4, _MINUTES, _SECONDS)
        )
        lo, hi = max(first, k * _MINUTES), min(last, (k + 1) * _MINUTES)
        rows = draws[:, lo - k * _MINUTES : hi - k * _MINUTES]
        parts.append(_split_minutes(minutes.take(slice(lo, hi)), *rows))
    time = np.concatenate([p[0] for p in parts])
    columns = list(np.concatenate([p[1] for p in parts], axis=1))
    return Candles.from_arrays("synthetic", minutes.symbol, "1s", time, columns, synthetic=True)


def _split_minutes(
    m: Candles, shock: np.ndarray, wick_up: np.ndarray, wick_down: np.ndarray, share: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Second bars of the minutes `m` from their draws (rows: minutes): open times and the five columns."""
    o, h, lw, c = (x[:, None] for x in (m.open, m.high, m.low, m.close))
    # Each second's sigma: from the minute's range, scaled so that the seconds' realised variance adds up
    # to about the minutes' (1.6 measured: 0.98 of it over five days).
    sigma = (np.log(h) - np.log(lw)) / (1.6 * np.sqrt(_SECONDS))
    walk = np.cumsum(shock * sigma, axis=1)
    frac = np.arange(1, _SECONDS + 1) / _SECONDS
    bridge = walk - frac * walk[:, -1:] + frac * (np.log(c) - np.log(o))
    close = np.clip(o * np.exp(bridge), lw, h)
    close[:, -1] = m.close
    open_ = np.concatenate([o, close[:, :-1]], axis=1)
    high = np.minimum(np.maximum(open_, close) * np.exp(np.abs(wick_up) * 0.5 * sigma), h)
    low = np.maximum(np.minimum(open_, close) * np.exp(-np.abs(wick_down) * 0.5 * sigma), lw)
    # The extremes of the minute happen in the seconds where the walk peaks and bottoms.
    rows = np.arange(len(m))
    high[rows, np.argmax(high, axis=1)] = m.high
    low[rows, np.argmin(low, axis=1)] = m.low
    # Volume in whole thousandths, split by weight with the remainder to the largest fractions (exact sums).
    total = np.rint(m.volume * 1_000)[:, None]
    weight = np.exp(0.5 * share) * (1 + np.abs(shock))
    quota = weight / weight.sum(axis=1, keepdims=True) * total
    units = np.floor(quota)
    rank = np.argsort(np.argsort(units - quota, axis=1, kind="stable"), axis=1, kind="stable")
    units += rank < (total - units.sum(axis=1, keepdims=True))
    time = (m.time[:, None] + np.arange(_SECONDS) * 1_000).ravel()
    return time, np.stack([x.ravel() for x in (open_, high, low, close, units / 1_000)])
