"""Second bars (`1s`): checked, generated, read from CSV, stored, fetched from the exchange and backtested."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import numpy as np
import pytest
from fake_binance import FakeBinance

from dsl.checker import check_source
from dsl.units import TIMEFRAMES, format_duration, parse_duration
from runtime.cli import main
from runtime.commands.source import Source, SourceKind
from runtime.data.candles import PRICE_COLUMNS, Candle, Candles
from runtime.data.csvfiles import infer_timeframe, name_market, read_csv
from runtime.data.loader import from_csv, prepare
from runtime.data.resample import resample
from runtime.data.synthetic import generate_range
from runtime.data.times import format_time
from runtime.data.validate import check
from runtime.exchange.client import RetryPolicy
from runtime.exchange.feed import ExchangeFeed
from runtime.store.candles import CandleStore
from runtime.store.schema import open_store

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
S, M = 1_000, 60_000  # one second and one minute, ms

# A strategy on second bars that also reads the minute bars of its market.
SPEC = """strat 1

strategy scalp:
    symbol:    "BINANCE:BTC/USDT"
    timeframe: 1s

    fast  = ema(close, 30)
    slow  = ema(close, 120)
    trend = bars(1m).close

    entry long when fast crosses above slow and close > sma(trend, 5)
    exit  long when fast crosses below slow

    stop_loss: 0.5%
    size:      equity_pct(50%)
"""


def _same(a: Candles, b: Candles) -> None:
    """Two series hold the same bars, bit for bit."""
    assert len(a) == len(b)
    for name in ("time", *PRICE_COLUMNS):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


def _write_csv(path: Path, candles: Candles) -> None:
    """Write candles as a plain `timestamp,open,high,low,close,volume` file (values round-trip exactly)."""
    columns = [getattr(candles, name).tolist() for name in PRICE_COLUMNS]
    rows = (
        ",".join(map(repr, [t, *values])) for t, *values in zip(candles.time.tolist(), *columns, strict=True)
    )
    path.write_text("\n".join(["timestamp,open,high,low,close,volume", *rows]) + "\n")


def test_1s_is_a_timeframe_of_the_language() -> None:
    assert TIMEFRAMES["1s"] == 1_000 and next(iter(TIMEFRAMES)) == "1s"
    assert (parse_duration("1s"), format_duration(1_000)) == (1_000, "1s")
    result = check_source(SPEC, "scalp.strat")
    assert result.ok, result.render()
    assert result.program is not None
    strategy = result.program.strategies[0]
    assert (strategy.timeframe, strategy.timeframes) == ("1s", ("1s", "1m"))
    # Second bars are the fastest clock: a 1m strategy cannot read them.
    faster = SPEC.replace("timeframe: 1s", "timeframe: 1m").replace("bars(1m)", "bars(1s)")
    assert [(d.code, d.line, d.message) for d in check_source(faster, "scalp.strat").diagnostics] == [
        ("E034", 9, "bars(1s) is faster than the strategy timeframe 1m")
    ]


def test_synthetic_second_bars_resample_to_the_minute_market() -> None:
    # Across a day boundary, from a start inside a minute: the 1m market is the 1s market resampled.
    start, end = T0 - 10 * M + 17 * S, T0 + 20 * M
    seconds = generate_range("BTC/USDT", "1s", start, end, seed=4)
    minutes = generate_range("BTC/USDT", "1m", start, end, seed=4)
    assert seconds.time[0] == start and seconds.time[-1] == end - S and len(seconds) == (end - start) // S
    assert seconds.synthetic and seconds.timeframe == "1s"
    whole = seconds.take(seconds.time >= T0 - 9 * M)
    _same(resample(whole, "1m"), minutes.take(minutes.time >= T0 - 9 * M))
    # Well-formed bars, and the same seconds whatever range is asked for.
    report = check(seconds)
    assert (report.ohlc_errors, report.gaps, report.misaligned, report.nonpositive) == (0, 0, 0, 0)
    inner = generate_range("BTC/USDT", "1s", T0 + 5 * S, T0 + 65 * S, seed=4)
    _same(inner, seconds.slice(T0 + 5 * S, T0 + 65 * S))


def test_1s_csv_files_are_named_inferred_and_resampled(tmp_path: Path) -> None:
    seconds = generate_range("ETH/USDT", "1s", T0, T0 + 10 * M)
    path = tmp_path / "ETHUSDT-1s.csv"
    _write_csv(path, seconds)
    assert name_market(path) == ("ETH/USDT", "1s")
    assert infer_timeframe(seconds.time) == "1s"
    _same(read_csv(path), seconds)
    # A folder holding only second bars feeds a 1m strategy: the file is found and resampled.
    raw, found = from_csv(tmp_path, "ETH/USDT", "1m", T0, T0 + 10 * M)
    assert (found, raw.timeframe) == (path, "1s")
    loaded = prepare(raw, "1m", T0, T0 + 10 * M, fill_gaps=False)
    _same(loaded.candles, generate_range("ETH/USDT", "1m", T0, T0 + 10 * M))


def test_the_store_keeps_second_bars(db_url: str) -> None:
    seconds = generate_range("SOL/USDT", "1s", T0, T0 + 90 * M)  # 5,400 bars: two blocks
    store = CandleStore(open_store(db_url))
    assert store.write(seconds, exchange="binance", covered=(T0, T0 + 90 * M)) == 5_400
    _same(
        store.read("binance", "SOL/USDT", "1s", T0 + 30 * S, T0 + 60 * M),
        seconds.slice(T0 + 30 * S, T0 + 60 * M),
    )
    assert store.missing("binance", "SOL/USDT", "1s", T0 - 2_500, T0 + 91 * M) == [
        (T0 - 3 * S, T0),
        (T0 + 90 * M, T0 + 91 * M),
    ]


@pytest.fixture
def seconds_binance(tmp_path: Path) -> FakeBinance:
    """A fake Binance serving 30 minutes of SOL/USDT second bars from a CSV in a temporary folder."""
    _write_csv(tmp_path / "SOLUSDT-1s.csv", generate_range("SOL/USDT", "1s", T0, T0 + 30 * M))
    return FakeBinance(tmp_path, now_ms=T0 + 1_500 * S + 500)


def _feed(fake: FakeBinance, page_limit: int = 1000) -> ExchangeFeed:
    """A feed on the fake, on the fake's clock, without throttling."""
    return ExchangeFeed(
        "binance",
        api_url=fake.url,
        rate_limit=False,
        retry=RetryPolicy(attempts=2, backoff_s=0.01, timeout_ms=2_000),
        page_limit=page_limit,
        clock=lambda: fake.now_ms,
    )


def test_the_exchange_feed_fetches_closed_second_bars(seconds_binance: FakeBinance) -> None:
    fake = seconds_binance.start()
    try:
        candles = _feed(fake, page_limit=600).fetch("SOL/USDT", "1s", T0, T0 + 30 * M)
    finally:
        fake.stop()
    assert fake.unknown == []
    # The bar opened at 1,500 s is still forming at the fake's now (1,500.5 s): it ends the download.
    _same(candles, generate_range("SOL/USDT", "1s", T0, T0 + 1_500 * S))
    queries = fake.klines_requests()
    assert [(q["interval"], int(q["startTime"]), q["limit"]) for q in queries] == [
        ("1s", T0, "600"),
        ("1s", T0 + 600 * S, "600"),
        ("1s", T0 + 1_200 * S, "600"),
    ]


def test_the_exchange_feed_streams_second_bars(seconds_binance: FakeBinance) -> None:
    fake = seconds_binance.start()

    async def collect() -> list[Candle]:
        """Four closed bars from 1,498 s on, the fake's clock moving two seconds after the second one."""
        got: list[Candle] = []
        stream = _feed(fake).stream("SOL/USDT", "1s", since_ms=T0 + 1_498 * S, poll_s=0.02)
        async for candle in stream:
            got.append(candle)
            if len(got) == 2:
                fake.now_ms += 2 * S
            if len(got) == 4:
                break
        await stream.aclose()
        return got

    try:
        got = asyncio.run(asyncio.wait_for(collect(), 10))
    finally:
        fake.stop()
    expected = generate_range("SOL/USDT", "1s", T0 + 1_498 * S, T0 + 1_502 * S)
    columns = [getattr(expected, name).tolist() for name in PRICE_COLUMNS]
    assert got == [Candle(t, *values) for t, *values in zip(expected.time.tolist(), *columns, strict=True)]


def test_a_backtest_on_second_bars(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "scalp.strat"
    spec.write_text(SPEC)
    span = [
        "--data",
        "synthetic",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-01T01:00",
        "--no-report",
        "--no-save",
    ]
    assert main(["run", str(spec), *span, "--out", str(tmp_path / "bt")]) == 0
    assert main(["run", str(spec), *span, "--replay", "--out", str(tmp_path / "replay")]) == 0
    for name in ("trades.csv", "orders.csv", "equity.csv"):
        assert (tmp_path / "bt" / name).read_bytes() == (tmp_path / "replay" / name).read_bytes(), name
    summary = json.loads((tmp_path / "bt" / "summary.json").read_text())
    assert (summary["bars"], summary["bar_ms"], summary["start"], summary["end"]) == (
        3_600,
        1_000,
        "2024-01-01T00:00:00Z",
        "2024-01-01T01:00:00Z",
    )
    assert summary["entries"] > 0
    assert (
        " 2024-01-01 00:00:00 → 2024-01-01 01:00:00 │" in capsys.readouterr().out
    )  # the period, to the second
    # Annualised by 31,536,000 second bars a year: the volatility of the per-bar returns of the equity.
    equity = np.loadtxt(tmp_path / "bt" / "equity.csv", delimiter=",", skiprows=1, usecols=1)
    returns = np.diff(np.r_[summary["capital"], equity]) / np.r_[summary["capital"], equity[:-1]]
    assert summary["volatility"] == pytest.approx(np.std(returns, ddof=1) * math.sqrt(365 * 86_400), rel=1e-6)


def test_default_history_of_second_bars_is_a_million_bars() -> None:
    now = T0 + 123 * S
    synthetic = Source(kind=SourceKind.SYNTHETIC)
    assert synthetic.span(None, None, now, "1s") == (now - 1_000_000 * S, now)
    assert synthetic.span(None, None, now, "1m") == (now - 365 * 86_400_000, now)
    assert synthetic.span(None, None, now) == (now - 365 * 86_400_000, now)
    assert synthetic.span(T0, None, now, "1s") == (T0, now)


def test_times_show_seconds_only_off_the_minute() -> None:
    assert (format_time(T0), format_time(T0 + 5 * S), format_time(T0 + M)) == (
        "2024-01-01 00:00",
        "2024-01-01 00:00:05",
        "2024-01-01 00:01",
    )
