"""Output files: exact contents, determinism, the default folder and the console summary."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest_report import HOUR, small_result
from rich.console import Console

from runtime.backtest import output
from runtime.backtest.metrics import compute_metrics
from runtime.backtest.output import default_out_dir, print_summary, write_outputs


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
    names = ["equity.csv", "orders.csv", "risk_events.csv", "summary.json", "trades.csv"]
    assert sorted(p.name for p in first.iterdir()) == names
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_default_out_dir_uses_spec_stem_and_utc_time() -> None:
    now = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert default_out_dir("specs/portfolio.strat", now) == Path("reports/portfolio-20240506T070809Z")
    assert default_out_dir(Path("a/b/s1.strat")).parent == Path("reports")


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
    assert table["Max drawdown"] == "10.00% (2 bars)"
    assert table["Sharpe / Sortino / Calmar"] == "37.08 / 99.27 / 2.55e+174"
    assert table["Profit factor"] == "–"
    assert table["Turnover"] == "2.89x"
    assert "│ trend  │ BTC/USDT │ 60.00% │       1 │  100.00% │ 9.79 │        9.79% │ 0.21 │" in text
    assert "│ revert │ ETH/USDT │ 40.00% │       1 │        – │ 9.90 │        9.90% │ 0.10 │" in text


def test_console_summary_of_real_data_has_no_banner() -> None:
    console = Console(record=True, width=120, color_system=None)
    print_summary(compute_metrics(small_result(), HOUR), console)
    assert "SYNTHETIC" not in console.export_text()
