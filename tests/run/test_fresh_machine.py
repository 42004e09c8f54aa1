"""The README's main command on a fresh machine: no network, no store, a cold kernel cache.

`strat run specs/portfolio.strat --backtest` reads the candles shipped in specs/data (the spec's `data:`
setting) without any network access; a store that covers a range is read without contacting the exchange;
an unreachable exchange is an error within seconds that says what is missing and what to do; and the
first run's compilation of the kernels is shown.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dsl.checker import check_file
from runtime.cli import main
from runtime.commands.compiling import CompileProgress
from runtime.commands.source import Source, SourceKind
from runtime.data.csvfiles import read_csv
from runtime.exchange.client import ExchangeUnavailable, RetryPolicy
from runtime.exchange.feed import ExchangeFeed
from runtime.store.candles import CandleStore
from runtime.store.schema import open_store

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
H = 3_600_000  # one hour, ms
JAN_1_2024 = 1_704_067_200_000  # 2024-01-01 00:00 UTC, ms


def _closed_port() -> int:
    """A local TCP port nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _offline_feed(clock: int | None = None) -> ExchangeFeed:
    """The real ccxt client of Binance sent to a closed local port, with the default retry policy."""
    url = f"http://127.0.0.1:{_closed_port()}"
    if clock is None:
        return ExchangeFeed("binance", api_url=url)
    return ExchangeFeed("binance", api_url=url, clock=lambda: clock)


# ---------------------------------------------------------------- the shipped demo data


def test_the_demo_data_is_small_and_covers_what_the_demo_specs_read() -> None:
    files = sorted(p.name for p in (SPECS / "data").iterdir())
    assert files == ["BTCUSDT-1h.csv", "BTCUSDT-4h.csv", "ETHUSDT-1h.csv", "ETHUSDT-5m.csv", "SOLUSDT-1h.csv"]
    assert (
        sum(p.stat().st_size for p in (SPECS / "data").iterdir()) < 3_500_000
    )  # bytes: well under the 10 MB a repository should carry
    # Each demo spec reads specs/data, and every feed it reads is there at its timeframe.
    for spec in ("portfolio.strat", "mtf.strat"):
        program = check_file(SPECS / spec).program
        assert program is not None
        target = program.portfolios[0].data if program.portfolios else program.strategies[0].data
        assert target == str((SPECS / "data").resolve())
    # The portfolio's three feeds end together (no sleeve goes stale before the others).
    ends = {name: int(read_csv(SPECS / "data" / name).time[-1]) for name in files}
    closes = {ends["BTCUSDT-4h.csv"] + 4 * H, ends["ETHUSDT-1h.csv"] + H, ends["SOLUSDT-1h.csv"] + H}
    assert closes == {JAN_1_2024 + (249 * 24 + 4) * H}  # 2024-09-06 04:00


def test_the_main_command_runs_offline_without_a_store_or_ccxt(tmp_path: Path) -> None:
    # A fresh process in an empty folder, every socket refused: the README's main command succeeds.
    code = textwrap.dedent(
        f"""
        import socket, sys
        def refuse(*args, **kwargs):
            raise OSError("network access in an offline test")
        socket.socket.connect = refuse
        socket.getaddrinfo = refuse
        from runtime.cli import main
        rc = main(["run", {str(SPECS / "portfolio.strat")!r}, "--backtest", "--out", "out"])
        assert rc == 0, rc
        assert "ccxt" not in sys.modules, "ccxt was imported"
        """
    )
    env = {**os.environ, "STRAT_DB_URL": f"sqlite:///{tmp_path / 'store' / 'strat.db'}"}
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert time.perf_counter() - began < 60  # seconds warm; a cold kernel cache compiles first
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["start"][:10], summary["end"][:16], summary["synthetic"]) == (
        "2024-01-01",
        "2024-09-06T04:00",
        False,
    )
    assert summary["entries"] > 0
    # The run was saved into a store created on purpose (not a folder left by a failed download).
    assert (tmp_path / "store" / "strat.db").exists()


def test_the_same_run_twice_gives_the_same_files(tmp_path: Path) -> None:
    for out in ("a", "b"):
        assert (
            main(
                [
                    "run",
                    str(SPECS / "portfolio.strat"),
                    "--no-save",
                    "--no-report",
                    "--out",
                    str(tmp_path / out),
                ]
            )
            == 0
        )
    for name in ("summary.json", "trades.csv", "equity.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


# ---------------------------------------------------------------- the data: setting


def _check(tmp_path: Path, setting: str, where: str = "strategy") -> tuple[list[str], str | None]:
    """Check spec/x.strat, a strategy (and a portfolio) with `data: SETTING`; its messages and data value."""
    lines = ["strat 1", "strategy s:", '    symbol: "BINANCE:BTC/USDT"']
    lines += [f"    data: {value}" for value in ([setting] if where == "strategy" else [])]
    lines += ["    entry long when close > sma(close, 3)", "    exit long when close < sma(close, 3)"]
    strategy = "\n".join(lines) + "\n"
    if where == "portfolio":
        strategy += f"portfolio p:\n    data: {setting}\n    sleeve a = s() weight 50%\n"
    (tmp_path / "spec").mkdir(exist_ok=True)
    path = tmp_path / "spec" / "x.strat"
    path.write_text(strategy)
    checked = check_file(path)
    messages = [f"{d.code} {d.message}" for d in checked.diagnostics]
    if checked.program is None:
        return messages, None
    owner = checked.program.portfolios[0] if where == "portfolio" else checked.program.strategies[0]
    return messages, owner.data


@pytest.mark.parametrize("where", ["strategy", "portfolio"])
def test_data_setting_values(tmp_path: Path, where: str) -> None:
    (tmp_path / "spec" / "candles").mkdir(parents=True)
    assert _check(tmp_path, '"candles"', where) == ([], str((tmp_path / "spec" / "candles").resolve()))
    assert _check(tmp_path, "exchange", where) == ([], "exchange")
    assert _check(tmp_path, "synthetic", where) == ([], "synthetic")
    # A folder named like a word is a folder: the string form is never the keyword.
    (tmp_path / "spec" / "synthetic").mkdir()
    assert _check(tmp_path, '"synthetic"', where) == ([], str((tmp_path / "spec" / "synthetic").resolve()))


def test_data_setting_errors_are_located_and_say_why(tmp_path: Path) -> None:
    missing = (tmp_path / "spec" / "nodata").resolve()
    assert _check(tmp_path, '"nodata"') == ([f"E038 data folder 'nodata' does not exist ({missing})"], None)
    assert _check(tmp_path, '"x.strat"')[0] == [
        f"E038 data folder 'x.strat' is a file, not a folder ({tmp_path.resolve() / 'spec' / 'x.strat'})"
    ]
    expects = 'E026 data expects a folder such as "data" (relative to the spec), exchange or synthetic'
    assert _check(tmp_path, "exchnage")[0] == [expects]
    assert _check(tmp_path, "3")[0] == [expects]
    assert _check(tmp_path, "exchange\n    data: synthetic")[0] == [
        "E012 'data' is already set in this block"
    ]
    located = check_file(tmp_path / "spec" / "x.strat").diagnostics[0]
    assert (located.line, located.col) == (5, 5)
    _check(tmp_path, '"zz"')
    (located,) = check_file(tmp_path / "spec" / "x.strat").diagnostics
    assert (located.code, located.line, located.col, located.hint) == (
        "E038",
        4,
        11,
        "a folder of SYMBOL-TIMEFRAME.csv files, relative to this spec; or data: exchange",
    )


def test_command_line_data_overrides_the_setting(tmp_path: Path) -> None:
    spec = SPECS / "mtf.strat"
    argv = ["run", str(spec), "--no-save", "--no-report", "--to", "2024-01-20"]
    assert main([*argv, "--out", str(tmp_path / "own")]) == 0
    assert main([*argv, "--out", str(tmp_path / "synthetic"), "--data", "synthetic"]) == 0
    assert json.loads((tmp_path / "own" / "summary.json").read_text())["synthetic"] is False
    assert json.loads((tmp_path / "synthetic" / "summary.json").read_text())["synthetic"] is True
    folder = Source().with_setting(str(tmp_path))
    assert (folder.kind, folder.path) == (SourceKind.CSV, tmp_path)
    assert (
        Source(kind=SourceKind.CSV, path=tmp_path, chosen=True).with_setting("synthetic").kind
        is SourceKind.CSV
    )
    assert Source(kind=SourceKind.CSV, path=tmp_path).with_setting("exchange").kind is SourceKind.STORE
    assert Source().with_setting(None) == Source()


def test_series_reads_the_spec_data_too(tmp_path: Path) -> None:
    out = tmp_path / "mtf.csv"
    # Nine days of 5m bars: more than the strategy's warm-up (2,159 bars), which series needs like run.
    argv = ["series", str(SPECS / "mtf.strat"), "--to", "2024-01-10", "--out", str(out)]
    assert main(argv) == 0
    rows = out.read_text().splitlines()
    assert rows[1].split(",")[0] == str(JAN_1_2024) and len(rows) == 1 + 9 * 24 * 12


# ---------------------------------------------------------------- the store first, then the exchange


def test_a_covered_range_is_read_from_the_store_without_any_network_call(
    tmp_path: Path, shared_data: Path
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    eth = read_csv(shared_data / "ETHUSDT-1h.csv").slice(JAN_1_2024, JAN_1_2024 + 100 * H)
    CandleStore(open_store(url)).write(eth, exchange="binance", covered=(JAN_1_2024, JAN_1_2024 + 100 * H))
    # "Now" is inside the still-open 100th bar: an open-ended range needs only the 100 closed bars.
    feed = _offline_feed(clock=JAN_1_2024 + 100 * H + H // 2)
    loaded = Source(db_url=url).load("BINANCE:ETH/USDT", "1h", JAN_1_2024 + 50 * H, None, feed=feed)
    assert loaded.candles.time.tolist() == [JAN_1_2024 + k * H for k in range(50, 100)]
    # Resampled from the stored 1h candles, still without the exchange.
    four = Source(db_url=url).load("ETH/USDT", "4h", JAN_1_2024, JAN_1_2024 + 96 * H, feed=feed)
    assert len(four.candles) == 24
    assert feed.retries == 0 and not feed.exchange.connected


def test_an_unreachable_exchange_fails_fast_naming_what_is_missing(tmp_path: Path, shared_data: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    btc = read_csv(shared_data / "BTCUSDT-1h.csv").slice(JAN_1_2024, JAN_1_2024 + 100 * H)
    CandleStore(open_store(url)).write(btc, exchange="binance", covered=(JAN_1_2024, JAN_1_2024 + 100 * H))
    feed = _offline_feed(clock=JAN_1_2024 + 400 * H)
    began = time.perf_counter()
    with pytest.raises(ExchangeUnavailable) as error:
        Source(db_url=url).load(
            "BINANCE:BTC/USDT", "4h", JAN_1_2024 + 48 * H, JAN_1_2024 + 200 * H, feed=feed
        )
    assert time.perf_counter() - began < 5
    assert str(error.value) == (
        f"cannot connect to {feed.exchange.api_url} (Connection refused; tried 2 times: binance GET "
        f"{feed.exchange.api_url}/api/v3/exchangeInfo); the store lacks binance BTC/USDT 4h candles from "
        "2024-01-03 00:00 to 2024-01-09 08:00 (it holds BTC/USDT 1h 2024-01-01 00:00 to 2024-01-05 04:00: "
        "choose a range inside that with --from/--to, or run offline with --data PATH (CSV files) or --data "
        "synthetic, or store candles with strat data import FILE)"
    )


def test_the_cli_reports_an_unreachable_exchange_in_one_line_within_seconds(tmp_path: Path, capsys) -> None:
    argv = [
        "run",
        str(SPECS / "portfolio.strat"),
        "--data",
        "exchange",
        "--no-save",
        "--out",
        str(tmp_path / "o"),
    ]
    url = f"http://127.0.0.1:{_closed_port()}"
    began = time.perf_counter()
    assert main([*argv, "--exchange-url", url, "--db", f"sqlite:///{tmp_path / 's.db'}"]) == 1
    assert time.perf_counter() - began < 5
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"strat run: cannot connect to {url} (Connection refused; tried 2 times")
    assert "the store lacks binance BTC/USDT 4h candles from " in line
    assert "it holds no BTC/USDT candles at 4h or finer: run offline with --data PATH" in line


def test_a_connection_lost_after_one_succeeded_is_retried_in_full(shared_data: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "data"))
    from fake_binance import FakeBinance

    fake = FakeBinance(shared_data, now_ms=JAN_1_2024 + 100 * H).start()
    feed = ExchangeFeed(
        "binance", api_url=fake.url, rate_limit=False, retry=RetryPolicy(attempts=4, backoff_s=0.01)
    )
    assert len(feed.fetch("ETH/USDT", "1h", JAN_1_2024, JAN_1_2024 + 10 * H)) == 10
    fake.stop()  # the exchange goes away: now a refused connection may be a restart, worth waiting for
    with pytest.raises(ExchangeUnavailable, match=rf"^cannot reach {fake.url} after 4 attempts"):
        feed.fetch("ETH/USDT", "1h", JAN_1_2024, JAN_1_2024 + 10 * H)
    assert feed.retries == 3


# ---------------------------------------------------------------- the first run's compilation


def test_a_compilation_is_shown_and_a_warm_run_is_silent(tmp_path: Path) -> None:
    (tmp_path / "kernel_mod.py").write_text(
        "import numba\n\n@numba.njit(cache=True)\ndef twice(x):\n    return 2 * x\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import kernel_mod
    finally:
        sys.path.remove(str(tmp_path))
    shown = io.StringIO()
    with CompileProgress(shown, every_s=0.001).showing() as progress:
        assert kernel_mod.twice(21) == 42
    lines = shown.getvalue().splitlines()
    assert lines[0] == "compiling kernels, first run only (about half a minute; later runs load them) ..."
    assert lines[-1].startswith("compiled 1 kernel in ")
    assert progress.compiled == 1 and progress.current is None
    assert all(line.startswith("  ... 0 kernels compiled, now twice (") for line in lines[1:-1])
    # Another process loads the kernel from numba's cache: no compilation, nothing shown.
    warm = subprocess.run(
        [sys.executable, "-c", "import io, kernel_mod\n"
         "from runtime.commands.compiling import CompileProgress\n"
         "shown = io.StringIO()\n"
         "with CompileProgress(shown).showing():\n"
         "    assert kernel_mod.twice(21) == 42\n"
         "print(repr(shown.getvalue()))"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": f"{tmp_path}:{ROOT}"}, check=True,
    )  # fmt: skip
    assert warm.stdout == "''\n"
