"""CSV formats: plain with or without header, reordered header, Binance klines in ms and µs, directories."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from runtime.data.candles import DataError
from runtime.data.csvfiles import find_file, infer_timeframe, name_market, read_csv

ROWS = [
    (1704067200000, 100.0, 101.5, 99.25, 101.0, 12.5),
    (1704070800000, 101.0, 102.0, 100.5, 100.75, 0.0),
    (1704074400000, 100.75, 100.9, 98.0, 98.5, 3.125),
]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def _plain(rows: list[tuple[float, ...]]) -> list[str]:
    return [",".join(str(v) for v in row) for row in rows]


def _kline(row: tuple[float, ...], scale: int = 1) -> str:
    t = int(row[0]) * scale
    return ",".join(
        [str(t), *(str(v) for v in row[1:6]), str(t + 3_599_999 * scale), "5.0", "42", "1", "2", "0"]
    )


def _assert_rows(candles, rows=ROWS) -> None:  # type: ignore[no-untyped-def]
    assert candles.time.tolist() == [int(r[0]) for r in rows]
    assert candles.open.tolist() == [r[1] for r in rows]
    assert candles.high.tolist() == [r[2] for r in rows]
    assert candles.low.tolist() == [r[3] for r in rows]
    assert candles.close.tolist() == [r[4] for r in rows]
    assert candles.volume.tolist() == [r[5] for r in rows]


def test_plain_with_header(tmp_path: Path) -> None:
    path = _write(tmp_path / "BTCUSDT-1h.csv", ["timestamp,open,high,low,close,volume", *_plain(ROWS)])
    candles = read_csv(path)
    _assert_rows(candles)
    assert (candles.exchange, candles.symbol, candles.timeframe, candles.synthetic) == (
        "csv",
        "BTC/USDT",
        "1h",
        False,
    )
    assert candles.time.dtype == np.int64 and candles.close.dtype == np.float64


def test_plain_without_header(tmp_path: Path) -> None:
    _assert_rows(read_csv(_write(tmp_path / "ETH_USDT-1h.csv", _plain(ROWS))))


def test_header_in_another_order(tmp_path: Path) -> None:
    lines = ["volume,close,low,high,open,time"] + [
        ",".join(str(v) for v in (r[5], r[4], r[3], r[2], r[1], r[0])) for r in ROWS
    ]
    _assert_rows(read_csv(_write(tmp_path / "x.csv", lines), symbol="SOL/USDT", timeframe="1h"))


def test_binance_kline_ms_and_us(tmp_path: Path) -> None:
    ms = read_csv(_write(tmp_path / "BTCUSDT-1h-2024-01.csv", [_kline(r) for r in ROWS]))
    us = read_csv(_write(tmp_path / "BTCUSDT-1h-2025-01.csv", [_kline(r, 1000) for r in ROWS]))
    _assert_rows(ms)
    _assert_rows(us)
    assert ms.symbol == "BTC/USDT" and ms.timeframe == "1h"


def test_binance_kline_with_header(tmp_path: Path) -> None:
    header = (
        "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
        "taker_buy_volume,taker_buy_quote_volume,ignore"
    )
    _assert_rows(read_csv(_write(tmp_path / "BTCUSDT-1h.csv", [header, *(_kline(r) for r in ROWS)])))


def test_timeframe_inferred_when_the_name_does_not_say(tmp_path: Path) -> None:
    candles = read_csv(_write(tmp_path / "prices.csv", _plain(ROWS)), symbol="BTC/USDT")
    assert candles.timeframe == "1h"
    assert infer_timeframe(np.array([0, 300_000, 600_000, 1_200_000])) == "5m"


def test_unknown_layout_is_a_clear_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "BTCUSDT-1h.csv", ["1,2,3,4"])
    with pytest.raises(
        DataError, match=r"4 columns; expected 6 \(timestamp,open,high,low,close,volume\) or 12"
    ):
        read_csv(path)


def test_file_names() -> None:
    assert name_market(Path("BTCUSDT-1h.csv")) == ("BTC/USDT", "1h")
    assert name_market(Path("ETH_USDT-5m.csv")) == ("ETH/USDT", "5m")
    assert name_market(Path("BTCUSDT-1h-2024-01.csv")) == ("BTC/USDT", "1h")
    assert name_market(Path("BTCUSDT-7m.csv")) is None
    assert name_market(Path("notes.csv")) is None


def test_directory_of_real_files(shared_data: Path) -> None:
    assert find_file(shared_data, "ETH/USDT", "5m") == shared_data / "ETHUSDT-5m.csv"
    assert find_file(shared_data, "DOGE/USDT", "1h") is None
    btc = read_csv(shared_data / "BTCUSDT-1h.csv")
    assert len(btc) == 58_419
    assert (int(btc.time[0]), btc.open[0], btc.close[-1]) == (1502942400000, 4261.48, float(btc.close[-1]))
    assert btc.to_frame().iloc[0].tolist()[:6] == [
        1502942400000,
        4261.48,
        4313.62,
        4261.32,
        4308.83,
        47.181009,
    ]


def test_prefetched_file_reads_the_same_rows(tmp_path: Path) -> None:
    from runtime.data.csvfiles import _PREFETCHED, prefetch

    path = _write(tmp_path / "BTCUSDT-1h.csv", ["timestamp,open,high,low,close,volume", *_plain(ROWS)])
    prefetch(path)
    assert len(_PREFETCHED) == 1
    candles = read_csv(path, symbol="ETH/USDT")
    assert not _PREFETCHED  # taken by the read
    _assert_rows(candles)
    assert (candles.symbol, candles.timeframe) == ("ETH/USDT", "1h")


def test_prefetch_of_a_changed_file_is_not_used(tmp_path: Path) -> None:
    from runtime.data.csvfiles import _PREFETCHED, prefetch

    path = _write(tmp_path / "BTCUSDT-1h.csv", _plain(ROWS))
    prefetch(path)
    _PREFETCHED[next(iter(_PREFETCHED))].result()  # the first version is read
    _write(path, _plain(ROWS[:2]))
    _assert_rows(read_csv(path), ROWS[:2])
    _PREFETCHED.clear()
    prefetch(tmp_path / "missing.csv")  # not a file: nothing to read ahead
    assert not _PREFETCHED


def test_prefetch_error_surfaces_at_the_read(tmp_path: Path) -> None:
    from runtime.data.csvfiles import prefetch

    path = _write(tmp_path / "BTCUSDT-1h.csv", ["a,b,c"])
    prefetch(path)
    with pytest.raises(DataError, match="3 columns; expected 6"):
        read_csv(path)
