"""Alerts: `alert "text" when C` fires at each bar close where C holds; alerts.csv and a console count."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from runtime.cli import main

# Two sleeves on different clocks; one alert is the entry rule itself, so it fires where entries are decided.
SPEC = """strat 1

strategy crossy:
    symbol:    "BINANCE:BTC/USDT"
    timeframe: 1h
    param fast = 10 in 5..50 step 5
    fast_ma = sma(close, fast)
    slow_ma = sma(close, 30)
    entry long when fast_ma crosses above slow_ma
    exit  long when fast_ma crosses below slow_ma
    size: equity_pct(100%)
    alert "golden cross, fast" when fast_ma crosses above slow_ma
    alert "big bar" when close > open * 1.03

portfolio pair:
    capital: 10_000 USDT
    sleeve btc = crossy(symbol="BINANCE:BTC/USDT", timeframe=4h) weight 50%
    sleeve eth = crossy(symbol="BINANCE:ETH/USDT", timeframe=1h, fast=20) weight 50%
"""


def _rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file as dicts."""
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def runs(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The spec run as a backtest and as a replay: both output folders."""
    root = tmp_path_factory.mktemp("alerts")
    spec = root / "alerts.strat"
    spec.write_text(SPEC)
    outputs = []
    for mode in ("--backtest", "--replay"):
        out = root / mode.strip("-")
        args = [
            "run",
            str(spec),
            mode,
            "--data",
            str(shared_data),
            "--out",
            str(out),
            "--no-report",
            "--no-save",
        ]
        assert main(args) == 0
        outputs.append(out)
    return outputs[0], outputs[1]


def test_alerts_fire_where_the_condition_holds(runs: tuple[Path, Path]) -> None:
    backtest, _ = runs
    alerts = _rows(backtest / "alerts.csv")
    trades = _rows(backtest / "trades.csv")
    for sleeve, symbol in (("btc", "BTC/USDT"), ("eth", "ETH/USDT")):
        crosses = [a for a in alerts if a["sleeve"] == sleeve and a["alert"] == "golden cross, fast"]
        assert {(a["strategy"], a["symbol"]) for a in crosses} == {("crossy", symbol)}
        # Decided at a bar's close, an entry fills at the next open: the same instant as the alert.
        entries = [t["entry_time"] for t in trades if t["sleeve"] == sleeve]
        assert [a["time"] for a in crosses] == entries
    assert sum(a["alert"] == "big bar" for a in alerts) > 0
    # Time order, sleeves in spec order at one time.
    keys = [(a["time"], a["sleeve"] != "btc") for a in alerts]
    assert keys == sorted(keys)


def test_replay_gives_identical_alerts(runs: tuple[Path, Path]) -> None:
    backtest, replay = runs
    assert (backtest / "alerts.csv").read_bytes() == (replay / "alerts.csv").read_bytes()
    assert (backtest / "alerts.csv").read_bytes().count(b"\n") > 10


def test_console_counts_alerts_and_cuts_no_cell(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    spec = tmp_path / "alerts.strat"
    spec.write_text(SPEC)
    out = tmp_path / "out"
    assert (
        main(["run", str(spec), "--data", str(shared_data), "--out", str(out), "--no-report", "--no-save"])
        == 0
    )
    fired = len(_rows(out / "alerts.csv"))
    printed = capsys.readouterr().out
    assert f"\n{fired:,} alerts fired (alerts.csv)\n" in printed
    # Captured output is no terminal: no cell is cut at 80 columns ("ETH/US…", "-1,640…" before).
    assert "…" not in printed
    # The sleeve row in full: symbol, weight, entries, win rate, PnL, contribution and fees uncut.
    row = r"│ eth +│ ETH/USDT │ 50\.00% │ +[\d,]+ │ +[\d.]+% │ +-?[\d,]+\.\d\d │ +-?[\d.]+% │ +[\d,]+\.\d\d │"
    assert re.search(row, printed), printed
