"""Walk-forward: the windows of rolling and anchored schemes, stitching, and whole walk-forward runs.

A run's out-of-sample curve is the plain runs of its test windows, chained.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from optimize_helpers import best, optimize

from runtime.cli import main
from runtime.optimize.walkforward import Curve, Fold, curve_stats, folds, stability, stitch

# One day, ms.
DAY = 86_400_000


def test_rolling_windows_slide_by_the_test_length_and_the_last_test_is_cut_at_the_end() -> None:
    assert folds(0, 100 * DAY, 30 * DAY, 20 * DAY, anchored=False) == [
        Fold(0, 30 * DAY, 50 * DAY),
        Fold(20 * DAY, 50 * DAY, 70 * DAY),
        Fold(40 * DAY, 70 * DAY, 90 * DAY),
        Fold(60 * DAY, 90 * DAY, 100 * DAY),
    ]


def test_anchored_windows_all_train_from_the_start() -> None:
    assert folds(0, 100 * DAY, 30 * DAY, 20 * DAY, anchored=True) == [
        Fold(0, 30 * DAY, 50 * DAY),
        Fold(0, 50 * DAY, 70 * DAY),
        Fold(0, 70 * DAY, 90 * DAY),
        Fold(0, 90 * DAY, 100 * DAY),
    ]


def test_no_fold_when_the_train_window_fills_the_range() -> None:
    assert folds(0, 30 * DAY, 30 * DAY, 5 * DAY, anchored=False) == []


def test_stitching_goes_on_from_where_the_previous_part_ended() -> None:
    parts = [
        Curve(np.array([1, 2]), np.array([110.0, 120.0])),
        Curve(np.array([3, 4]), np.array([90.0, 105.0])),
    ]
    joined = stitch(parts, 100.0)
    assert joined.time.tolist() == [1, 2, 3, 4]
    assert joined.equity.tolist() == [110.0, 120.0, 108.0, 126.0]
    stats = curve_stats(joined, 100.0, DAY)
    assert stats.total_return == 0.26 and stats.bars == 4
    assert stats.max_drawdown == pytest.approx(0.1, abs=1e-15)  # 120 → 108


def test_stability_is_the_spread_of_the_chosen_values_over_the_domain_width() -> None:
    assert stability("fast", [10.0, 20.0], 0.0, 100.0).spread == 0.05
    assert stability("fast", [10.0, 10.0], 0.0, 100.0).spread == 0.0


def _equity(path: Path) -> list[float]:
    """The equity column of equity.csv."""
    with path.open(encoding="utf-8", newline="") as f:
        return [float(r["equity"]) for r in csv.DictReader(f)]


def test_a_walk_forward_run_stitches_its_test_windows_plain_runs(spec: Path, tmp_path: Path) -> None:
    assert optimize(spec, "rolling_sweep", tmp_path / "wf", "--report") == 0
    page = (tmp_path / "wf" / "report.html").read_text(encoding="utf-8")
    assert 'id="folds"' in page and 'id="oos-equity"' in page and "buy and hold" in page
    walk = best(tmp_path / "wf")["walk_forward"]
    jan1 = 1_704_067_200_000
    trains = [[jan1 + k * 15 * DAY, jan1 + (30 + k * 15) * DAY] for k in range(5)]
    assert [f["train"] for f in walk["folds"]] == trains
    assert walk["folds"][-1]["test"] == [jan1 + 90 * DAY, jan1 + 91 * DAY]  # cut at --to 2024-04-01
    rows = list(csv.DictReader((tmp_path / "wf" / "results.csv").open(encoding="utf-8", newline="")))
    assert sorted({r["fold"] for r in rows}) == ["0", "1", "2", "3", "4", "5"]
    level = 10_000.0
    for k, fold in enumerate(walk["folds"]):
        out = tmp_path / f"test{k}"
        sets = [x for name, v in fold["params"].items() for x in ("--set", f"{name}={v:g}")]
        start, end = (str(t) for t in fold["test"])
        code = main(["run", str(spec), "--strategy", "sma", *sets, "--data", "synthetic", "--from", start,
                     "--to", end, "--out", str(out), "--no-report", "--no-save"])  # fmt: skip
        assert code == 0
        level *= _equity(out / "equity.csv")[-1] / 10_000.0
    assert abs(walk["out_of_sample"]["total_return"] - (level / 10_000.0 - 1)) < 1e-12


def test_an_anchored_run_trains_every_fold_from_the_start(spec: Path, tmp_path: Path) -> None:
    assert optimize(spec, "anchored_sweep", tmp_path) == 0
    walk = best(tmp_path)["walk_forward"]
    assert walk["scheme"] == "anchored"
    assert {f["train"][0] for f in walk["folds"]} == {1_704_067_200_000}
    assert len(walk["stability"]) == 2 and walk["out_of_sample"]["bars"] == 61 * 24
