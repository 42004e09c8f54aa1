"""Golden outputs: every output file of every spec in library/ and specs/ (and S1, S2) stays byte-identical.

The sha256 of each output file of `strat run SPEC --data ../shared/data --no-report --no-save`, in
`--backtest` and `--replay`, is pinned in golden_outputs.json. A refactor must leave every figure as it was;
a change that means to alter results regenerates the file on purpose:

    STRAT_REGEN_GOLDEN=1 python -m pytest tests/run/test_golden_outputs.py

and says why in the CHANGELOG.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from test_run import S1

from runtime.cli import main

ROOT = Path(__file__).resolve().parents[2]
# The pinned hashes: {case: {file name: sha256}}.
GOLDEN = Path(__file__).with_name("golden_outputs.json")
# The output files a run writes (report.html and the store are left out: they carry run times).
FILES = ("summary.json", "trades.csv", "orders.csv", "equity.csv", "risk_events.csv")
# S2: S1 with a stop, a target in R, a trailing stop that starts after a gain, and a holding limit.
S2 = """strat 1

strategy s2:
    symbol:    "BINANCE:BTC/USDT"
    timeframe: 1h
    fast = sma(close, 10)
    slow = sma(close, 30)
    entry long when fast crosses above slow
    exit  long when fast crosses below slow
    stop_loss:     2%
    take_profit:   3R
    trailing_stop: 3%
    trail_after:   1R
    max_hold:      72h
    size: risk_per_trade(1%)
    execution:
        fill:     next_open
        fee:      0.1%
        slippage: 2bps
"""


def _cases(tmp: Path) -> dict[str, Path]:
    """Every case name and its spec file (S1 and S2 written into `tmp`)."""
    (tmp / "s1.strat").write_text(S1)
    (tmp / "s2.strat").write_text(S2)
    specs = {
        f"{p.parent.name}/{p.name}": p
        for d in ("library", "specs")
        for p in sorted((ROOT / d).glob("*.strat"))
        if p.name != "risk.strat"
    }
    return {**specs, "s1": tmp / "s1.strat", "s2": tmp / "s2.strat"}


def _hashes(spec: Path, data: Path, out: Path, *extra: str) -> dict[str, str]:
    """Run `spec` and return the sha256 of each output file."""
    args = ["run", str(spec), "--data", str(data), "--out", str(out), "--no-report", "--no-save", *extra]
    assert main(args) == 0
    return {name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in FILES}


def test_outputs_are_byte_identical_to_the_pinned_ones(shared_data: Path, tmp_path: Path) -> None:
    """Backtest and replay of every case hash exactly as pinned."""
    got: dict[str, dict[str, str]] = {}
    for case, spec in _cases(tmp_path).items():
        for mode in ("backtest", "replay"):
            out = tmp_path / case.replace("/", "_") / mode
            data = shared_data / "BTCUSDT-1h.csv" if case in ("s1", "s2") else shared_data
            got[f"{case} --{mode}"] = _hashes(spec, data, out, f"--{mode}")
    if os.environ.get("STRAT_REGEN_GOLDEN"):
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        pytest.skip("golden outputs regenerated")
    pinned = json.loads(GOLDEN.read_text())
    assert sorted(got) == sorted(pinned)
    for case, files in pinned.items():
        for name, digest in files.items():
            assert got[case][name] == digest, f"{case}: {name} changed"
