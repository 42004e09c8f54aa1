"""Benchmark of `strat run`: S1 over 1,000,000 bars in process and as a whole process, and the demo portfolio.

Run: .venv/bin/python tests/bench/bench_run.py [--runs N]   (needs ../shared/data or $STRAT_DATA_DIR)

Builds the 1,000,000-bar series of ../shared/data/README.md as a CSV in a temporary folder, writes S1 of
DESIGN.md as a .strat file, and prints, each beside a baseline measured in the same run:

- the bare numpy S1 (SMA 10/30 by cumsum, cross, all-in long at the next open with 0.1% fee, marked at
  each close) on the in-memory arrays;
- parse → check → compile → graph → simulate → metrics of the .strat file on the same in-memory candles
  (best of N after one warm-up run, so numba's on-disk cache is loaded and the grammar is built), ratio to
  the bare numpy S1 (target: within 2x);
- the whole `strat run S1.strat --data <csv> --no-report --no-save` process against a bare whole-process
  script that reads the same CSV with pandas and computes S1 (best of N, target: within 3x), and the peak
  RSS of the `strat run` process (target: under 500 MB);
- the demo portfolio (specs/portfolio.strat) over the shared data, in process and as a whole process,
  with its ratio to the bare numpy S1 on the same number of bars (DESIGN.md: within 4x).

Nothing here asserts a time; it checks only that S1 gives 20,138 entries and a final equity of about
2.568e6 on the million bars.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "broker"))
sys.path.insert(0, str(ROOT / "tests" / "run"))

from sim_reference import bare_s1, load_csv, million_bars, s1_signals  # noqa: E402
from test_run import S1  # noqa: E402

from runtime.backtest.drive import backtest  # noqa: E402
from runtime.backtest.metrics import Summary, compute_metrics  # noqa: E402
from runtime.commands.source import Source, SourceKind  # noqa: E402
from runtime.data.candles import Candles  # noqa: E402
from runtime.plan.plan import CandleLoader, plan  # noqa: E402
from runtime.plan.select import select  # noqa: E402

# The bare whole-process baseline: read the CSV with pandas, compute S1 with numpy, print the result.
BARE_SCRIPT = """
import sys
import numpy as np
import pandas as pd
sys.path.insert(0, {broker!r})
from sim_reference import bare_s1, s1_signals
frame = pd.read_csv(sys.argv[1])
o = frame["open"].to_numpy()
c = frame["close"].to_numpy()
entries, final, dd = bare_s1(o, c, *s1_signals(c), 0.001, 10_000.0)
print(entries, final, dd)
"""


def best(fn: Callable[[], object], runs: int) -> float:
    """Best wall time of `runs` calls, seconds."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def write_csv(bars: dict[str, np.ndarray], path: Path) -> None:
    """Write candles as `timestamp,open,high,low,close,volume` with shortest round-trip floats."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("timestamp,open,high,low,close,volume\n")
        columns = [bars[k].tolist() for k in ("time", "open", "high", "low", "close", "volume")]
        handle.write("".join(map("%d,%r,%r,%r,%r,%r\n".__mod__, zip(*columns, strict=True))))


def in_process(spec: Path, loader: CandleLoader) -> tuple[Summary, int]:
    """Parse and check the spec, plan it on in-memory candles, simulate, compute the metrics.

    Returns the summary and the number of base-clock bars of all sleeves together.
    """
    from dsl.checker import check_file

    checked = check_file(spec)
    assert checked.program is not None, checked.render()
    portfolio = select(checked.program, None, None)
    run_plan = plan(checked.program, portfolio, loader, None, None)
    result = backtest(run_plan)
    summary = compute_metrics(result, min(sp.graph.base.ms for sp in run_plan.sleeves))
    return summary, sum(sp.feeds.length(0) for sp in run_plan.sleeves)


class MemoryLoader:
    """A candle loader that reads each series once (cleaned as `strat run` does) and then serves it."""

    def __init__(self, source: Source) -> None:
        """Serve candles of `source`."""
        self.source = source  # where the candles come from
        self.cache: dict[tuple[Any, ...], Candles] = {}  # candles per (symbol, timeframe, first, last)

    def __call__(self, symbol: str, timeframe: str, first: int | None, last: int | None) -> Candles:
        """Candles of one clock, from memory after the first request."""
        key = (symbol, timeframe, first, last)
        if key not in self.cache:
            self.cache[key] = self.source.load(symbol, timeframe, first, last).candles
        return self.cache[key]


# Runs a Python script (argv[1:]) and prints the process's own peak RSS (VmHWM, kB) to stderr at exit.
# The rusage of a child is no use here: it inherits the peak of the parent that forked it.
PEAK_WRAPPER = """
import atexit, runpy, sys
def peak():
    with open("/proc/self/status") as status:
        kb = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    sys.stderr.write("PEAK_KB " + kb + "\\n")
atexit.register(peak)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def process(script: list[str]) -> tuple[float, float]:
    """Run a Python script with arguments to completion; (wall seconds, its own peak RSS in MB)."""
    argv = [sys.executable, "-c", PEAK_WRAPPER, *script]
    t = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    elapsed = time.perf_counter() - t
    peaks = [line.split()[1] for line in done.stderr.splitlines() if line.startswith("PEAK_KB ")]
    if done.returncode != 0 or not peaks:
        raise SystemExit(f"{' '.join(script)} failed ({done.returncode}):\n{done.stderr}")
    return elapsed, int(peaks[-1]) / 1024


def best_process(argv: list[str], runs: int) -> tuple[float, float]:
    """Best wall time of `runs` runs of a command and the largest peak RSS among them."""
    results = [process(argv) for _ in range(runs)]
    return min(r[0] for r in results), max(r[1] for r in results)


def main() -> None:
    """Run every measurement and print it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="repetitions per measurement (best is kept)")
    runs = parser.parse_args().runs
    data = Path(os.environ.get("STRAT_DATA_DIR", ROOT.parent / "shared" / "data"))
    python = sys.executable
    strat = str(Path(python).with_name("strat"))
    mb = million_bars(load_csv(data / "BTCUSDT-1h.csv"))
    n = len(mb["close"])

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        csv = folder / "BTCUSDT-1m.csv"
        write_csv(mb, csv)
        spec = folder / "s1.strat"
        spec.write_text(S1.replace("timeframe: 1h", "timeframe: 1m"), encoding="utf-8")
        bare_script = folder / "bare_s1.py"
        bare_script.write_text(BARE_SCRIPT.format(broker=str(ROOT / "tests" / "broker")))

        # ---- S1 in process.
        def bare(count: int = n) -> tuple[int, float, float]:
            """Bare numpy S1 on the first `count` in-memory bars."""
            o, c = mb["open"][:count], mb["close"][:count]
            return bare_s1(o, c, *s1_signals(c), 0.001, 10_000.0)

        entries, final, _ = bare()
        loader = MemoryLoader(Source(kind=SourceKind.CSV, path=csv))
        t = time.perf_counter()
        summary, _ = in_process(spec, loader)  # warm-up: reads the CSV once, loads numba's cache
        first = time.perf_counter() - t
        ok = summary.entries == 20_138 and round(summary.final_equity, -3) == 2_568_000.0
        print(
            f"S1, {n:,} bars: engine {summary.entries:,} entries, final equity {summary.final_equity:,.2f}; "
            f"bare numpy {entries:,} entries, {final:,.2f}  [{'OK' if ok else 'MISMATCH'}]"
        )
        if not ok:
            raise SystemExit("S1 on the million bars must give 20,138 entries and about 2.568e6")
        t_bare = best(bare, runs)
        t_engine = best(lambda: in_process(spec, loader), runs)
        print(f"  (best of {runs}; the first in-process run, which also read the CSV, loaded numba's cache")
        print(f"   and built the grammar, took {first * 1e3:.0f} ms and is not counted)")
        print(f"  bare numpy S1                           {t_bare * 1e3:8.1f} ms")
        print(
            f"  strat in process, parse -> summary      {t_engine * 1e3:8.1f} ms   "
            f"ratio {t_engine / t_bare:.2f}x  (target 2x)"
        )

        # ---- S1 as a whole process.
        out = folder / "out"
        argv = [strat, "run", str(spec), "--data", str(csv), "--no-report", "--no-save", "--out", str(out)]
        process(argv)  # warm the page cache and numba's cache files
        t_bare_proc, rss_bare = best_process([str(bare_script), str(csv)], runs)
        t_proc, rss = best_process(argv, runs)
        print(
            f"  bare whole process (pandas + numpy)     {t_bare_proc * 1e3:8.1f} ms   "
            f"peak RSS {rss_bare:6.1f} MB"
        )
        print(
            f"  strat run --no-report --no-save          {t_proc * 1e3:8.1f} ms   peak RSS {rss:6.1f} MB   "
            f"ratio {t_proc / t_bare_proc:.2f}x  (targets 3x, 500 MB)"
        )

    # ---- The demo portfolio over the shared data.
    demo = ROOT / "specs" / "portfolio.strat"
    demo_loader = MemoryLoader(Source(kind=SourceKind.CSV, path=data))
    t = time.perf_counter()
    summary, sleeve_bars = in_process(demo, demo_loader)
    first = time.perf_counter() - t
    bars = summary.bars
    t_demo = best(lambda: in_process(demo, demo_loader), runs)
    t_bare_same = best(lambda: bare(sleeve_bars), runs)
    print(
        f"Demo portfolio (3 sleeves, stops, trailing, risk rules) over {data}: {summary.entries} trades, "
        f"{bars:,} points, {sleeve_bars:,} sleeve bars"
    )
    print(f"  bare numpy S1 on {sleeve_bars:,} bars        {t_bare_same * 1e3:8.2f} ms")
    print(
        f"  strat in process, parse -> summary      {t_demo * 1e3:8.1f} ms   "
        f"ratio {t_demo / t_bare_same:.1f}x  (DESIGN.md: 4x; first run {first * 1e3:.0f} ms)"
    )
    argv = [strat, "run", str(demo), "--data", str(data), "--no-report", "--no-save"]
    with tempfile.TemporaryDirectory() as tmp:
        t_demo_proc, rss_demo = best_process([*argv, "--out", tmp], runs)
    print(
        f"  strat run (whole process)                {t_demo_proc * 1e3:8.1f} ms   "
        f"peak RSS {rss_demo:6.1f} MB"
    )


if __name__ == "__main__":
    main()
