"""`strat run` end to end: the S1 anchor, replay identical to backtest, outputs and exit codes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime.cli import main

ROOT = Path(__file__).resolve().parents[2]
S1 = """strat 1

# Strategy S1 of DESIGN.md.
strategy s1:
    symbol:    "BINANCE:BTC/USDT"
    timeframe: 1h
    fast = sma(close, 10)
    slow = sma(close, 30)
    entry long when fast crosses above slow
    exit  long when fast crosses below slow
    size: equity_pct(100%)
    execution:
        fill:     next_open
        fee:      0.1%
        slippage: 0bps
"""


def _run(spec: Path, data: Path, out: Path, *extra: str) -> dict:
    """`strat run SPEC --data DATA --out OUT --no-report --no-save` and its summary."""
    code = main(
        ["run", str(spec), "--data", str(data), "--out", str(out), "--no-report", "--no-save", *extra]
    )
    assert code == 0
    return json.loads((out / "summary.json").read_text())


def test_s1_anchor_matches_every_reference_engine(shared_data: Path, tmp_path: Path) -> None:
    spec = tmp_path / "s1.strat"
    spec.write_text(S1)
    summary = _run(spec, shared_data / "BTCUSDT-1h.csv", tmp_path / "out")
    assert summary["entries"] == 1180
    assert summary["closed_trades"] == 1179
    assert round(summary["final_equity"], 2) == 74640.42
    assert round(summary["max_drawdown"], 4) == 0.6646
    with (tmp_path / "out" / "trades.csv").open() as handle:
        trades = list(csv.DictReader(handle))
    assert len(trades) == 1180
    assert trades[-1]["exit_reason"] == "end"


# Buys an hourly ETH candle that fell more than 5% inside the hour, with a 3% stop: on 2024-08-05 it buys
# the 01:00 open (2,526.81), the hour falls to 2,111 and the next one opens at 2,319.24 (-8.2%).
DIP = """strat 1

strategy dip:
    symbol:    "BINANCE:ETH/USDT"
    timeframe: 1h
    entry long when close < open * 0.95
    stop_loss: 3%
    size: equity_pct(100%)
    execution:
        fee:      0%
        slippage: 0bps
"""


@pytest.mark.parametrize("mode", ["--backtest", "--replay"])
def test_a_stop_is_hit_on_the_bar_the_entry_fills_on(shared_data: Path, tmp_path: Path, mode: str) -> None:
    spec = tmp_path / "dip.strat"
    spec.write_text(DIP)
    data = shared_data / "ETHUSDT-1h.csv"
    _run(spec, data, tmp_path / "out", "--from", "2024-08-05", "--to", "2024-08-05T03:00", mode)
    with (tmp_path / "out" / "trades.csv").open() as handle:
        first, second = csv.DictReader(handle)
    # Stopped at the level inside the fill bar, not at the next bar's open 8.2% below the entry.
    assert (first["entry_time"], first["exit_time"], first["exit_reason"]) == (
        "2024-08-05T01:00:00Z", "2024-08-05T01:00:00Z", "stop_loss",
    )  # fmt: skip
    assert float(first["entry_price"]) == 2526.81
    assert float(first["exit_price"]) == pytest.approx(2526.81 * 0.97, rel=1e-15)
    assert float(first["return"]) == pytest.approx(-0.03, rel=1e-12)
    assert (float(first["mae"]), float(first["mfe"])) == (pytest.approx(-0.03, rel=1e-12), 0.0)
    # The 01:00 hour fell 8.2% too: the 02:00 entry at 2,319.24 is stopped on its own fill bar as well.
    assert (second["entry_time"], second["exit_time"], float(second["entry_price"])) == (
        "2024-08-05T02:00:00Z", "2024-08-05T02:00:00Z", 2319.24,
    )  # fmt: skip
    assert float(second["exit_price"]) == pytest.approx(2319.24 * 0.97, rel=1e-15)


def test_from_starts_the_reported_period(shared_data: Path, tmp_path: Path) -> None:
    # ma_cross reads about two days of warm-up before 2024-03-01; none of it is reported or traded.
    spec = ROOT / "library" / "ma_cross.strat"
    summary = _run(spec, shared_data, tmp_path / "out", "--from", "2024-03-01", "--to", "2024-04-01")
    assert (summary["start"], summary["end"], summary["bars"]) == (
        "2024-03-01T00:00:00Z",
        "2024-04-01T00:00:00Z",
        744,
    )
    with (tmp_path / "out" / "equity.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert (rows[0]["time"], len(rows)) == ("2024-03-01T01:00:00Z", 744)  # the first bar closing after --from
    with (tmp_path / "out" / "trades.csv").open() as handle:
        trades = list(csv.DictReader(handle))
    assert trades and min(t["entry_time"] for t in trades) >= "2024-03-01T00:00:00Z"
    # The metrics are those of the cut curve: the capital, then the equity of each row.
    capital = summary["capital"]
    curve = np.array([capital] + [float(r["equity"]) for r in rows])
    rets = curve[1:] / curve[:-1] - 1.0
    per_year = 365 * 24
    assert summary["sharpe"] == pytest.approx(rets.mean() / rets.std(ddof=1) * np.sqrt(per_year), rel=1e-6)
    assert summary["volatility"] == pytest.approx(rets.std(ddof=1) * np.sqrt(per_year), rel=1e-6)
    assert summary["total_return"] == pytest.approx(curve[-1] / capital - 1.0, rel=1e-6)
    peak = np.maximum.accumulate(curve)
    assert summary["max_drawdown"] == pytest.approx((1.0 - curve / peak).max(), rel=1e-6)
    assert summary["exposure"] == sum(float(r["exposure"]) > 0 for r in rows) / len(rows)
    # The same run in replay gives the same files.
    _run(spec, shared_data, tmp_path / "replay", "--from", "2024-03-01", "--to", "2024-04-01", "--replay")
    for name in ("trades.csv", "equity.csv", "summary.json"):
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "replay" / name).read_bytes(), name


SPECS = sorted(p for d in ("library", "specs") for p in (ROOT / d).glob("*.strat") if p.name != "risk.strat")


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_replay_outputs_are_byte_identical_to_backtest(spec: Path, shared_data: Path, tmp_path: Path) -> None:
    _run(spec, shared_data, tmp_path / "backtest")
    _run(spec, shared_data, tmp_path / "replay", "--replay")
    for name in ("trades.csv", "orders.csv", "equity.csv", "risk_events.csv", "alerts.csv", "summary.json"):
        assert (tmp_path / "backtest" / name).read_bytes() == (tmp_path / "replay" / name).read_bytes(), name
    assert (tmp_path / "backtest" / "trades.csv").read_bytes().count(b"\n") > 1  # at least one trade


def test_set_override_is_checked(shared_data: Path, tmp_path: Path, capsys) -> None:
    spec = ROOT / "library" / "ma_cross.strat"
    assert main(["run", str(spec), "--data", str(shared_data), "--set", "fast=7", "--no-save"]) == 1
    assert "fast = 7 is not on the grid 5..50 step 5" in capsys.readouterr().err
    summary = _run(spec, shared_data, tmp_path / "o", "--set", "fast=20")
    assert summary["entries"] > 0


def test_usage_errors_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["run", str(tmp_path / "missing.strat")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["run", str(ROOT / "library" / "ma_cross.strat"), "--set", "fast"]) == 2


def test_synthetic_data_is_labelled(tmp_path: Path) -> None:
    summary = _run(ROOT / "library" / "ma_cross.strat", Path("synthetic"), tmp_path / "syn")
    assert summary["synthetic"] is True
    assert summary["bars"] > 1000


def test_a_run_without_a_store_never_imports_sqlalchemy(shared_data: Path, tmp_path: Path) -> None:
    # SQLAlchemy costs ~150 ms to import: a --no-save run over CSV data with no store must not pay it.
    code = (
        "import sys; from runtime.cli import main; "
        f"rc = main(['run', {str(ROOT / 'specs' / 'portfolio.strat')!r}, '--data', {str(shared_data)!r}, "
        f"'--no-report', '--no-save', '--out', {str(tmp_path / 'o')!r}]); "
        "assert rc == 0, rc; assert 'sqlalchemy' not in sys.modules, 'sqlalchemy was imported'"
    )
    env = {**os.environ, "STRAT_DB_URL": f"sqlite:///{tmp_path / 'none' / 'x.db'}"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_report_names_the_file_behind_each_series(shared_data: Path, tmp_path: Path) -> None:
    # The demo's BTC 4h sleeve is read again from the 5m file (the 1h file ends in April): the report's
    # data section says so, as the console does.
    out = tmp_path / "o"
    spec = str(ROOT / "specs" / "portfolio.strat")
    assert main(["run", spec, "--data", str(shared_data), "--out", str(out), "--no-save"]) == 0
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "from BTCUSDT-5m.csv (5m, resampled)" in html
    assert "from ETHUSDT-1h.csv (1h)" in html
