"""A replay split anywhere (snapshot -> serialise -> restore in a fresh Simulator) continues identically."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sim_reference import load_csv
from test_sim_parity import assert_identical, demo_like

from runtime.backtest.output import write_equity, write_orders, write_risk_events, write_trades
from runtime.broker.result import BacktestResult
from runtime.broker.simulator import SNAPSHOT_VERSION, BarUpdate, Simulator, TradeState, updates_from
from runtime.plan.model import PortfolioInput

# Serialise a snapshot and read it back, as a process that stops and one that restarts would.
Codec = Callable[[dict[str, Any]], dict[str, Any]]
CODECS: dict[str, Codec] = {
    "json": lambda snap: json.loads(json.dumps(snap)),
    "pickle": lambda snap: pickle.loads(pickle.dumps(snap)),
}


@pytest.fixture(scope="module")
def demo(shared_data: Path) -> PortfolioInput:
    """The three-sleeve demo-like portfolio on the real BTC / ETH / SOL 1h candles (all broker features)."""
    bars = [load_csv(shared_data / f"{s}USDT-1h.csv") for s in ("BTC", "ETH", "SOL")]
    start = bars[1]["time"][0]
    btc = {k: v[bars[0]["time"] >= start] for k, v in bars[0].items()}
    return demo_like(btc, bars[1], bars[2])


def keep_decisions(update: BarUpdate, state: TradeState) -> BarUpdate:
    """A decider that keeps the bar's decisions (runs every point in two halves, like the runner's replay)."""
    return update


def replay(pf: PortfolioInput, splits: set[int], codec: Codec, two_phase: bool = False) -> BacktestResult:
    """Step the portfolio's history, replacing the simulator by a restored copy before each split point."""
    sim = Simulator(pf)
    for p, point in enumerate(updates_from(pf)):
        if p in splits:
            sim = Simulator.restore(pf, codec(sim.snapshot()))
        sim.step(*point, decide=keep_decisions if two_phase else None)
    return sim.finish()


def csv_bytes(result: BacktestResult, folder: Path) -> dict[str, bytes]:
    """The trades, equity, orders and risk CSV files of a result, as bytes."""
    folder.mkdir()
    writers = {
        "trades": write_trades,
        "equity": write_equity,
        "orders": write_orders,
        "risk": write_risk_events,
    }
    for name, write in writers.items():
        write(result, folder / f"{name}.csv")
    return {name: (folder / f"{name}.csv").read_bytes() for name in writers}


@pytest.mark.parametrize(("codec", "seed", "two_phase"), [("json", 1, False), ("pickle", 2, True)])
def test_split_replay_is_byte_identical(
    demo: PortfolioInput, tmp_path: Path, codec: str, seed: int, two_phase: bool
) -> None:
    whole = replay(demo, set(), CODECS[codec], two_phase)
    points = len(whole.time)
    assert len(whole.trades) > 100 and whole.risk_events
    # Random split points, plus the very first and the last point.
    rng = np.random.default_rng(seed)
    splits = {0, points - 1, *rng.integers(1, points - 1, 5).tolist()}
    split = replay(demo, splits, CODECS[codec], two_phase)
    assert_identical(split, whole)
    assert csv_bytes(split, tmp_path / "split") == csv_bytes(whole, tmp_path / "whole")


def test_snapshot_is_plain_self_describing_data(demo: PortfolioInput) -> None:
    sim = Simulator(demo)
    for point in updates_from(demo)[:500]:
        sim.step(*point)
    snap = sim.snapshot()
    assert snap["version"] == SNAPSHOT_VERSION and snap["points"] == 500
    assert json.loads(json.dumps(snap)) == snap
    # Every record array names its fields.
    fields = [name for name, _, _ in snap["state"]["sleeves"]["dtype"]]
    assert fields[:3] == ["side", "entry_bar", "entries"] and "cash" in fields
    assert [name for name, _, _ in snap["outputs"]["trades"]["dtype"]][:2] == ["sleeve", "side"]


def test_restore_refuses_another_version_or_portfolio(demo: PortfolioInput) -> None:
    snap = Simulator(demo).snapshot()
    with pytest.raises(ValueError, match=f"version {SNAPSHOT_VERSION + 1} cannot be restored"):
        Simulator.restore(demo, {**snap, "version": SNAPSHOT_VERSION + 1})
    with pytest.raises(ValueError, match="not a simulator snapshot"):
        Simulator.restore(demo, {**snap, "format": "something else"})
    other = PortfolioInput(demo.capital, demo.quote, demo.sleeves[:2], risk=demo.risk)
    with pytest.raises(ValueError, match="other sleeves"):
        Simulator.restore(other, snap)
    cheaper = PortfolioInput(
        demo.capital, demo.quote, demo.sleeves, rebalance_ms=demo.rebalance_ms, risk=demo.risk[:-1]
    )
    with pytest.raises(ValueError, match="other risk rules"):
        Simulator.restore(cheaper, snap)
    changed = dict(snap, state=dict(snap["state"]))
    changed["state"]["book"] = dict(snap["state"]["book"], dtype=[["cash", "<f8", []]])
    with pytest.raises(ValueError, match="state book has dtype"):
        Simulator.restore(demo, changed)


def test_simulator_holds_only_the_current_bar(demo: PortfolioInput) -> None:
    sim = Simulator(demo)
    for point in updates_from(demo)[:2000]:
        sim.step(*point)
    assert all(a.shape[:2] == (len(demo.sleeves), 1) for a in sim._bars)


def test_restore_refuses_other_settings(demo: PortfolioInput) -> None:
    snap = Simulator(demo).snapshot()
    first = demo.sleeves[0]
    dearer = replace(first, execution=replace(first.execution, fee_taker=0.002))
    other = replace(demo, sleeves=(dearer, *demo.sleeves[1:]))
    with pytest.raises(ValueError, match=r"other settings \(sleeves\)"):
        Simulator.restore(other, snap)
    with pytest.raises(ValueError, match="another rebalancing period"):
        Simulator.restore(replace(demo, rebalance_ms=None), snap)
