"""The plan: the portfolio chosen, the graph's outputs as typed records, the settings' defaults."""

from __future__ import annotations

import numpy as np

from dsl.checker import check_source
from dsl.ir import Program
from runtime.backtest.drive import batch_signals
from runtime.data.candles import Candles
from runtime.plan import model as m
from runtime.plan.inputs import Decisions, Offsets, decision_nodes, offset_nodes, sleeve_input
from runtime.plan.plan import SleevePlan, plan
from runtime.plan.select import select

HOUR = 3_600_000
# A strategy taking all four decisions, with every bracket setting written as a series.
BOTH_SIDES = """strat 1
strategy t:
    symbol: "BINANCE:BTC/USDT"
    timeframe: 1h
    fast = sma(close, 2)
    slow = sma(close, 3)
    entry long  when fast crosses above slow
    exit  long  when fast crosses below slow
    entry short when fast crosses below slow
    exit  short when fast crosses above slow
    stop_loss:     2 * atr(3)
    take_profit:   3 * atr(3)
    trailing_stop: 4 * atr(3)
"""
# The same decisions on the long side only, no bracket and no execution block.
LONG_ONLY = """strat 1
strategy t:
    symbol: "BINANCE:BTC/USDT"
    timeframe: 1h
    fast = sma(close, 2)
    slow = sma(close, 3)
    entry long when fast crosses above slow
    exit  long when fast crosses below slow
    stop_loss: 2%
"""


def _program(text: str) -> Program:
    """The checked program of a source text."""
    checked = check_source(text, "t.strat")
    assert checked.program is not None, checked.render()
    return checked.program


def _load(symbol: str, timeframe: str, first: int | None, last: int | None) -> Candles:
    """Twenty hourly candles on a zigzag, whatever is asked."""
    close = 100.0 + np.array([0, 2, 4, 3, 1, 0, 2, 5, 6, 4, 2, 1, 3, 5, 4, 2, 1, 2, 4, 6], dtype=np.float64)
    time = HOUR * np.arange(len(close), dtype=np.int64)
    return Candles.from_arrays("binance", "BTC/USDT", "1h", time, [close, close + 1, close - 1, close, close])


def _sleeve(text: str) -> SleevePlan:
    """The one sleeve of a one-strategy source, planned on `_load`."""
    program = _program(text)
    return plan(program, select(program, None, None), _load, None, None).sleeves[0]


def test_the_graph_outputs_are_named_by_typed_records() -> None:
    sp = _sleeve(BOTH_SIDES)
    rules, series = sp.graph.rules, sp.graph.series_settings
    assert decision_nodes(sp.graph) == Decisions(
        rules["entry_long"], rules["exit_long"], rules["entry_short"], rules["exit_short"]
    )
    assert offset_nodes(sp.graph) == Offsets(
        series["stop_loss"], series["take_profit"], series["trailing_stop"]
    )
    # Every output the compiler names has its field: none is left behind by a rename.
    assert set(rules) == set(Decisions._fields)
    assert set(series) == set(Offsets._fields)

    long_only = _sleeve(LONG_ONLY)
    nodes = decision_nodes(long_only.graph)
    assert nodes.entry_short is None and nodes.exit_short is None
    assert nodes.entry_long is not None and nodes.exit_long is not None
    assert offset_nodes(long_only.graph) == Offsets(None, None, None)


def test_batch_signals_fill_the_records_the_inputs_read() -> None:
    sp = _sleeve(BOTH_SIDES)
    decisions, offsets, _ = batch_signals(sp)
    n = sp.feeds.length(0)
    for d in decisions:
        assert d.dtype == np.bool_ and len(d) == n
        assert not d[: sp.graph.warmup].any()
    # The crosses of sma(2) and sma(3) on the zigzag, no decision before the warm-up (3 bars).
    assert np.flatnonzero(decisions.entry_long).tolist() == np.flatnonzero(decisions.exit_short).tolist()
    assert np.flatnonzero(decisions.exit_long).tolist() == np.flatnonzero(decisions.entry_short).tolist()
    assert decisions.entry_long.any() and decisions.exit_long.any()
    for distance, multiple in zip(offsets, (2, 3, 4), strict=True):
        assert distance is not None
        np.testing.assert_array_equal(distance, multiple / 2 * offsets.stop_loss)
    sleeve = sleeve_input(sp, decisions, offsets)
    assert sleeve.bracket.stop == ("distance", offsets.stop_loss)
    assert sleeve.bracket.take_profit == ("distance", offsets.take_profit)
    assert sleeve.bracket.trailing_stop == ("distance", offsets.trailing_stop)
    assert sleeve.entry_short is decisions.entry_short


def test_settings_left_out_take_the_model_defaults() -> None:
    program = _program(LONG_ONLY)
    portfolio = select(program, None, None)
    assert portfolio.capital == m.DEFAULT_CAPITAL == 10_000.0
    assert select(program, None, 2_500.0).capital == 2_500.0
    sp = _sleeve(LONG_ONLY)
    sleeve = sleeve_input(sp, *batch_signals(sp)[:2])
    assert sleeve.execution == m.Execution()
    assert sleeve.execution.fee_maker == sleeve.execution.fee_taker == m.DEFAULT_FEE == 0.001
    assert sleeve.sizing == m.Sizing()
    assert sleeve.bracket == m.Bracket(stop=("percent", 0.02))
    assert (sleeve.max_entries, sleeve.scale_in) == (1, 1.0)


def test_fee_sets_both_sides_and_maker_or_taker_fee_one() -> None:
    text = LONG_ONLY + "    execution:\n        fee: 0.2%\n        maker_fee: 0.05%\n        slippage: 5bps\n"
    sp = _sleeve(text)
    execution = sleeve_input(sp, *batch_signals(sp)[:2]).execution
    assert execution == m.Execution(fee_maker=0.0005, fee_taker=0.002, slippage_bps=5.0)


def test_no_decision_before_the_start_even_with_more_history_than_the_warm_up() -> None:
    # `_load` gives all twenty bars whatever is asked: bars 0..9 open before the start (10 h), far more
    # than the 3-bar warm-up. They are read for the indicators; the first decision is bar 10's.
    from runtime.backtest.drive import backtest

    program = _program(LONG_ONLY)
    start = 10 * HOUR
    run_plan = plan(program, select(program, None, None), _load, start, None)
    (sp,) = run_plan.sleeves
    assert (sp.graph.warmup, sp.first_decision, run_plan.start) == (3, 10, start)
    signals = batch_signals(sp)
    assert not signals.decisions.entry_long[:10].any() and signals.decisions.entry_long[10:].any()
    assert sleeve_input(sp, signals.decisions, signals.offsets).warmup == 10
    result = backtest(run_plan)
    assert result.time[0] == start + HOUR  # the first point closing after the start
    assert len(result.trades) > 0 and min(t.entry_time for t in result.trades) > start
    # Without a start the same plan decides from the warm-up on and reports every bar.
    assert plan(program, select(program, None, None), _load, None, None).sleeves[0].first_decision == 3
