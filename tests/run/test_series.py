"""`strat series`: booleans 0/1, a portfolio's sleeve chosen by --sleeve, the same range as `strat run`."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from runtime.cli import main

ROOT = Path(__file__).resolve().parents[2]
PORTFOLIO = str(ROOT / "specs" / "portfolio.strat")
SPEC = """strat 1
strategy s:
    symbol: "BINANCE:BTC/USDT"
    timeframe: 1h
    c = close
    fast = sma(close, 10)
    up = close > fast
    entry long when up
    exit long when not up
"""


def _rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file as dicts."""
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_booleans_are_written_0_and_1(shared_data: Path, tmp_path: Path) -> None:
    spec, out = tmp_path / "s.strat", tmp_path / "s.csv"
    spec.write_text(SPEC)
    args = ["series", str(spec), "--data", str(shared_data), "--out", str(out), "--to", "2024-01-01"]
    assert main(args) == 0
    rows = _rows(out)
    assert len(rows) > 50_000
    for row in rows:
        expected = "1" if row["fast"] and float(row["c"]) > float(row["fast"]) else "0"
        assert row["up"] == expected, row


def test_a_portfolio_needs_its_sleeve_named(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "p.csv"
    base = ["series", PORTFOLIO, "--data", str(shared_data), "--out", str(out)]
    assert main(base) == 1
    assert capsys.readouterr().err.endswith(
        "strat series: portfolio demo has sleeves btc_trend, eth_revert, sol_break: "
        "choose one with --sleeve NAME\n"
    )
    assert not out.exists()
    assert main([*base, "--sleeve", "nope"]) == 1
    assert (
        "no sleeve 'nope' in demo; its sleeves: btc_trend, eth_revert, sol_break" in capsys.readouterr().err
    )
    # The sleeve's own market, clock and overrides: ETH 1h with trend=150.
    assert main([*base, "--sleeve", "eth_revert"]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "time,r,uptrend"
    assert f"{len(lines) - 1:,} rows of 1h bars, 2 series" in capsys.readouterr().out


def test_from_reads_warm_up_like_run(shared_data: Path, tmp_path: Path) -> None:
    spec, out = tmp_path / "s.strat", tmp_path / "s.csv"
    spec.write_text(SPEC)
    args = ["series", str(spec), "--data", str(shared_data), "--out", str(out)]
    assert main([*args, "--from", "2024-01-01", "--to", "2024-01-02"]) == 0
    rows = _rows(out)
    # Rows start at --from, and the warm-up read before it gives the first row its average.
    assert [r["time"] for r in rows[:2]] == ["1704067200000", "1704070800000"]
    assert len(rows) == 24
    assert rows[0]["fast"] != ""
