"""Rules that read trade state are decided inside the simulation loop, with the state at the bar's close."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from runtime.cli import main

HEAD = """strat 1
strategy t:
    symbol:    "BINANCE:BTC/USDT"
    timeframe: 1h
    fast = sma(close, 10)
    slow = sma(close, 30)
    entry long when fast crosses above slow
"""


def _trades(tmp_path: Path, name: str, body: str, data: Path, *extra: str) -> list[dict[str, str]]:
    """Run a spec over BTC 1h and return its trades."""
    spec = tmp_path / f"{name}.strat"
    spec.write_text(HEAD + body)
    out = tmp_path / name
    args = ["run", str(spec), "--data", str(data / "BTCUSDT-1h.csv"), "--out", str(out), "--no-report"]
    assert main([*args, "--no-save", "--from", "2023-01-01", *extra]) == 0
    with (out / "trades.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_bars_since_entry_exit_equals_max_hold(shared_data: Path, tmp_path: Path) -> None:
    # Held 24 bars after the entry fill bar, decided at that close: the same as a 25-bar max_hold.
    by_rule = _trades(tmp_path, "rule", "    exit long when bars_since_entry >= 24\n", shared_data)
    by_hold = _trades(tmp_path, "hold", "    max_hold: 25h\n", shared_data)
    assert len(by_rule) == len(by_hold) > 20
    for a, z in zip(by_rule, by_hold, strict=True):
        assert {**a, "exit_reason": ""} == {**z, "exit_reason": ""}
        assert (a["exit_reason"], z["exit_reason"]) in {("signal", "max_hold"), ("end", "end")}


def test_trade_state_backtest_equals_replay(shared_data: Path, tmp_path: Path) -> None:
    body = (
        "    exit long when unrealized_pnl < -0.01 * entry_price * position_size or bars_since_entry > 48\n"
        "    stop_loss: 1.5%\n"
    )
    backtest = _trades(tmp_path, "bt", body, shared_data)
    replay = _trades(tmp_path, "rp", body, shared_data, "--replay")
    assert backtest == replay
    reasons = {t["exit_reason"] for t in backtest}
    assert {"signal", "stop_loss"} <= reasons


def test_series_of_trade_state_is_refused_plainly(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "s.strat"
    spec.write_text(HEAD + "    held = bars_since_entry\n    exit long when held > 5\n")
    out = tmp_path / "s.csv"
    assert main(["series", str(spec), "--data", str(shared_data), "--out", str(out)]) == 1
    assert capsys.readouterr().err.endswith(
        "strat series: held read trade state (position_size, ...), which only a simulated run has; "
        "use strat run\n"
    )
    assert not out.exists()
