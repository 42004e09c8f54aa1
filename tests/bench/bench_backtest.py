"""Benchmark of the simulated broker: S1 over 1,000,000 bars beside a bare numpy S1, and a 3-sleeve portfolio.

Run: .venv/bin/python tests/bench/bench_backtest.py   (needs ../shared/data or $STRAT_DATA_DIR)
Prints times (best of several runs), ratios to the bare numpy S1 measured in the same run, and memory.
"""

from __future__ import annotations

import os
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "broker"))

from sim_reference import bare_s1, load_csv, million_bars, s1_signals  # noqa: E402
from test_sim_parity import demo_like, replay  # noqa: E402

from runtime.broker import simulator as sim  # noqa: E402
from runtime.broker.simulator import simulate  # noqa: E402
from runtime.plan.model import Execution, PortfolioInput, SleeveInput  # noqa: E402


def best(fn: Callable[[], object], runs: int = 5) -> float:
    """Best wall time of `runs` calls, seconds."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def s1(bars: dict[str, np.ndarray], el: np.ndarray, xl: np.ndarray, tf: str) -> PortfolioInput:
    """S1 as a one-sleeve portfolio."""
    none = np.zeros(len(el), dtype=bool)
    sleeve = SleeveInput(
        "main", "s1", "BTC/USDT", tf, 1.0, bars["time"], bars["open"], bars["high"], bars["low"],
        bars["close"], bars["volume"], el, xl, none, none,
        execution=Execution(fee_maker=0.001, fee_taker=0.001),
    )  # fmt: skip
    return PortfolioInput(10_000.0, "USDT", (sleeve,))


def kernel_only(pf: PortfolioInput) -> None:
    """The simulation without building the result objects (private API, for the breakdown only)."""
    line = sim._time_line(pf.sleeves)
    engine = sim._Engine(pf, len(line.times), 32_000)
    engine.ensure_room(len(line.times))
    engine.run(line, 0, len(line.times), sim._bar_arrays(pf.sleeves))


def main() -> None:
    """Run every measurement and print it."""
    data = Path(os.environ.get("STRAT_DATA_DIR", ROOT.parent / "shared" / "data"))
    btc = load_csv(data / "BTCUSDT-1h.csv")
    mb = million_bars(btc)

    def bare() -> tuple[int, float, float]:
        """Bare numpy S1: signals and account from the in-memory arrays."""
        el, xl = s1_signals(mb["close"])
        return bare_s1(mb["open"], mb["close"], el, xl, 0.001, 10_000.0)

    el, xl = s1_signals(mb["close"])
    pf = s1(mb, el, xl, "1m")
    t0 = time.perf_counter()
    result = simulate(pf)  # first call: loads (or compiles) the kernel
    first = time.perf_counter() - t0
    entries, final, _ = bare()
    print(f"S1 1,000,000 bars: engine {len(result.trades)} entries, final equity {result.equity[-1]:,.2f}; "
          f"bare numpy {entries} entries, {final:,.2f}")  # fmt: skip
    t_bare = best(bare)

    def engine() -> None:
        """Signals as plain numpy (the graph's job) plus the simulation to a BacktestResult."""
        a, b = s1_signals(mb["close"])
        simulate(s1(mb, a, b, "1m"))

    t_engine = best(engine)
    t_sim = best(lambda: simulate(pf))
    print(f"  first simulate (kernel load/compile) {first * 1e3:8.1f} ms")
    print(f"  bare numpy S1                          {t_bare * 1e3:8.1f} ms")
    print(
        f"  signals + simulate                     {t_engine * 1e3:8.1f} ms   ratio {t_engine / t_bare:.2f}x"
    )
    print(f"  simulate only                          {t_sim * 1e3:8.1f} ms   ratio {t_sim / t_bare:.2f}x")
    t_kernel = best(lambda: kernel_only(pf))
    print(
        f"  of which the compiled loop             {t_kernel * 1e3:8.1f} ms   ratio {t_kernel / t_bare:.2f}x"
    )
    print(f"  of which trade/order tables and rest   {(t_sim - t_kernel) * 1e3:8.1f} ms")
    tracemalloc.start()
    simulate(pf)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"  traced peak allocation of simulate     {peak / 2**20:8.1f} MB")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  process peak RSS so far                {rss:8.1f} MB")

    bars = [load_csv(data / f"{s}USDT-1h.csv") for s in ("BTC", "ETH", "SOL")]
    start = bars[1]["time"][0]
    btc_part = {k: v[bars[0]["time"] >= start] for k, v in bars[0].items()}
    demo = demo_like(btc_part, bars[1], bars[2])
    demo_result = simulate(demo)
    n = sum(len(s.time) for s in demo.sleeves)
    print(f"3-sleeve portfolio (BTC/ETH/SOL 1h, {n} bars, stops, trailing, risk rules): "
          f"{len(demo_result.trades)} trades, {len(demo_result.risk_events)} risk events")  # fmt: skip
    print(f"  simulate                               {best(lambda: simulate(demo)) * 1e3:8.1f} ms")
    print(f"  replay (Simulator.step per point)      {best(lambda: replay(demo), 1) * 1e3:8.1f} ms")
    full = s1(btc, *s1_signals(btc["close"]), "1h")
    print(
        f"S1 on real BTC 1h ({len(btc['close'])} bars): simulate {best(lambda: simulate(full)) * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    main()
