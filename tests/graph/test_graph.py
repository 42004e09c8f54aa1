"""The graph compiler and its two drivers: sharing, clocks, alignment, lookahead, batch/stream parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dsl import builtins
from dsl.checker import check_source
from runtime.cli import main
from runtime.data.candles import Candles
from runtime.graph.compiler import Clock, compile_strategy
from runtime.graph.drivers import Feeds, run_batch, run_stream
from runtime.ops.registry import BUILTIN_NAMES

ROOT = Path(__file__).resolve().parents[2]
HOUR = 3_600_000


def bars(close: np.ndarray, step_ms: int, start: int = 0) -> Candles:
    """Candles with the given closes (open = previous close, high/low around them)."""
    close = np.asarray(close, dtype=np.float64)
    open_ = np.concatenate([[close[0]], close[:-1]])
    time = start + step_ms * np.arange(len(close), dtype=np.int64)
    high, low = np.maximum(open_, close) + 1, np.minimum(open_, close) - 1
    return Candles.from_arrays(
        "binance", "BTC/USDT", "1h", time, [open_, high, low, close, np.ones(len(close))]
    )


def strategy(body: str):
    """Check a one-strategy source and return its IR."""
    text = 'strat 1\nstrategy t:\n    symbol: "BINANCE:BTC/USDT"\n    timeframe: 1h\n' + body
    result = check_source(text, "t.strat")
    assert result.ok, result.render()
    assert result.program is not None
    return result.program.strategies[0]


def test_operator_registry_names_exactly_the_language_builtins() -> None:
    assert set(builtins.SERIES_FUNCTIONS) == set(BUILTIN_NAMES)


def test_identical_subexpressions_are_one_node() -> None:
    ir = strategy(
        "    a = sma(close, 10) + 1\n    b = sma(close, 10) * 2\n"
        "    entry long when a > b\n    exit long when a < b\n"
    )
    graph = compile_strategy(ir)
    smas = [n for n in graph.nodes if n.kind == "op" and n.name == "sma"]
    assert len(smas) == 1
    assert [n.kind for n in graph.nodes].count("source") == 1


def test_params_are_substituted_and_overrides_change_the_graph() -> None:
    ir = strategy(
        "    param n = 10 in 5..20 step 5\n    m = sma(close, n)\n"
        "    entry long when close > m\n    exit long when close < m\n"
    )
    default = compile_strategy(ir)
    wide = compile_strategy(ir, {"n": 20})
    assert [n.params for n in default.nodes if n.kind == "op" and n.name == "sma"] == [(10.0,)]
    assert [n.params for n in wide.nodes if n.kind == "op" and n.name == "sma"] == [(20.0,)]
    assert (default.warmup, wide.warmup) == (9, 19)


def _mtf_graph():
    """A 1h strategy reading the last closed 4h close, and that close's 2-bar SMA (4h clock)."""
    ir = strategy(
        "    h4 = bars(4h)\n    c4 = h4.close\n    s4 = sma(h4.close, 2)\n"
        "    entry long when close > s4\n    exit long when close < s4\n"
    )
    return compile_strategy(ir)


def _mtf_feeds(graph, closes_1h: np.ndarray) -> Feeds:
    """1h bars and the 4h bars aggregated from them (4h close = close of the 4th hour)."""
    h1 = bars(closes_1h, HOUR)
    h4 = bars(closes_1h[3::4], 4 * HOUR)
    return Feeds(graph, {Clock("BINANCE:BTC/USDT", "1h"): h1, Clock("BINANCE:BTC/USDT", "4h"): h4})


def test_slower_clock_is_seen_only_after_its_period_closes() -> None:
    graph = _mtf_graph()
    closes = np.arange(1.0, 17.0)  # 16 hours: 4 four-hour bars closing at hours 4, 8, 12, 16
    feeds = _mtf_feeds(graph, closes)
    columns = dict(graph.columns)
    for values in (
        run_batch(graph, feeds, list(columns.values())),
        run_stream(graph, feeds, list(columns.values())),
    ):
        c4 = np.asarray(values[columns["c4"]])
        # The 00:00-04:00 bar (close 4.0) is first visible on the 1h bar 03:00-04:00, which closes at 04:00.
        np.testing.assert_array_equal(c4[:3], [np.nan] * 3)
        np.testing.assert_array_equal(c4[3:], np.repeat([4.0, 8.0, 12.0, 16.0], 4)[: len(c4) - 3])
        s4 = np.asarray(values[columns["s4"]])
        np.testing.assert_array_equal(s4[:7], [np.nan] * 7)
        np.testing.assert_array_equal(s4[7:], [6.0] * 4 + [10.0] * 4 + [14.0])


@pytest.mark.parametrize("stream", [False, True])
def test_perturbing_future_bars_never_changes_earlier_outputs(stream: bool) -> None:
    graph = _mtf_graph()
    rng = np.random.default_rng(7)
    closes = 100 + np.cumsum(rng.normal(size=96))
    keep = [node for _, node in graph.columns] + list(graph.rules.values())
    run = run_stream if stream else run_batch
    base = run(graph, _mtf_feeds(graph, closes), keep)
    for cut in (10, 37, 60, 95):
        changed = closes.copy()
        changed[cut:] *= 1.5
        other = run(graph, _mtf_feeds(graph, changed), keep)
        for node in keep:
            np.testing.assert_array_equal(np.asarray(base[node])[:cut], np.asarray(other[node])[:cut])


SPECS = sorted(p for d in ("library", "specs") for p in (ROOT / d).glob("*.strat") if p.name != "risk.strat")


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_series_batch_and_stream_files_are_identical(
    spec: Path, shared_data: Path, tmp_path: Path, capsys
) -> None:
    out = {}
    for mode in ("batch", "stream"):
        path = tmp_path / f"{mode}.csv"
        args = ["series", str(spec), "--data", str(shared_data), "--out", str(path)]
        if spec.name == "portfolio.strat":
            args += ["--strategy", "ma_cross"]
        assert main([*args, *(["--stream"] if mode == "stream" else [])]) == 0, capsys.readouterr().err
        out[mode] = path.read_text()
    assert out["batch"] == out["stream"]
    assert out["batch"].splitlines()[0].startswith("time,")
    assert len(out["batch"].splitlines()) > 1000


def test_series_columns_name_struct_fields(shared_data: Path, tmp_path: Path) -> None:
    path = tmp_path / "macd.csv"
    assert (
        main(["series", str(ROOT / "library" / "macd.strat"), "--data", str(shared_data), "--out", str(path)])
        == 0
    )
    lines = path.read_text().splitlines()
    assert lines[0] == "time,m.line,m.signal,m.hist"
    # 4h bars resampled from the 1h file: the first bar opens 2017-08-17 04:00 UTC; na cells are empty.
    assert lines[1] == "1502942400000,,,"


def test_a_reloaded_graph_carries_the_state_of_its_unchanged_nodes() -> None:
    """A param edit (slow 26 -> 30): the fast EMA continues exactly as if no reload happened.

    The new graph is warmed on the last 60 bars only (the reload's bar buffer), so its own EMA differs;
    after `carry` it takes over the running driver's EMA and both go on bar for bar with an uninterrupted
    driver, while the changed slow EMA is the warmed one.
    """
    from runtime.graph.drivers import StreamDriver

    body = (
        "    param slow = 26 in 20..40 step 1\n    f = ema(close, 12)\n    s = ema(close, slow)\n"
        "    entry long when f > s\n    exit long when f < s\n"
    )
    ir = strategy(body)
    before, after = compile_strategy(ir), compile_strategy(ir, {"slow": 30})
    closes = 100 + np.cumsum(np.sin(np.arange(500) / 5.0))
    candles = bars(closes, 3_600_000)
    feeds = Feeds(before, {before.base: candles})
    running, reference = StreamDriver(before), StreamDriver(before)
    for i in range(400):
        running.push(0, feeds.bar(0, i))
        reference.push(0, feeds.bar(0, i))
    reloaded = StreamDriver(after)
    for i in range(340, 400):  # the bar buffer the reload warms new nodes on
        reloaded.push(0, feeds.bar(0, i))
    fast = next(n.id for n in before.nodes if n.kind == "op" and n.params == (12.0,))
    fast_after = next(n.id for n in after.nodes if n.kind == "op" and n.params == (12.0,))
    assert reloaded.values[fast_after] != reference.values[fast]  # a window's EMA is not the whole one
    carried = reloaded.carry(running)
    unchanged = len(set(before.node_hashes()) & set(after.node_hashes()))
    assert carried == unchanged >= 2  # close and the fast EMA at least
    for i in range(400, 500):
        reloaded.push(0, feeds.bar(0, i))
        reference.push(0, feeds.bar(0, i))
        assert reloaded.values[fast_after] == reference.values[fast]  # exactly, bar for bar
    slow_after = next(n.id for n in after.nodes if n.kind == "op" and n.params == (30.0,))
    fresh = StreamDriver(after)
    for i in range(340, 500):
        fresh.push(0, feeds.bar(0, i))
    assert reloaded.values[slow_after] == fresh.values[slow_after]  # the changed node: warmed on the buffer
