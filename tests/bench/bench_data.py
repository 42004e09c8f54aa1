"""Benchmark: load 1,000,000 candles from CSV and from the SQLite store (target: under 1 s each).

Prints the best of three timings of each, beside pandas.read_csv of the same file measured in the same
run as the baseline. The series is the detrended, tiled real BTC/USDT 1h series described in
../shared/data/README.md, relabelled as consecutive minutes from 2020-01-01.

    .venv/bin/python tests/bench/bench_data.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from runtime.data.candles import Candles  # noqa: E402
from runtime.data.csvfiles import read_csv  # noqa: E402
from runtime.data.loader import prepare  # noqa: E402
from runtime.store.candles import CandleStore  # noqa: E402
from runtime.store.schema import open_store  # noqa: E402

BARS = 1_000_000  # candles in the benchmark series
START = 1_577_836_800_000  # 2020-01-01 00:00 UTC, ms


def build_series(source: Path) -> Candles:
    """The README's 1,000,000-bar series: BTC 1h with its drift removed, tiled, as 1m bars."""
    real = pd.read_csv(source)
    m = len(real)
    mu = np.log(real["close"].iloc[-1] / real["open"].iloc[0]) / (m - 1)
    scale = np.exp(-mu * np.arange(m))
    reps = -(-BARS // m)
    prices = [np.tile(real[c].to_numpy() * scale, reps)[:BARS] for c in ("open", "high", "low", "close")]
    volume = np.tile(real["volume"].to_numpy(), reps)[:BARS]
    time_ms = START + 60_000 * np.arange(BARS, dtype=np.int64)
    return Candles.from_arrays("binance", "BTC/USDT", "1m", time_ms, [*prices, volume])


def best_of(fn: Callable[[], object], runs: int = 3) -> float:
    """Shortest wall time of `runs` calls, seconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _row_table_read(path: Path, series: Candles) -> None:
    """The textbook layout for comparison: one SQLite row per candle, read back into arrays."""
    import sqlite3

    db = sqlite3.connect(path)
    db.execute("CREATE TABLE IF NOT EXISTS c (t INTEGER PRIMARY KEY, o REAL, h REAL, l REAL, c REAL, v REAL)")
    rows = zip(
        series.time.tolist(),
        *(getattr(series, n).tolist() for n in ("open", "high", "low", "close", "volume")),
        strict=True,
    )
    db.executemany("INSERT OR REPLACE INTO c VALUES (?, ?, ?, ?, ?, ?)", rows)
    db.commit()
    start = time.perf_counter()
    table = np.array(db.execute("SELECT t, o, h, l, c, v FROM c ORDER BY t").fetchall(), dtype=np.float64)
    _row_table_read.seconds = time.perf_counter() - start  # type: ignore[attr-defined]
    db.close()
    assert len(table) == BARS


def main() -> None:
    """Build the series, write it as CSV and into a fresh SQLite store, and time the loads."""
    data = Path(os.environ.get("STRAT_DATA_DIR", ROOT.parent / "shared" / "data"))
    if not (data / "BTCUSDT-1h.csv").exists():
        print("skipped: ../shared/data is not available")
        return
    series = build_series(data / "BTCUSDT-1h.csv")
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "BTCUSDT-1m.csv"
        series.to_frame().drop(columns="filled").to_csv(csv, index=False)
        store = CandleStore(open_store(f"sqlite:///{Path(tmp) / 'bench.db'}"))
        start = time.perf_counter()
        store.write(series)
        write_s = time.perf_counter() - start

        baseline = best_of(lambda: pd.read_csv(csv))
        from_csv = best_of(lambda: read_csv(csv))
        from_store = best_of(lambda: store.read("binance", "BTC/USDT", "1m"))
        cleaned = best_of(lambda: prepare(read_csv(csv), "1m", START, START + BARS * 60_000, fill_gaps=False))
        loaded = store.read("binance", "BTC/USDT", "1m")
        assert len(loaded) == BARS and np.array_equal(loaded.close, series.close)
        _row_table_read(Path(tmp) / "rows.db", series)
        per_row = float(_row_table_read.seconds)  # type: ignore[attr-defined]
        size_mb = csv.stat().st_size / 1e6

    print(f"1,000,000 candles ({size_mb:.0f} MB CSV), best of 3:")
    print(f"  pandas.read_csv (baseline)      {baseline * 1000:8.1f} ms   1.00x")
    print(f"  read_csv (format detection)     {from_csv * 1000:8.1f} ms   {from_csv / baseline:.2f}x")
    print(f"  read_csv + clean/validate       {cleaned * 1000:8.1f} ms   {cleaned / baseline:.2f}x")
    print(f"  store read (SQLite, blocks)     {from_store * 1000:8.1f} ms   {from_store / baseline:.2f}x")
    print(f"  store write (SQLite, one-off)   {write_s * 1000:8.1f} ms")
    print(
        f"  one row per candle (sqlite3)    {per_row * 1000:8.1f} ms   {per_row / baseline:.2f}x"
        "  (layout not used)"
    )
    print(
        f"  target: under 1000 ms each -> csv {'ok' if from_csv < 1 else 'MISSED'}, "
        f"store {'ok' if from_store < 1 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
