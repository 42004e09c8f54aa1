"""Benchmark of the authoring loop: a save of specs/portfolio.strat to its new report (`--watch`).

Run: `python tests/bench/bench_reload.py`. Prints figures, never asserts a time. A `strat run
specs/portfolio.strat --backtest --watch` process runs on a copy of specs/; the spec is saved 12 times
(atomically, alternating a param between two values on the grid) and each save is timed until the
process says it is watching again (the outputs and report.html rewritten). Baseline measured in the same
run: the same backtest as a fresh `strat run` process (what a user would do without --watch).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "run"))
from test_watch import Watching, atomic_save  # noqa: E402

SAVES = 12  # saves timed


def main() -> None:
    """Time saves to new reports, beside a fresh process's run."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shutil.copytree(ROOT / "specs", folder / "specs")
        shutil.copytree(ROOT / "library", folder / "library")
        spec = folder / "specs" / "portfolio.strat"
        text = spec.read_text()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        began = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "runtime.cli", "run", "specs/portfolio.strat", "--backtest", "--out",
             "plain", "--no-save"],
            cwd=folder, env=env, check=True, capture_output=True,
        )  # fmt: skip
        fresh = time.perf_counter() - began
        shutil.copy(spec, folder / "specs" / "spec.strat")
        watching = Watching(folder / "specs")
        watching.until("watching", 120)
        samples = []
        for i in range(SAVES):
            changed = text.replace("fast=10, slow=40", "fast=15, slow=40") if i % 2 == 0 else text
            began = time.perf_counter()
            atomic_save(folder / "specs" / "spec.strat", changed)
            watching.until("watching", 60)
            samples.append(time.perf_counter() - began)
        watching.stop()
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    print(
        f"--watch, save of specs/portfolio.strat to its new report.html: p50 {p50 * 1000:.0f} ms, "
        f"p95 {p95 * 1000:.0f} ms over {SAVES} saves (target < 1 s)"
    )
    print(
        f"    baseline, the same backtest as a fresh process: {fresh * 1000:.0f} ms; ratio {p50 / fresh:.2f}x"
    )


if __name__ == "__main__":
    main()
