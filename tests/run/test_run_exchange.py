"""`strat run` with no --data: candles come from the exchange, then from the store.

The real ccxt client talks to a fake Binance on 127.0.0.1; the candles are kept in the store and a second
run reads them locally without asking the exchange again.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from runtime.cli import main

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "data"))

from fake_binance import FakeBinance  # noqa: E402


def test_backtest_downloads_then_reads_the_store(shared_data: Path, tmp_path: Path) -> None:
    fake = FakeBinance(shared_data, now_ms=time.time_ns() // 1_000_000).start()
    try:
        db = f"sqlite:///{tmp_path / 'strat.db'}"
        argv = [
            "run",
            str(ROOT / "library" / "bollinger_reversion.strat"),
            "--from",
            "2024-02-01",
            "--to",
            "2024-04-01",
            "--exchange-url",
            fake.url,
            "--db",
            db,
            "--no-report",
            "--no-save",
        ]
        assert main([*argv, "--out", str(tmp_path / "first")]) == 0
        klines = [r for r in fake.requests if r.path == "/api/v3/klines"]
        assert klines and all(r.query["symbol"] == "ETHUSDT" for r in klines)
        assert main([*argv, "--out", str(tmp_path / "second")]) == 0
        assert [r for r in fake.requests if r.path == "/api/v3/klines"] == klines  # nothing new fetched
        assert (tmp_path / "first" / "trades.csv").read_bytes() == (
            tmp_path / "second" / "trades.csv"
        ).read_bytes()
        summary = json.loads((tmp_path / "second" / "summary.json").read_text())
        assert summary["synthetic"] is False
        assert summary["start"].startswith("2024-0")
        # The exchange's lot size (0.00001 ETH) came with the download: every quantity is on that grid.
        rows = (tmp_path / "second" / "trades.csv").read_text().splitlines()[1:]
        quantities = [float(row.split(",")[7]) for row in rows]
        assert quantities and all(abs(q / 0.00001 - round(q / 0.00001)) < 1e-6 for q in quantities)
    finally:
        fake.stop()
    assert fake.unknown == []


@pytest.mark.parametrize("port", [9])
def test_unreachable_exchange_is_a_clear_error(
    port: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "run",
        str(ROOT / "library" / "ma_cross.strat"),
        "--from",
        "2024-02-01",
        "--to",
        "2024-02-02",
        "--exchange-url",
        f"http://127.0.0.1:{port}",
        "--db",
        f"sqlite:///{tmp_path / 's.db'}",
        "--no-save",
    ]
    assert main(argv) == 1
    assert "strat run:" in capsys.readouterr().err


def test_download_keeps_the_market_rules(shared_data: Path, tmp_path: Path) -> None:
    from runtime.store.markets import MarketStore
    from runtime.store.schema import open_store

    fake = FakeBinance(shared_data, now_ms=time.time_ns() // 1_000_000).start()
    try:
        db = f"sqlite:///{tmp_path / 'rules.db'}"
        argv = ["data", "download", "BTC/USDT", "-t", "1h", "--since", "2024-03-01", "--until", "2024-03-02"]
        assert main([*argv, "--exchange-url", fake.url, "--db", db]) == 0
    finally:
        fake.stop()
    rules = MarketStore(open_store(db)).get("binance", "BTC/USDT")
    assert rules is not None
    assert (rules.amount_step, rules.min_qty, rules.min_notional) == (0.00001, 0.00001, 5.0)
