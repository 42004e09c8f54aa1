"""Eight writers at once on one fresh SQLite store: imports and saved runs, nothing lost or duplicated.

The live engine, the API and the CLI share one store, so concurrent writers must wait for each other (WAL
mode, a busy timeout) and the first use of a fresh store by several processes must not race on creating
its tables.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from runtime.data.synthetic import generate
from runtime.store.candles import CandleStore
from runtime.store.runs import RunStore
from runtime.store.schema import close_store, open_store

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC


def test_eight_concurrent_writers_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    commands = []
    for i, coin in enumerate(("BTC", "ETH", "SOL", "XRP")):
        path = tmp_path / f"{coin}USDT-1h.csv"
        bars = generate(f"{coin}/USDT", "1h", T0, 2_000, seed=i)
        columns = (bars.time, bars.open, bars.high, bars.low, bars.close, bars.volume)
        rows = zip(*(c.tolist() for c in columns), strict=True)
        path.write_text("".join(f"{t},{o!r},{h!r},{lo!r},{c!r},{v!r}\n" for t, o, h, lo, c, v in rows))
        commands.append(["data", "import", str(path), "--db", url])
        out = tmp_path / f"run{i}"
        spec = str(ROOT / "library" / "ma_cross.strat")
        commands.append(["run", spec, "--data", "synthetic", "--db", url, "--no-report", "--out", str(out)])
    # All eight start together against a store that does not exist yet.
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", *args],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    for proc, args in zip(procs, commands, strict=True):
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, (args, err)
        assert "Traceback" not in out + err
    engine = open_store(url)
    try:
        series = CandleStore(engine).list_series()
        assert sorted((s.symbol, s.rows) for s in series) == [
            (f"{coin}/USDT", 2_000) for coin in ("BTC", "ETH", "SOL", "XRP")
        ]
        runs = RunStore(engine).latest(100)
        assert len(runs) == 4 and len({r.id for r in runs}) == 4
    finally:
        close_store(url)
