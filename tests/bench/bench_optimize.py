"""Benchmark of the optimizer's member runs: a 1,000-member SMA-cross grid over 58,419 real BTC 1h bars.

Run: .venv/bin/python tests/bench/bench_optimize.py [--plain N] [--no-memory]
(needs ../shared/data or $STRAT_DATA_DIR; vectorbt is optional: `pip install vectorbt` to compare with it)

The grid of the optimizer issue: fast 5..53 step 2 x slow 20..215 step 5 (25 x 40 members) of an SMA cross
with the S1 conventions (decided at the close, filled at the next open, fee 0.1%, all-in, 10,000 USDT).
The spec is checked once and each member planned through the public path (`plan` with the member's
params as overrides), then printed side by side, measured in this one run:

- `sweep` of the 1,000 planned members (best of 3; each member's metrics and equity, none kept), and with
  `overlap=True` (the next batch simulated on a second thread meanwhile);
- the plain path (`backtest` + `compute_metrics` one by one) on N members spread over the grid (default
  50), extrapolated to 1,000, and whether the sweep's results for those members are identical;
- vectorbt's `Portfolio.from_signals` over the same 1,000 columns (next-open fills: the signals shifted
  one bar, priced at the open), with its total return and Sharpe ratio per column, and its peak memory;
- the peak memory traced while sweeping (tracemalloc) for several batch sizes and member counts: bounded
  by the batch size, not by the number of members.

Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from dsl.checker import check_source  # noqa: E402
from runtime.backtest.drive import backtest  # noqa: E402
from runtime.backtest.metrics import compute_metrics  # noqa: E402
from runtime.backtest.sweep import sweep  # noqa: E402
from runtime.data.candles import Candles  # noqa: E402
from runtime.plan.plan import RunPlan, plan  # noqa: E402
from runtime.plan.select import select  # noqa: E402

sys.path.insert(0, str(ROOT / "tests" / "backtest"))
from test_sweep import SMA, _csv_loader  # noqa: E402

# The grid's strategy (S1's conventions, its two lengths as params with the grid's domains: the sweep
# tests' SMA cross) and its optimize block.
SPEC = (
    SMA
    + """
optimize grid_search:
    target:    smax
    method:    grid
    objective: maximize(sharpe)
"""
)
FASTS = range(5, 54, 2)  # the grid's fast lengths (25)
SLOWS = range(20, 216, 5)  # the grid's slow lengths (40)


def best(fn: Callable[[], object], runs: int) -> float:
    """Best wall time of `runs` calls, seconds."""
    times = []
    for _ in range(runs):
        gc.collect()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def plan_members(data: Path) -> tuple[list[RunPlan], float, Candles]:
    """Check the spec once and plan every member of the grid over data/BTCUSDT-1h.csv.

    (plans, seconds planning, the candles); the candles are loaded once and shared by every member, as
    the optimizer loads them.
    """
    checked = check_source(SPEC)
    program = checked.program
    assert program is not None, checked.render()
    portfolio = select(program, None, None)
    load = _csv_loader(data)
    candles = load(portfolio.sleeves[0].symbol, "1h", None, None)
    t = time.perf_counter()
    plans = []
    for fast, slow in itertools.product(FASTS, SLOWS):
        sleeve = portfolio.sleeves[0].model_copy(
            update={"overrides": (("fast", float(fast)), ("slow", float(slow)))}
        )
        plans.append(plan(program, portfolio.model_copy(update={"sleeves": (sleeve,)}), load, None, None))
    return plans, time.perf_counter() - t, candles


def run_sweep(plans: list[RunPlan], batch: int | None = None, overlap: bool = False) -> list[float]:
    """Sweep the members, keeping only each one's Sharpe ratio (as a search keeps its table)."""
    return [r.summary.sharpe or 0.0 for r in sweep(plans, batch=batch, overlap=overlap)]


def traced_peak(fn: Callable[[], object]) -> float:
    """Peak memory traced by tracemalloc while `fn` runs, MB."""
    gc.collect()
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def sma(x: np.ndarray, n: int) -> np.ndarray:
    """Simple moving average by cumulative sums, NaN for the first n-1 bars."""
    cs = np.cumsum(np.insert(x, 0, 0.0))
    out = np.full(len(x), np.nan)
    out[n - 1 :] = (cs[n:] - cs[:-n]) / n
    return out


def whole_command(csv: Path, jobs: list[str]) -> float:
    """Best of 3 wall times of `strat optimize` on the grid (a fresh process each; no report, not saved)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "grid.strat"
        spec.write_text(SPEC, encoding="utf-8")
        times = []
        for k in range(3):
            out = str(Path(tmp) / f"out{k}")
            command = [sys.executable, "-m", "runtime.cli", "optimize", str(spec), "--data", str(csv),
                       "--out", out, "--no-report", "--no-save", *jobs]  # fmt: skip
            began = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, env=env)
            times.append(time.perf_counter() - began)
    return min(times)


def vectorbt_grid(candles: Candles) -> float | None:
    """Seconds of vectorbt's `Portfolio.from_signals` over the grid's 1,000 columns (None: not installed)."""
    try:
        import pandas as pd
        import vectorbt as vbt
    except ImportError:
        print("vectorbt not installed (pip install vectorbt to compare with it)")
        return None
    close, open_ = candles.close, candles.open
    fast = {n: sma(close, n) for n in FASTS}
    slow = {n: sma(close, n) for n in SLOWS}
    pairs = list(itertools.product(FASTS, SLOWS))
    entries = np.empty((len(close), len(pairs)), dtype=bool)
    exits = np.empty_like(entries)
    for k, (f, s) in enumerate(pairs):
        a, b = fast[f], slow[s]
        pa, pb = np.concatenate(([np.nan], a[:-1])), np.concatenate(([np.nan], b[:-1]))
        entries[:, k] = (a > b) & (pa <= pb)
        exits[:, k] = (a < b) & (pa >= pb)
    index = pd.to_datetime(candles.time, unit="ms")
    columns = pd.MultiIndex.from_tuples(pairs, names=["fast", "slow"])
    close_frame = pd.Series(close, index=index)
    # Decided at the close of bar t, filled at the open of t+1: the signals one bar later, priced at the open.
    shifted = (np.vstack([np.zeros((1, len(pairs)), bool), a[:-1]]) for a in (entries, exits))
    ent, ex = (pd.DataFrame(a, index=index, columns=columns) for a in shifted)
    del entries, exits

    def run() -> tuple[object, object]:
        """The portfolio of every column, with two of its metrics per column."""
        pf = vbt.Portfolio.from_signals(
            close_frame, ent, ex, price=pd.Series(open_, index=index), fees=0.001, init_cash=10_000.0,
            size=np.inf, freq="1h",
        )  # fmt: skip
        return pf.total_return(), pf.sharpe_ratio()

    t = time.perf_counter()
    run()  # the first call compiles vectorbt's kernels
    first = time.perf_counter() - t
    total, _ = run()
    elapsed = best(run, 1)
    one = total.loc[(11, 40)]  # type: ignore[attr-defined]
    print(
        f"  vectorbt from_signals, 1,000 columns     {elapsed:8.2f} s   (first call {first:.1f} s, compiling)"
    )
    print(f"    total return of fast=11 slow=40: {one:.6f}")
    print(f"    traced peak of one run                 {traced_peak(run):8.0f} MB")
    return elapsed


def main() -> None:
    """Run every measurement and print it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plain", type=int, default=50, help="members run on the plain path (default 50)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measurements")
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    data = Path(os.environ.get("STRAT_DATA_DIR", ROOT.parent / "shared" / "data"))
    plans, planning, candles = plan_members(data)
    print(f"SMA-cross grid: {len(plans)} members over {len(candles)} real BTC/USDT 1h bars")
    print(f"  planning the members (check once, plan each) {planning:8.2f} s")
    run_sweep(plans[:3])  # loads (or compiles) the kernels
    cpu = time.process_time()
    t_one = best(lambda: run_sweep(plans), 3)
    cpu = (time.process_time() - cpu) / 3
    t_two = best(lambda: run_sweep(plans, overlap=True), 3)
    sharpes = run_sweep(plans)
    top = int(np.argmax(sharpes))
    fast, slow = list(itertools.product(FASTS, SLOWS))[top]
    each = t_one / len(plans) * 1e3
    print(
        f"  sweep of the 1,000 members               {t_one:8.2f} s   ({each:.2f} ms each, CPU {cpu:.2f} s)"
    )
    print(f"  sweep, overlap=True (two threads)        {t_two:8.2f} s   (gains only with a second core free)")
    print(f"    best Sharpe {sharpes[top]:.3f} at fast={fast} slow={slow}")

    # The plain path on members spread over the grid, extrapolated; the sweep must give the same.
    subset = plans[:: max(len(plans) // args.plain, 1)][: args.plain]
    backtest(subset[0])  # loads (or compiles) the plain path's kernels outside the timing
    t = time.perf_counter()
    plain = []
    for rp in subset:
        result = backtest(rp)
        plain.append((compute_metrics(result, rp.sleeves[0].graph.base.ms), result.equity))
    t_plain = (time.perf_counter() - t) / len(subset) * len(plans)
    same = all(
        r.summary == s and np.array_equal(r.equity, e) for r, (s, e) in zip(sweep(subset), plain, strict=True)
    )
    print(
        f"  plain path, one by one (from {len(subset)} members) {t_plain:8.2f} s   "
        f"ratio {t_plain / t_one:.1f}x the sweep; results {'identical' if same else 'DIFFERENT'}"
    )
    # The whole command, as a user runs it: a fresh process checks, loads, plans, sweeps, ranks, writes.
    csv = data / "BTCUSDT-1h.csv"
    t_all = whole_command(csv, [])
    t_solo = whole_command(csv, ["--jobs", "1"])
    print(f"  strat optimize, whole command (every core) {t_all:6.2f} s   (--jobs 1: {t_solo:.2f} s)")
    t_vbt = vectorbt_grid(candles)
    if t_vbt is not None:
        print(f"  strat optimize is {t_vbt / t_all:.1f}x faster than vectorbt's from_signals alone")

    if not args.no_memory:
        print("Peak memory traced while sweeping (results' equity not kept):")
        for count, batch in ((1000, 8), (1000, None), (250, None), (1000, 64), (1000, 256)):
            peak = traced_peak(lambda c=count, b=batch: run_sweep(plans[:c], b))
            label = "auto" if batch is None else f"{batch:4d}"
            print(f"  {count:5d} members, batch {label}            {peak:8.0f} MB")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"Process peak RSS                           {rss:8.0f} MB")


if __name__ == "__main__":
    main()
