"""Benchmark of a long replay's memory: S1 stepped bar by bar through `Simulator` over 100k and 1M bars.

Run: .venv/bin/python tests/bench/bench_replay_memory.py   (needs ../shared/data or $STRAT_DATA_DIR)

Each length runs in its own process (so each peak is its own): the 1-minute series of ../shared/data/
README.md (BTC 1h detrended, tiled) with S1's decisions, fed to `Simulator.step` one bar at a time from a
generator (no list of updates is built). Printed per length: the peak RSS once the inputs are built (the
candles, the decisions, the simulator and numba's loaded code), after stepping every bar, and after
`finish()` (which copies the outputs into the result), what stepping added, and the stepping time. The
simulator keeps only each sleeve's current bar, so what grows is its outputs: 32 bytes per point (close
time, equity, cash, exposure, kept for `finish()`) plus the trade and order rows; the growth from 100k to
1M bars should be that and no more.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "broker"))

from sim_reference import load_csv, million_bars, s1_signals  # noqa: E402

from runtime.broker.simulator import BarUpdate, Simulator  # noqa: E402
from runtime.plan.model import Execution, PortfolioInput, SleeveInput  # noqa: E402

LENGTHS = (100_000, 1_000_000)  # bars replayed, one process each


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker(n: int) -> dict[str, float]:
    """Replay n bars of S1 through a Simulator; return peak RSS before / after (MB), seconds and equity."""
    data = Path(os.environ.get("STRAT_DATA_DIR", ROOT.parent / "shared" / "data"))
    bars = million_bars(load_csv(data / "BTCUSDT-1h.csv"), n)
    el, xl = s1_signals(bars["close"])
    none = np.zeros(n, dtype=bool)
    sleeve = SleeveInput(
        "main", "s1", "BTC/USDT", "1m", 1.0, bars["time"], bars["open"], bars["high"], bars["low"],
        bars["close"], bars["volume"], el, xl, none, none,
        execution=Execution(fee_maker=0.001, fee_taker=0.001),
    )  # fmt: skip
    portfolio = PortfolioInput(10_000.0, "USDT", (sleeve,))
    # Warm-up on a throwaway simulator: loads numba's compiled step and finish (tens of MB, not the replay's).
    first = [a[0].item() for a in (bars["time"], bars["open"], bars["high"], bars["low"], bars["close"])]
    warm = Simulator(portfolio)
    warm.step(BarUpdate("main", *first, 1.0))
    warm.finish()
    del warm
    sim = Simulator(portfolio)
    arrays = [bars[k] for k in ("time", "open", "high", "low", "close", "volume")] + [el, xl]
    before = peak_rss_mb()
    start = time.perf_counter()
    # Plain Python values, converted 10,000 bars at a time (a whole list per column would dwarf the rest).
    for i in range(0, n, 10_000):
        chunk = [a[i : i + 10_000].tolist() for a in arrays]
        for t, o, h, lo, c, v, e, x in zip(*chunk, strict=True):
            sim.step(BarUpdate("main", t, o, h, lo, c, v, e, x))
    seconds = time.perf_counter() - start
    stepped = peak_rss_mb()
    result = sim.finish()
    return {
        "before": before,
        "stepped": stepped,
        "after": peak_rss_mb(),
        "seconds": seconds,
        "trades": len(result.trade_table),
        "equity": float(result.equity[-1]),
    }


def main() -> None:
    """Run each length in a subprocess and print its figures."""
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print(json.dumps(worker(int(sys.argv[2]))))
        return
    print("S1 replayed bar by bar through Simulator (peak RSS, MB)")
    for n in LENGTHS:
        run = subprocess.run(
            [sys.executable, __file__, "--worker", str(n)], capture_output=True, text=True, check=True
        )
        f = json.loads(run.stdout)
        print(
            f"  {n:>9,} bars: inputs built {f['before']:6.1f}   stepped {f['stepped']:6.1f}   "
            f"finish() {f['after']:6.1f}   replay added {f['stepped'] - f['before']:5.1f}   "
            f"{f['seconds']:5.1f} s   {f['trades']:,} trades, final equity {f['equity']:,.2f}"
        )


if __name__ == "__main__":
    main()
