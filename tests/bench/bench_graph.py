"""Benchmark of the indicator graph: batch throughput per library strategy, streaming per-bar latency.

Run: `python tests/bench/bench_graph.py`. Prints figures, never asserts a time.

1. The batch graph (decisions and named series) of every library strategy over 1,000,000 bars built as
   ../shared/data/README.md describes (BTCUSDT-1h detrended and tiled), in bars per second, beside a bare
   numpy SMA(10)/SMA(30) cross computed in the same run.
2. The streaming driver's per-bar latency for a 20-node graph (p50 / p99 / max over 50,000 bars; the
   target is p99 under 1 ms), beside the batch time per bar of the same graph.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np
from bench_data import best_of as best
from bench_data import build_series

from dsl.checker import check_file, check_source
from runtime.data.candles import Candles
from runtime.graph.compiler import compile_strategy
from runtime.graph.drivers import Feeds, StreamDriver, run_batch

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("STRAT_DATA_DIR", ROOT.parent / "shared" / "data"))
BARS = 1_000_000  # bars of the benchmark series


def numpy_cross(close: np.ndarray) -> int:
    """Bare numpy SMA 10/30 cross: the baseline."""
    csum = np.cumsum(np.insert(close, 0, 0.0))
    fast = (csum[10:] - csum[:-10]) / 10
    slow = (csum[30:] - csum[:-30]) / 30
    fast = fast[20:]
    above = fast > slow
    return int(np.count_nonzero(above[1:] & ~above[:-1]))


def batch_throughput(series: Candles) -> None:
    """Bars per second of each library strategy's whole batch graph."""
    baseline = best(lambda: numpy_cross(series.close))
    print(
        f"baseline: bare numpy SMA 10/30 cross over {BARS:,} bars: {baseline * 1e3:.1f} ms "
        f"({BARS / baseline / 1e6:.1f} M bars/s)"
    )
    for path in sorted((ROOT / "library").glob("*.strat")):
        program = check_file(path).program
        if program is None or not program.strategies:
            continue
        ir = program.strategies[0]
        # Every clock reads the same minute series relabelled to its timeframe, so the graph runs as is.
        graph = compile_strategy(ir)
        feeds = Feeds(graph, dict.fromkeys(graph.clocks, series))
        keep = [n for _, n in graph.columns] + list(graph.rules.values())
        run_batch(graph, feeds, keep)  # compile or load the numba kernels first
        seconds = best(lambda graph=graph, feeds=feeds, keep=keep: run_batch(graph, feeds, keep))
        print(
            f"  {path.stem:<22} {len(graph.nodes):>3} nodes  {seconds * 1e3:8.1f} ms  "
            f"{BARS / seconds / 1e6:6.1f} M bars/s  ({seconds / baseline:.1f}x baseline)"
        )


TWENTY = """strat 1
strategy twenty:
    symbol: "BINANCE:BTC/USDT"
    timeframe: 1h
    f = ema(close, 12)
    s = ema(close, 26)
    r = rsi(close, 14)
    a = atr(14)
    bb = bbands(close, 20, 2.0)
    hi = highest(high, 20)
    lo = lowest(low, 20)
    up = f > s and r < 70 and close > bb.mid
    entry long when f crosses above s and up
    exit  long when close < lo[1] or r > 80
    stop_loss: 2 * a
"""


def stream_latency(series: Candles, bars: int = 50_000) -> None:
    """Per-bar latency of the streaming driver on a graph of about 20 nodes."""
    result = check_source(TWENTY, "twenty.strat")
    assert result.program is not None, result.render()
    graph = compile_strategy(result.program.strategies[0])
    driver = StreamDriver(graph)
    fields = ("open", "high", "low", "close", "volume")
    columns = [getattr(series, f)[:bars].tolist() for f in fields]
    rules = list(graph.rules.values())
    samples = []
    for i in range(bars):
        bar = {f: col[i] for f, col in zip(fields, columns, strict=True)}
        began = time.perf_counter_ns()
        driver.push(0, bar)
        _ = [driver.values[r] for r in rules]
        samples.append(time.perf_counter_ns() - began)
    samples.sort()
    p50, p99 = statistics.median(samples) / 1e3, samples[int(0.99 * len(samples))] / 1e3
    feeds = Feeds(graph, {graph.clocks[0]: series})
    batch = best(lambda: run_batch(graph, feeds, rules)) / BARS * 1e6
    print(
        f"streaming, {len(graph.nodes)}-node graph, {bars:,} bars: p50 {p50:.1f} us, p99 {p99:.1f} us, "
        f"max {samples[-1] / 1e3:.0f} us (target p99 < 1000 us); batch {batch:.3f} us per bar"
    )


def main() -> None:
    """Run both benchmarks."""
    if not (DATA / "BTCUSDT-1h.csv").exists():
        print(f"no data at {DATA}; set STRAT_DATA_DIR")
        return
    series = build_series(DATA / "BTCUSDT-1h.csv")
    batch_throughput(series)
    stream_latency(series)


if __name__ == "__main__":
    main()
