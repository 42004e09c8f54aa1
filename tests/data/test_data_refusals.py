"""Data that would give a silently wrong result: counted by `strat data check`, refused by `run`/`series`.

Impossible values (NaN, inf, price <= 0, negative or missing volume), open times that do not fit the
file's timeframe (mixed units, a finer timeframe's bars, off the grid), a file named for another market,
a feed that ends early or goes stale inside the range, too little data, windows longer than the data.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from dsl.checker import check_source
from runtime.cli import main
from runtime.commands.source import Source, SourceKind, parse_time
from runtime.data.candles import DataError
from runtime.data.csvfiles import list_files, read_csv

ROOT = Path(__file__).resolve().parents[2]
# Open time of 2024-01-01 00:00 UTC and one hour, ms.
JAN_1_2024, HOUR = 1_704_067_200_000, 3_600_000
# The CSV header of a plain candle file.
HEADER = "timestamp,open,high,low,close,volume"


def _rows(shared_data: Path, name: str, count: int) -> list[str]:
    """The first `count` data rows of a shared candle file, as text."""
    lines = (shared_data / name).read_text().splitlines()
    return lines[1 : count + 1]


def _write(path: Path, rows: list[str]) -> Path:
    """Write a plain candle file with a header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def _set(row: str, column: int, text: str) -> str:
    """A CSV row with one cell replaced."""
    cells = row.split(",")
    cells[column] = text
    return ",".join(cells)


def _run(*argv: str, out: Path) -> int:
    """`strat run` without saving or a report, outputs in `out`."""
    return main(["run", *argv, "--no-save", "--no-report", "--out", str(out)])


# ---------------------------------------------------------------- impossible values


def test_check_counts_every_impossible_value(
    strat: Callable[..., int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [f"{JAN_1_2024 + i * HOUR},10,11,9,10.5,5" for i in range(8)]
    rows[1] = _set(rows[1], 2, "inf")  # high = inf
    rows[2] = _set(rows[2], 4, "nan")  # close = NaN
    rows[3] = _set(rows[3], 5, "-2")  # negative volume
    rows[4] = rows[4].rsplit(",", 1)[0]  # a short row: no volume (read as NaN)
    rows[5] = _set(rows[5], 1, "0")  # open = 0
    path = _write(tmp_path / "BTCUSDT-1h.csv", rows)
    assert strat("data", "check", str(path), "--json") == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["nonfinite"], report["nonpositive"], report["negative_volume"]) == (3, 1, 1)
    assert strat("data", "check", str(path)) == 1
    assert capsys.readouterr().out.endswith(
        "3 rows with a NaN or infinite value (dropped); 1 rows with non-positive prices (dropped); "
        "1 rows with negative volume (dropped); 1 gaps (5 missing bars, longest 5)\n"
    )


def test_run_refuses_impossible_rows_unless_asked_to_drop_them(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _rows(shared_data, "ETHUSDT-1h.csv", 800)
    for i in range(100, 110):
        rows[i] = _set(rows[i], 2, "inf")
    data = _write(tmp_path / "BTCUSDT-1h.csv", rows)
    spec = ROOT / "library" / "ma_cross.strat"
    assert _run(str(spec), "--data", str(data), out=tmp_path / "a") == 1
    assert capsys.readouterr().err.endswith(
        "strat run: BTC/USDT 1h: 10 rows with impossible values (10 NaN or infinite): fix the file, or pass "
        "--drop-bad-rows to drop them\n"
    )
    assert _run(str(spec), "--data", str(data), "--drop-bad-rows", out=tmp_path / "b") == 0
    assert "10 rows with a NaN or infinite value (dropped)" in capsys.readouterr().err


# ---------------------------------------------------------------- open times


def test_open_times_in_seconds_are_read_as_seconds(shared_data: Path, tmp_path: Path) -> None:
    rows = _rows(shared_data, "ETHUSDT-1h.csv", 50)
    seconds = [_set(r, 0, str(int(r.split(",")[0]) // 1000)) for r in rows]
    ms = read_csv(_write(tmp_path / "ms" / "ETHUSDT-1h.csv", rows))
    s = read_csv(_write(tmp_path / "s" / "ETHUSDT-1h.csv", seconds))
    assert np.array_equal(s.time, ms.time) and s.mixed_units == 0 and int(s.time[0]) == JAN_1_2024


def test_mixed_units_are_counted_and_refused(
    strat: Callable[..., int], shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _rows(shared_data, "BTCUSDT-5m.csv", 600)
    for i in range(0, 600, 100):
        rows[i] = _set(rows[i], 0, str(int(rows[i].split(",")[0]) * 1000))  # µs
    rows[7] = _set(rows[7], 0, str(int(rows[7].split(",")[0]) // 1000))  # s
    path = _write(tmp_path / "BTCUSDT-5m.csv", rows)
    assert strat("data", "check", str(path), "--json") == 1
    assert json.loads(capsys.readouterr().out)["mixed_units"] == 7
    assert _run(str(ROOT / "library" / "ma_cross.strat"), "--data", str(path), out=tmp_path / "o") == 1
    assert "BTC/USDT 5m: 7 open times in another unit (s, ms, µs) than the rest of the file" in (
        capsys.readouterr().err
    )


def test_finer_bars_in_a_file_named_coarser_are_refused(
    strat: Callable[..., int], shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path / "BTCUSDT-1h.csv", _rows(shared_data, "BTCUSDT-5m.csv", 1200))
    assert strat("data", "check", str(path), "--json") == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["crowded"], report["misaligned"]) == (1199, 1100)
    assert _run(str(ROOT / "library" / "ma_cross.strat"), "--data", str(path), out=tmp_path / "o") == 1
    assert capsys.readouterr().err.endswith(
        "strat run: BTC/USDT 1h: 1199 open times less than one 1h bar after the previous one; 1100 open "
        "times off the 1h grid: is this 1h data? (strat data check shows more)\n"
    )


# ---------------------------------------------------------------- which file feeds which market


def test_a_directory_named_like_a_csv_file_is_no_candle_file(
    strat: Callable[..., int], shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "x.csv").mkdir()
    (tmp_path / "ETHUSDT-1h.csv").mkdir()
    _write(tmp_path / "BTCUSDT-1h.csv", _rows(shared_data, "BTCUSDT-1h.csv", 300))
    assert list(list_files(tmp_path)) == [("BTC/USDT", "1h")]
    assert strat("data", "check", str(tmp_path)) == 0
    assert capsys.readouterr().out.startswith("BTCUSDT-1h.csv: BTC/USDT 1h, 300 rows")
    assert _run(str(ROOT / "library" / "ma_cross.strat"), "--data", str(tmp_path), out=tmp_path / "o") == 0


def test_a_file_named_for_another_market_is_refused(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = str(ROOT / "library" / "macd.strat")
    assert _run(spec, "--data", str(shared_data / "ETHUSDT-1h.csv"), out=tmp_path / "o") == 1
    assert capsys.readouterr().err == (
        f"strat run: --data {shared_data / 'ETHUSDT-1h.csv'}: its name says ETH/USDT 1h, but the spec "
        "reads BTC/USDT 4h; pass the BTC/USDT file (at 4h or finer) or a folder of "
        "SYMBOL-TIMEFRAME.csv files\n"
    )


def test_a_file_without_a_market_in_its_name_feeds_one_symbol(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path / "candles.csv", _rows(shared_data, "BTCUSDT-1h.csv", 100))
    source = Source(kind=SourceKind.CSV, path=path)
    assert len(source.candles("BTC/USDT", "1h", None, None)) == 100
    assert capsys.readouterr().err == "csv BTC/USDT 1h from candles.csv (1h)\n"
    with pytest.raises(DataError, match="can feed one symbol, but the spec reads BTC/USDT and ETH/USDT"):
        source.candles("ETH/USDT", "1h", None, None)


# ---------------------------------------------------------------- coverage of the range


def test_a_finer_file_feeds_a_range_the_timeframes_own_file_does_not_cover(
    shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # BTCUSDT-1h.csv ends on 2024-04-21, BTCUSDT-5m.csv runs to September.
    source = Source(kind=SourceKind.CSV, path=shared_data)
    may = source.candles("BTC/USDT", "1h", parse_time("2024-05-01"), parse_time("2024-06-01"))
    assert (len(may), int(may.time[-1])) == (31 * 24, parse_time("2024-05-31T23:00"))
    assert capsys.readouterr().err == "csv BTC/USDT 1h from BTCUSDT-5m.csv (5m, resampled)\n"


def test_a_portfolio_ends_where_every_feed_has_data(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(str(ROOT / "specs" / "portfolio.strat"), "--data", str(shared_data), out=tmp_path) == 0
    assert (
        "csv BTC/USDT 4h from BTCUSDT-5m.csv (5m, resampled)\n"
        "strat run: BTC/USDT 4h candles ended 2024-04-21 12:00; read again for the range the other feeds "
        "reach, they now end 2024-09-06 04:00\n"
    ) in capsys.readouterr().err
    summary = json.loads((tmp_path / "summary.json").read_text())
    # ETHUSDT-1h.csv ends first (its last bar opens 2024-09-06 03:00); BTC 4h comes from the 5m file.
    assert summary["end"] == "2024-09-06T04:00:00Z"
    btc = [line for line in (tmp_path / "trades.csv").read_text().splitlines() if line.startswith("btc_")]
    assert max(line.split(",")[3] for line in btc) > "2024-06"


def test_a_feed_ending_early_ends_the_run_with_a_note(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    _write(data / "ETHUSDT-5m.csv", _rows(shared_data, "ETHUSDT-5m.csv", 30_000))
    _write(data / "ETHUSDT-1h.csv", _rows(shared_data, "ETHUSDT-1h.csv", 2_500))
    _write(data / "BTCUSDT-1h.csv", _rows(shared_data, "ETHUSDT-1h.csv", 1_500))
    assert _run(str(ROOT / "specs" / "mtf.strat"), "--data", str(data), out=tmp_path / "o") == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["end"] == "2024-03-03T12:00:00Z"  # the 1,500th hour of 2024 closes then
    assert "strat run: the run ends 2024-03-03 12:00, where the BTC/USDT 1h candles end (other feeds to " in (
        capsys.readouterr().err
    )


def test_a_stale_feed_is_refused_unless_gaps_are_filled(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _rows(shared_data, "ETHUSDT-1h.csv", 1_000)
    path = _write(tmp_path / "BTCUSDT-1h.csv", rows[:400] + rows[500:])  # 100 hours without a candle
    spec = str(ROOT / "library" / "ma_cross.strat")
    assert _run(spec, "--data", str(path), out=tmp_path / "a") == 1
    assert capsys.readouterr().err.endswith(
        "strat run: BTC/USDT 1h: no candle from 2024-01-17 16:00 to 2024-01-21 20:00 (100h): the feed is "
        "stale there; pass --fill-gaps to carry its last price over the gap, or choose --from/--to "
        "around it\n"
    )
    assert _run(spec, "--data", str(path), "--fill-gaps", out=tmp_path / "b") == 0
    # An outage of a day and a half (as Binance's of 2018) is a gap, not staleness.
    short = _write(tmp_path / "short" / "BTCUSDT-1h.csv", rows[:400] + rows[436:])
    assert _run(spec, "--data", str(short), out=tmp_path / "c") == 0


# ---------------------------------------------------------------- too little data


def test_too_little_data_is_an_error_that_says_why(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = str(ROOT / "library" / "ma_cross.strat")
    five = _write(tmp_path / "BTCUSDT-1h.csv", _rows(shared_data, "BTCUSDT-1h.csv", 5))
    assert _run(spec, "--data", str(five), "--set", "slow=30", out=tmp_path / "a") == 1
    assert capsys.readouterr().err.endswith(
        "strat run: BTC/USDT 1h: 5 bars, the strategy's warm-up needs 30 (longest window: sma() "
        "length=30): no bar was traded\n"
    )
    one = _write(tmp_path / "one" / "BTCUSDT-1h.csv", _rows(shared_data, "BTCUSDT-1h.csv", 1))
    assert _run(spec, "--data", str(one), out=tmp_path / "b") == 1
    assert "BTC/USDT 1h: 1 bar, the strategy's warm-up needs 30" in capsys.readouterr().err
    same = ("--from", "2024-03-01", "--to", "2024-03-01")
    assert _run(spec, "--data", str(shared_data), *same, out=tmp_path / "c") == 1
    assert capsys.readouterr().err.endswith(
        "strat run: --from 2024-03-01 00:00 is not before --to 2024-03-01 00:00: no bar to trade\n"
    )


_LONG = """strat 1
strategy long_window:
    symbol:    "BINANCE:BTC/USDT"
    timeframe: 1h
    m = sma(close, LENGTH)
    entry long when close > m
    exit  long when close < m
"""


def test_a_window_longer_than_the_data_is_refused_before_it_is_allocated(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "long.strat"
    spec.write_text(_LONG.replace("LENGTH", "9000000"))
    data = str(shared_data / "BTCUSDT-1h.csv")
    assert _run(str(spec), "--data", data, out=tmp_path / "o") == 1
    assert capsys.readouterr().err.endswith(
        "strat run: BTC/USDT 1h: 58,419 bars, the strategy's warm-up needs 8,999,999 (longest window: sma() "
        "length=9,000,000): no bar was traded\n"
    )
    assert main(["series", str(spec), "--data", data, "--out", str(tmp_path / "s.csv")]) == 1
    assert capsys.readouterr().err.endswith(
        "strat series: BTC/USDT 1h: 58,419 bars, the strategy's warm-up needs 8,999,999 (longest window: "
        "sma() length=9,000,000): no bar was traded\n"
    )


def test_the_checker_refuses_an_absurd_window() -> None:
    result = check_source(_LONG.replace("LENGTH", "1000000000000"))
    assert [(d.code, d.message) for d in result.diagnostics] == [
        ("E025", "length of sma() must be <= 10,000,000 bars (no data is longer)")
    ]
