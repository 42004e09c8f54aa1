"""`strat data ...` end to end, and the shared `--data` options other commands use."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fake_binance import FakeBinance

from runtime.commands.source import DEFAULT_HISTORY_MS, Source, SourceKind, add_data_arguments, parse_time
from runtime.data.csvfiles import read_csv

Strat = Callable[..., int]


def test_check_json_on_the_real_btc_file(
    strat: Strat, shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert strat("data", "check", str(shared_data / "BTCUSDT-1h.csv"), "--json") == 0
    report = json.loads(capsys.readouterr().out)
    expected = {
        "rows": 58419,
        "start": 1502942400000,
        "end": 1713708000000,
        "timeframe": "1h",
        "duplicates": 0,
        "gaps": 28,
        "missing_bars": 128,
        "longest_gap_bars": 33,
        "zero_volume": 4,
        "ohlc_errors": 0,
    }
    assert {key: report[key] for key in expected} == expected
    assert report["spikes"] == len(report["spike_times"])


def test_check_exits_1_on_rows_needing_repair(
    strat: Strat, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "BTCUSDT-1h.csv"
    path.write_text("0,1,2,0.5,1.5,3\n3600000,1.5,1.6,1.4,1.5,0\n0,1,2,0.5,1.5,3\n")
    assert strat("data", "check", str(path)) == 1
    assert capsys.readouterr().out == (
        "BTCUSDT-1h.csv: BTC/USDT 1h, 3 rows, 1970-01-01 00:00 to 1970-01-01 01:00: "
        "1 rows out of order (sorted); 1 duplicate timestamps (kept once); 1 zero-volume bars\n"
    )


def test_import_then_list(
    strat: Strat, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'strat.db'}"
    assert strat("data", "import", str(shared_data / "ETHUSDT-1h.csv"), "--db", db) == 0
    assert capsys.readouterr().out == (
        "ETHUSDT-1h.csv: 5980 candles of binance ETH/USDT 1h stored (2024-01-01 00:00 to 2024-09-06 03:00)\n"
    )
    assert strat("data", "list", "--db", db) == 0
    out = capsys.readouterr().out
    assert "│ binance  │ ETH/USDT │ 1h        │ 2024-01-01 00:00 │ 2024-09-06 03:00 │ 5980 │" in out


def test_download_through_the_cli(
    strat: Strat, fake_binance: FakeBinance, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_binance.now_ms = time.time_ns() // 1_000_000  # the fake's clock is the wall clock here
    db = f"sqlite:///{tmp_path / 'strat.db'}"
    argv = ("data", "download", "ETH/USDT", "SOL/USDT", "-t", "1h", "--since", "2024-09-06")
    assert strat(*argv, "--until", "2024-09-06T12:00", "--exchange-url", fake_binance.url, "--db", db) == 0
    assert capsys.readouterr().out == (
        "binance ETH/USDT 1h: 4 new candles; 4 stored from 2024-09-06 00:00 to 2024-09-06 03:00\n"
        "binance SOL/USDT 1h: 12 new candles; 12 stored from 2024-09-06 00:00 to 2024-09-06 11:00\n"
    )


def _parser() -> argparse.ArgumentParser:
    """A parser with the data options and --from/--to, as `strat run` and `strat series` have them."""
    parser = argparse.ArgumentParser()
    add_data_arguments(parser)
    parser.add_argument("--from", dest="start")
    parser.add_argument("--to", dest="end")
    return parser


def _source(*argv: str) -> Source:
    return Source.from_args(_parser().parse_args(list(argv)))


def test_source_candles_a_csv_directory_resamples_and_reports(
    shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start, end = parse_time("2024-02-01"), parse_time("2024-02-03")
    candles = _source("--data", str(shared_data)).candles("BINANCE:ETH/USDT", "4h", start, end)
    hourly = read_csv(shared_data / "ETHUSDT-1h.csv").slice(start, end)
    assert len(candles) == 12 and candles.timeframe == "4h"
    assert candles.high[0] == hourly.high[:4].max() and candles.close[-1] == hourly.close[-1]
    assert capsys.readouterr().err == "csv ETH/USDT 4h from ETHUSDT-1h.csv (1h, resampled)\n"


def test_source_candles_fills_gaps_when_asked(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    start, end = parse_time("2018-02-07"), parse_time("2018-02-10")
    path = str(shared_data / "BTCUSDT-1h.csv")
    plain = _source("--data", path).candles("BTC/USDT", "1h", start, end)
    filled = _source("--data", path, "--fill-gaps").candles("BTC/USDT", "1h", start, end)
    assert (len(plain), len(filled), int(filled.filled.sum())) == (39, 72, 33)
    assert capsys.readouterr().err == (
        "csv BTC/USDT 1h from BTCUSDT-1h.csv (1h): 1 gaps (33 missing bars, longest 33)\n"
        "csv BTC/USDT 1h from BTCUSDT-1h.csv (1h): 1 gaps (33 missing bars, longest 33); "
        "33 bars filled (zero volume)\n"
    )


def test_source_candles_synthetic_is_labelled(capsys: pytest.CaptureFixture[str]) -> None:
    candles = _source("--data", "synthetic").candles("BTC/USDT", "1h", 0, 100 * 3_600_000)
    assert len(candles) == 100 and candles.synthetic and np.all(candles.volume > 0)
    assert capsys.readouterr().err == "synthetic BTC/USDT 1h [SYNTHETIC]: SYNTHETIC data\n"


def test_missing_csv_is_a_clear_error(shared_data: Path) -> None:
    with pytest.raises(
        FileNotFoundError, match=r"no DOGE/USDT file at 1h or finer \(found: BTC/USDT 1h, BTC/USDT 1m"
    ):
        _source("--data", str(shared_data)).candles("DOGE/USDT", "1h", 0, 1)


def test_options_are_decoded_once_into_a_source() -> None:
    parser = _parser()
    argv = ["--data", "d/BTCUSDT-1h.csv", "--fill-gaps", "--db", "sqlite:///x.db", "--from", "2024-01-01"]
    assert Source.from_args(parser.parse_args(argv)) == Source(
        kind=SourceKind.CSV,
        path=Path("d/BTCUSDT-1h.csv"),
        db_url="sqlite:///x.db",
        fill_gaps=True,
        start=1_704_067_200_000,
        chosen=True,
    )
    synthetic = Source.from_args(parser.parse_args(["--data", "synthetic", "--to", "1000"]))
    assert (synthetic.kind, synthetic.path, synthetic.end) == (SourceKind.SYNTHETIC, None, 1000)
    store = Source.from_args(parser.parse_args(["--exchange", "kraken", "--exchange-url", "http://h"]))
    assert (store.kind, store.exchange, store.api_url) == (SourceKind.STORE, "kraken", "http://h")
    with pytest.raises(ValueError, match="not a date: 'soon'"):
        Source.from_args(parser.parse_args(["--from", "soon"]))


def test_one_range_policy_for_every_source() -> None:
    now = 2 * DEFAULT_HISTORY_MS
    csv = Source(kind=SourceKind.CSV, path=Path("x.csv"))
    # No start: a CSV file is read whole, the synthetic market and the exchange give a year before the end.
    assert csv.span(None, None, now) == (0, now)
    for kind in (SourceKind.SYNTHETIC, SourceKind.STORE):
        assert Source(kind=kind).span(None, None, now) == (now - DEFAULT_HISTORY_MS, now)
        # --to without --from: the year before that end.
        assert Source(kind=kind).span(None, now // 2 + 5, now) == (5, now // 2 + 5)
    # A start asked for (--from, less a run's warm-up) is kept, but never before the epoch.
    assert csv.span(-7, 100, now) == (0, 100)
    assert Source(kind=SourceKind.STORE).span(None, 1_000, now) == (0, 1_000)
    assert Source(kind=SourceKind.STORE).span(42, None, now) == (42, now)
