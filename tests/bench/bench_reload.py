"""Benchmarks of reloading specs/portfolio.strat: in a paper session, and in the `--watch` loop.

Run: `python tests/bench/bench_reload.py`. Prints figures, never asserts a time.

(a) Live: a paper engine of the demo portfolio runs in process against the fake Binance (tests/data) on
    the demo candles, 48 bars past its start (the bar buffer warm); the spec is then edited 12 times
    (alternating a sleeve's param) and each `Engine.reload` is timed: check, plan, warm the new graphs on
    the buffer, carry the unchanged nodes' state, migrate the broker, save the version. A save reaches it
    after the watcher's 100 ms debounce, so save to new version live is that plus the reload. Baseline in
    the same run: the initial start-up of the same engine (planning and warming from scratch).
(b) `--watch`: a `strat run specs/portfolio.strat --backtest --watch` process runs on a copy of specs/; the
    spec is saved 12 times (atomically) and each save is timed until the process says it is watching again
    (outputs and report.html rewritten). Baseline: the same backtest as a fresh `strat run` process.
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


def demo_copy(folder: Path) -> Path:
    """Copy specs/ and library/ into `folder`; the copied demo portfolio's path."""
    shutil.copytree(ROOT / "specs", folder / "specs")
    shutil.copytree(ROOT / "library", folder / "library")
    return folder / "specs" / "portfolio.strat"


def live_reload(reloads: int = SAVES) -> None:
    """(a): `Engine.reload` of the demo portfolio in a paper session with a warm buffer."""
    import asyncio

    import numpy as np

    from runtime.data.loader import from_csv, prepare

    sys.path.insert(0, str(ROOT / "tests" / "data"))
    sys.path.insert(0, str(ROOT / "tests" / "bench"))
    from bench_live import paper_engine
    from fake_binance import FakeBinance

    from runtime.watcher import DEBOUNCE_S

    hour = 3_600_000
    fake = FakeBinance(data_dir=ROOT / "specs" / "data", now_ms=1_717_200_000_000 - hour // 2).start()
    # The demo's SOL sleeve reads 4h bars: the fake serves them resampled from the 1h file.
    raw, _ = from_csv(ROOT / "specs" / "data", "SOL/USDT", "4h", 0, 2**62)
    sol = prepare(raw, "4h", 0, 2**62, fill_gaps=False).candles
    rows = [sol.time.astype(np.float64), sol.open, sol.high, sol.low, sol.close, sol.volume]
    fake.set_candles("SOL/USDT", "4h", np.column_stack(rows))
    with tempfile.TemporaryDirectory() as tmp:
        spec = demo_copy(Path(tmp))
        text = spec.read_text()
        edited = text.replace("fast=10, slow=40", "fast=15, slow=40")
        engine = paper_engine(fake, text, str(spec), tmp)

        async def run() -> tuple[float, list[float]]:
            """Start, trade 48 bars, then reload `reloads` times; (start-up s, reload s each)."""
            client = engine.exchange.asynchronous()
            began = time.perf_counter()
            await engine.start(client)
            startup = time.perf_counter() - began
            for _ in range(48):
                fake.advance(hour)
                await engine._poll_all(client)
                engine.checkpoint()
            samples = []
            for i in range(reloads):
                spec.write_text(edited if i % 2 == 0 else text)
                began = time.perf_counter()
                assert engine.reload(), engine.recent[-1].message
                samples.append(time.perf_counter() - began)
            await client.close()
            return startup, samples

        startup, samples = asyncio.run(run())
    fake.stop()
    ordered = sorted(samples)
    p50, p95 = statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    print(
        f"(a) live reload of specs/portfolio.strat in a paper session (3 sleeves, 48 bars buffered): "
        f"Engine.reload p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms; save to new version live "
        f"(+{DEBOUNCE_S * 1000:.0f} ms debounce) p95 {(p95 + DEBOUNCE_S) * 1000:.0f} ms (target < 300 ms)"
    )
    print(f"    baseline, the engine's start-up (plan and warm from scratch): {startup * 1000:.0f} ms")


def main() -> None:
    """Both parts."""
    live_reload()
    watch_loop()


def watch_loop() -> None:
    """(b): time saves to new reports, beside a fresh process's run."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec = demo_copy(folder)
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
        f"(b) --watch, save of specs/portfolio.strat to its new report.html: p50 {p50 * 1000:.0f} ms, "
        f"p95 {p95 * 1000:.0f} ms over {SAVES} saves (target < 1 s)"
    )
    print(
        f"    baseline, the same backtest as a fresh process: {fresh * 1000:.0f} ms; ratio {p50 / fresh:.2f}x"
    )


if __name__ == "__main__":
    main()
