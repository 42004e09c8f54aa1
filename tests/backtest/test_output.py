"""Output files: exact contents, determinism, the default folder and the console summary."""

from __future__ import annotations

import dataclasses
import json
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest_report import HOUR, T0, small_result
from rich.console import Console

from runtime.backtest import output
from runtime.backtest.metrics import compute_metrics
from runtime.backtest.output import new_out_dir, print_summary, write_outputs
from runtime.broker.result import Alert


def _write(tmp_path: Path, name: str = "out", synthetic: bool = False) -> Path:
    """Write the small result's files (without the report) into tmp_path/name."""
    result = small_result(synthetic)
    return write_outputs(result, compute_metrics(result, HOUR), tmp_path / name)


def test_trades_csv_exact(tmp_path: Path) -> None:
    out = _write(tmp_path)
    assert (out / "trades.csv").read_text() == (
        "sleeve,symbol,side,entry_time,entry_price,exit_time,exit_price,qty,pnl,return,fees,exit_reason,mae,mfe\n"
        "trend,BTC/USDT,long,2024-01-01T01:00:00Z,100.0,2024-01-01T03:00:00Z,110.0,1.0,9.79,0.0979,0.21,"
        "take_profit,-0.01,0.1\n"
        "revert,ETH/USDT,short,2024-01-01T02:00:00Z,50.0,,45.0,2.0,9.9,0.099,0.1,end,-0.02,0.12\n"
    )


@pytest.mark.parametrize("chunk", [65_536, 3])
def test_equity_orders_and_risk_csv_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    # Long runs are written in chunks; a chunk boundary must not show in the file.
    monkeypatch.setattr(output, "_CHUNK", chunk)
    out = _write(tmp_path)
    assert (out / "equity.csv").read_text() == (
        "time,equity,cash,exposure,drawdown\n"
        "2024-01-01T01:00:00Z,100.00000000,100.00000000,0.00000000,0.00000000\n"
        "2024-01-01T02:00:00Z,110.00000000,10.00000000,0.90000000,0.00000000\n"
        "2024-01-01T03:00:00Z,99.00000000,109.00000000,0.10000000,0.10000000\n"
        "2024-01-01T04:00:00Z,120.00000000,120.00000000,0.75000000,0.00000000\n"
    )
    assert (out / "orders.csv").read_text().splitlines() == [
        "time,sleeve,symbol,side,intent,reason,requested_qty,filled_qty,price,fee",
        "2024-01-01T01:00:00Z,trend,BTC/USDT,buy,entry,signal,1.0,1.0,100.0,0.1",
        "2024-01-01T02:00:00Z,revert,ETH/USDT,sell,entry,signal,2.0,2.0,50.0,0.1",
        "2024-01-01T03:00:00Z,trend,BTC/USDT,sell,exit,take_profit,1.0,1.0,110.0,0.11",
    ]
    # The rule contains a comma, so the CSV quotes it.
    assert (out / "risk_events.csv").read_text() == (
        "time,scope,rule,action,values\n"
        '2024-01-01T03:00:00Z,portfolio,"halt when drawdown > 15%, then stop",halt,drawdown=0.16\n'
    )


def test_summary_json_has_every_field_as_fractions(tmp_path: Path) -> None:
    data = json.loads((_write(tmp_path) / "summary.json").read_text())
    required = {
        "entries", "closed_trades", "final_equity", "total_return", "cagr", "max_drawdown",
        "max_drawdown_duration_bars", "volatility", "sharpe", "sortino", "calmar", "win_rate",
        "profit_factor", "expectancy", "avg_hold_bars", "exposure", "turnover", "fees", "bars", "start",
        "end", "synthetic", "sleeves", "symbols", "monthly_returns", "median_hold_bars",
    }  # fmt: skip
    assert required <= set(data)
    assert (data["entries"], data["closed_trades"], data["final_equity"]) == (2, 1, 120.0)
    assert data["max_drawdown"] == 0.09999999999999998
    assert data["profit_factor"] is None and data["synthetic"] is False
    assert [s["name"] for s in data["sleeves"]] == ["trend", "revert"]
    assert data["symbols"][1] == {
        "entries": 1, "closed_trades": 0, "pnl": 9.9, "win_rate": None, "profit_factor": None,
        "expectancy": None, "avg_hold_bars": None, "median_hold_bars": None, "fees": 0.1,
        "symbol": "ETH/USDT", "contribution": 0.099,
    }  # fmt: skip


def test_identical_runs_give_identical_files(tmp_path: Path) -> None:
    first, second = _write(tmp_path, "a"), _write(tmp_path, "b")
    names = ["alerts.csv", "equity.csv", "orders.csv", "risk_events.csv", "summary.json", "trades.csv"]
    assert sorted(p.name for p in first.iterdir()) == names
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_new_out_dir_uses_spec_stem_and_utc_time(tmp_path: Path) -> None:
    now = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    folder = new_out_dir("specs/portfolio.strat", now, tmp_path / "reports")
    assert folder == tmp_path / "reports/portfolio-20240506T070809Z"
    assert folder.is_dir()
    # The same second again: a fresh folder with a suffix, never the first one.
    assert (
        new_out_dir(Path("a/b/portfolio.strat"), now, tmp_path / "reports").name
        == "portfolio-20240506T070809Z-2"
    )


def _made(root: str) -> str:
    """Create a run folder for the same spec and second (in a worker process); its name."""
    return new_out_dir("specs/demo.strat", datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC), root).name


def test_parallel_runs_in_one_second_get_distinct_folders(tmp_path: Path) -> None:
    # 8 processes creating the run folder of the same spec in the same second: 8 distinct folders.
    with ProcessPoolExecutor(max_workers=8) as pool:
        names = list(pool.map(_made, [str(tmp_path)] * 8))
    expected = {"demo-20240506T070809Z"} | {f"demo-20240506T070809Z-{i}" for i in range(2, 9)}
    assert set(names) == expected
    assert {p.name for p in tmp_path.iterdir()} == expected


def test_alerts_csv_exact(tmp_path: Path) -> None:
    alerts = (
        Alert(T0 + 2 * HOUR, "trend", "ma_cross", "BTC/USDT", "fast above slow, buy?"),
        Alert(T0 + 3 * HOUR, "revert", "rsi_reversion", "ETH/USDT", 'said "hi"'),
    )
    result = dataclasses.replace(small_result(), alerts=alerts)
    write_outputs(result, compute_metrics(result, HOUR), tmp_path)
    assert (tmp_path / "alerts.csv").read_text() == (
        "time,sleeve,strategy,symbol,alert\n"
        '2024-01-01T02:00:00Z,trend,ma_cross,BTC/USDT,"fast above slow, buy?"\n'
        '2024-01-01T03:00:00Z,revert,rsi_reversion,ETH/USDT,"said ""hi"""\n'
    )
    # A run without alerts still writes the file, with its header only.
    write_outputs(small_result(), compute_metrics(small_result(), HOUR), tmp_path / "none")
    assert (tmp_path / "none" / "alerts.csv").read_text() == "time,sleeve,strategy,symbol,alert\n"


def test_console_summary_marks_synthetic_data() -> None:
    console = Console(record=True, width=120, color_system=None)
    print_summary(compute_metrics(small_result(synthetic=True), HOUR), console)
    text = console.export_text()
    assert "SYNTHETIC DATA: these prices are generated, not real market history" in text
    assert "Backtest summary [SYNTHETIC DATA]" in text
    rows = [line.split("│")[1:3] for line in text.splitlines() if line.startswith("│ ")]
    table = {label.strip(): value.strip() for label, value in rows}
    assert table["Final equity"] == "120.00 USDT (from 100.00)"
    assert table["CAGR"] == "2.55e+175%"
    assert table["Bars"] == "4 bars of 1h (0.2 days)"
    assert table["Max drawdown"] == "10.00%, lasting 2 bars of 1h (0.1 days)"
    assert table["Hold (mean / median)"] == "2.0 / 2.0 bars of each sleeve"
    assert table["Sharpe / Sortino / Calmar"] == "37.08 / 99.27 / 2.55e+174"
    assert table["Profit factor"] == "–"
    assert table["Turnover"] == "2.89x"
    assert "│ trend  │ BTC/USDT │ 60.00% │       1 │  100.00% │ 9.79 │        9.79% │ 0.21 │" in text
    assert "│ revert │ ETH/USDT │ 40.00% │       1 │        – │ 9.90 │        9.90% │ 0.10 │" in text


def test_console_summary_of_real_data_has_no_banner() -> None:
    console = Console(record=True, width=120, color_system=None)
    print_summary(compute_metrics(small_result(), HOUR), console)
    assert "SYNTHETIC" not in console.export_text()
