"""Benchmark of the operator library: batch kernels over 1,000,000 bars, streaming latency of a 20-node graph.

Run: .venv/bin/python tests/bench/bench_ops.py
The 1,000,000-bar series is built from ../shared/data/BTCUSDT-1h.csv as its README describes (drift removed,
tiled); without that file a seeded synthetic walk is used and labelled so. Figures are printed beside a
baseline measured in the same run: a plain numpy cumsum SMA(20) over the same closes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from bench_data import BARS, build_series

from runtime.ops.registry import OPERATORS

# Repository root.
ROOT = Path(__file__).resolve().parents[2]
# Bars timed by the streaming benchmark (after a warm-up of 1,000 bars).
STREAM_BARS = 50_000


def load_bars() -> tuple[dict[str, np.ndarray], str]:
    """The 1,000,000-bar OHLCV columns (the shared recipe of bench_data) and a label saying what they are."""
    path = Path(os.environ.get("STRAT_DATA_DIR", ROOT.parent / "shared" / "data")) / "BTCUSDT-1h.csv"
    if path.exists():
        series = build_series(path)
        cols = {name: getattr(series, name) for name in ("open", "high", "low", "close", "volume")}
        return cols, f"real BTCUSDT-1h, detrended and tiled to {len(series):,} bars"
    rng = np.random.default_rng(1)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, BARS)))
    spread = close * rng.uniform(0.0, 0.01, BARS)
    cols = {"open": close, "high": close + spread, "low": close - spread, "close": close}
    cols["volume"] = rng.uniform(1.0, 100.0, BARS)
    return cols, f"SYNTHETIC random walk of {BARS:,} bars (../shared/data absent)"


def best_of(runs: int, fn: Callable[[], object]) -> float:
    """Best wall time of `runs` calls, in seconds."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def numpy_sma(close: np.ndarray, n: int) -> np.ndarray:
    """Baseline: a plain numpy cumsum SMA."""
    csum = np.cumsum(np.concatenate([[0.0], close]))
    out = np.full(close.shape[0], np.nan)
    out[n - 1 :] = (csum[n:] - csum[:-n]) / n
    return out


def operator_inputs(name: str, cols: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Input arrays for an operator: the bars' columns, close for a source, a close-above-open condition."""
    extra = {"cond": (cols["close"] > cols["open"]).astype(float), "b": numpy_sma(cols["close"], 20)}
    return [cols.get(inp, extra.get(inp, cols["close"])) for inp in OPERATORS[name].inputs]


def bench_batch(cols: dict[str, np.ndarray]) -> None:
    """Time each operator's batch kernel at its defaults (20 for a required length, 1 for offset)."""
    baseline = best_of(3, lambda: numpy_sma(cols["close"], 20))
    print(f"baseline numpy cumsum SMA(20): {baseline * 1e3:8.2f} ms  {BARS / baseline / 1e6:8.1f} M bars/s")
    print(f"{'operator':<14} {'ms':>8} {'M bars/s':>9} {'x baseline':>10}")
    for name, op in OPERATORS.items():
        params = [(1 if name == "offset" else 20) if default is None else default for _, default in op.params]
        inputs = operator_inputs(name, cols)
        # Compile (or load from the numba cache) on a short series first: compile time is not run time.
        op.batch(*(x[:100] for x in inputs), *params)
        seconds = best_of(3, lambda op=op, inputs=inputs, params=params: op.batch(*inputs, *params))
        print(f"{name:<14} {seconds * 1e3:8.2f} {BARS / seconds / 1e6:9.1f} {seconds / baseline:10.2f}")


def bench_stream(cols: dict[str, np.ndarray]) -> None:
    """Per-bar latency of a 20-node streaming graph (indicators, crosses and derived nodes)."""
    ops = OPERATORS
    nodes = [ops[name].stream(*ops[name].bind(*params)) for name, params in GRAPH]
    sma_fast, sma_slow, cross, ema, rsi, rsi_cross, atr, bb, macd, hi, lo = nodes[:11]
    stoch, adx, st, vwap, obv, sd, prev, since, top = nodes[11:]
    h, lo_, c, v = (cols[k][: STREAM_BARS + 1000].tolist() for k in ("high", "low", "close", "volume"))
    latencies = []
    clock = time.perf_counter_ns
    for i in range(STREAM_BARS + 1000):
        hi_i, low_i, close_i, vol_i = h[i], lo_[i], c[i], v[i]
        start = clock()
        (fast,) = sma_fast.update(close_i)
        (slow,) = sma_slow.update(close_i)
        (crossed,) = cross.update(fast, slow)
        (e,) = ema.update(close_i)
        (r,) = rsi.update(close_i)
        rsi_cross.update(r, 30.0)
        atr.update(hi_i, low_i, close_i)
        bb.update(close_i)
        macd.update(close_i)
        hi.update(hi_i)
        lo.update(low_i)
        stoch.update(hi_i, low_i, close_i)
        adx.update(hi_i, low_i, close_i)
        st.update(hi_i, low_i, close_i)
        vwap.update(hi_i, low_i, close_i, vol_i)
        obv.update(close_i, vol_i)
        sd.update(close_i)
        prev.update(close_i)
        since.update(crossed)
        top.update(fast, e)
        if i >= 1000:
            latencies.append(clock() - start)
    micros = np.array(latencies) / 1e3
    p50, p99, worst = np.percentile(micros, 50), np.percentile(micros, 99), micros.max()
    print(
        f"streaming 20-node graph over {STREAM_BARS:,} bars: "
        f"p50 {p50:.1f} µs, p99 {p99:.1f} µs, max {worst:.1f} µs"
    )
    print(f"  p99 vs the 1 ms target: {p99 / 1000:.3f}x")


# The 20 nodes of the streaming benchmark, in evaluation order: (operator, params).
GRAPH: list[tuple[str, tuple[float, ...]]] = [
    ("sma", (10,)),
    ("sma", (30,)),
    ("crosses_above", ()),
    ("ema", (20,)),
    ("rsi", ()),
    ("crosses_above", ()),
    ("atr", ()),
    ("bbands", ()),
    ("macd", ()),
    ("highest", (20,)),
    ("lowest", (20,)),
    ("stoch", ()),
    ("adx", ()),
    ("supertrend", ()),
    ("vwap", ()),
    ("obv", ()),
    ("stdev", (20,)),
    ("offset", (1,)),
    ("barssince", ()),
    ("max", ()),
]


def main() -> None:
    """Run both benchmarks and print the figures."""
    cols, label = load_bars()
    print(f"data: {label}")
    bench_batch(cols)
    bench_stream(cols)


if __name__ == "__main__":
    main()
