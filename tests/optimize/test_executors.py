"""Where members run changes nothing.

A Dask cluster gives the local results; a replanned member is the member planned afresh.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from optimize_helpers import optimize

from dsl.checker import check_file
from runtime.backtest.sweep import sweep
from runtime.commands.source import Source, SourceKind, parse_time
from runtime.optimize.runner import Optimizer, Settings
from runtime.plan.plan import plan


def test_a_dask_cluster_gives_the_local_results(spec: Path, grid_out: Path, tmp_path: Path) -> None:
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None, processes=True) as cluster:
        assert optimize(spec, "grid_sweep", tmp_path, "--cluster", cluster.scheduler_address) == 0
    assert (tmp_path / "results.csv").read_bytes() == (grid_out / "results.csv").read_bytes()
    assert (tmp_path / "best.json").read_bytes() == (grid_out / "best.json").read_bytes()


def test_members_replanned_from_a_shared_plan_run_as_if_planned_afresh(spec: Path) -> None:
    program = check_file(spec).program
    assert program is not None
    source = Source(kind=SourceKind.SYNTHETIC)
    start, end = parse_time("2024-01-01"), parse_time("2024-04-01")
    settings = Settings(start, end, 10_000.0)
    optimizer = Optimizer(program, program.optimizes[0], settings, source.candles, source.rules)
    job = optimizer.job
    members = optimizer.listed
    assert members is not None
    planned = [job.plan(m, start, end) for m in members]
    # Members sharing a warm-up (the slow SMA's) share one base plan: 3 of them for 13 members.
    assert len(job.bases) == 3
    for member, shortcut in zip(members, sweep(planned), strict=True):
        sleeve = job.template.sleeves[0].model_copy(update={"overrides": member})
        alone = job.template.model_copy(update={"sleeves": (sleeve,)})
        fresh_plan = plan(program, alone, source.candles, start, end)
        (fresh,) = sweep([fresh_plan])
        assert shortcut.summary == fresh.summary
        np.testing.assert_array_equal(shortcut.equity, fresh.equity)
        np.testing.assert_array_equal(shortcut.time, fresh.time)


def test_multi_timeframe_members_read_from_the_cache_run_as_if_planned_afresh() -> None:
    root = Path(__file__).resolve().parents[2]
    program = check_file(root / "specs" / "mtf.strat").program
    assert program is not None
    source = Source(kind=SourceKind.CSV, path=root / "specs" / "data")
    start, end = parse_time("2024-03-01"), parse_time("2024-03-15")
    settings = Settings(start, end, 10_000.0)
    optimizer = Optimizer(program, program.optimizes[0], settings, source.candles, source.rules)
    members = (optimizer.listed or [])[:4]
    job = optimizer.job
    for member, shortcut in zip(members, sweep(job.plan(m, start, end) for m in members), strict=True):
        sleeve = job.template.sleeves[0].model_copy(update={"overrides": member})
        alone = job.template.model_copy(update={"sleeves": (sleeve,)})
        (fresh,) = sweep([plan(program, alone, source.candles, start, end)])
        assert shortcut.summary == fresh.summary
        np.testing.assert_array_equal(shortcut.equity, fresh.equity)
