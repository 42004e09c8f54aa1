"""Helpers of the optimizer tests: a small SMA-cross spec with a block per method, and runs of it."""

from __future__ import annotations

import json
from pathlib import Path

from runtime.cli import main

# An SMA cross on 1h bars: fast 5..25 step 5 × slow 20..60 step 20, fast < slow (13 members).
SPEC = """strat 1

strategy sma:
    symbol:    "BINANCE:BTC/USDT"
    timeframe: 1h
    param fast = 10 in 5..25 step 5
    param slow = 40 in 20..60 step 20
    constraint fast < slow
    fast_ma = sma(close, fast)
    slow_ma = sma(close, slow)
    entry long when fast_ma crosses above slow_ma
    exit  long when fast_ma crosses below slow_ma
    size: equity_pct(100%)
    execution:
        fee: 0.1%

optimize grid_sweep:
    target:    sma
    method:    grid
    objective: maximize(sharpe)
    require:   trades >= 24

optimize random_sweep:
    target: sma
    method: random(samples=6, seed=3)

optimize bayes_sweep:
    target:    sma
    method:    bayes(trials=6, seed=5)
    objective: maximize(total_return)

optimize rolling_sweep:
    target:       sma
    method:       grid
    walk_forward: rolling(train=30d, test=15d)

optimize anchored_sweep:
    target:       sma
    method:       grid
    walk_forward: anchored(train=30d, test=15d)
"""
# The data of every test: the seeded synthetic market, three months of 1h bars.
DATA = ["--data", "synthetic", "--from", "2024-01-01", "--to", "2024-04-01"]


def optimize(spec: Path, block: str, out: Path, *extra: str) -> int:
    """`strat optimize SPEC BLOCK` over the test data into `out` (not saved, no report unless asked)."""
    flags = [] if "--report" in extra else ["--no-report"]
    args = [a for a in extra if a != "--report"]
    return main(["optimize", str(spec), block, *DATA, "--out", str(out), "--no-save", *flags, *args])


def best(out: Path) -> dict:  # type: ignore[type-arg]
    """best.json of an optimisation."""
    return json.loads((out / "best.json").read_text(encoding="utf-8"))
