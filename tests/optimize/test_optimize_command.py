"""`strat optimize` end to end.

Members, requirements, the best member against `strat run`, the outputs, determinism, --resume, --jobs
and the store.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from optimize_helpers import DATA, best, optimize

from dsl.checker import check_file
from runtime.cli import main
from runtime.optimize.members import Space


def _rows(out: Path) -> list[dict[str, str]]:
    """results.csv as dicts."""
    with (out / "results.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_the_grid_is_the_product_of_the_domains_minus_the_members_breaking_a_constraint(spec: Path) -> None:
    program = check_file(spec).program
    assert program is not None
    space = Space.of(program.strategy("sma"))
    assert space.size() == 15
    members = [tuple(int(v) for _, v in m) for m in space.grid()]
    assert members == [
        (5, 20), (5, 40), (5, 60), (10, 20), (10, 40), (10, 60), (15, 20), (15, 40), (15, 60),
        (20, 40), (20, 60), (25, 40), (25, 60),
    ]  # fmt: skip


def test_random_samples_are_distinct_allowed_grid_points_fixed_by_the_seed(spec: Path) -> None:
    program = check_file(spec).program
    assert program is not None
    space = Space.of(program.strategy("sma"))
    first = space.sample(6, seed=3)
    assert first == space.sample(6, seed=3)
    assert first != space.sample(6, seed=4)
    assert len(set(first)) == 6
    assert set(first) <= set(space.grid())
    # Asking for more than the space holds gives every allowed member once.
    assert sorted(space.sample(50, seed=1)) == sorted(space.grid())


def test_every_member_has_a_row_and_require_marks_the_failing_ones(grid_out: Path) -> None:
    rows = _rows(grid_out)
    assert [(r["fast"], r["slow"]) for r in rows][:3] == [("5", "20"), ("5", "40"), ("5", "60")]
    assert len(rows) == 13 and {r["fold"] for r in rows} == {"0"}
    # require: trades >= 24 — the `trades` metric is the entries column.
    assert [r["passed"] for r in rows] == [str(int(float(r["entries"]) >= 24)) for r in rows]
    assert {r["passed"] for r in rows} == {"0", "1"}
    assert [r["objective"] for r in rows] == [r["sharpe"] for r in rows]


def test_the_best_member_is_the_best_passing_one_and_equals_a_plain_run_with_its_params(
    spec: Path, grid_out: Path, tmp_path: Path
) -> None:
    found = best(grid_out)
    rows = [r for r in _rows(grid_out) if r["passed"] == "1"]
    top = max(rows, key=lambda r: float(r["sharpe"]))
    assert found["params"] == {"fast": float(top["fast"]), "slow": float(top["slow"])}
    sets = [x for k, v in found["params"].items() for x in ("--set", f"{k}={v:g}")]
    code = main(["run", str(spec), "--strategy", "sma", *sets, *DATA, "--out", str(tmp_path), "--no-report",
                 "--no-save"])  # fmt: skip
    assert code == 0
    plain = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    plain.pop("monthly_returns")
    assert found["metrics"] == plain


def test_best_json_carries_the_overfitting_statistics_and_the_report_is_written(grid_out: Path) -> None:
    found = best(grid_out)
    assert (found["members"], found["passed"], found["method"], found["objective"]) == (
        13,
        sum(r["passed"] == "1" for r in _rows(grid_out)),
        "grid",
        "maximize(sharpe)",
    )
    fit = found["overfitting"]
    assert fit["trials"] == 13
    assert 0 <= fit["dsr"] <= 1 and 0 <= fit["pbo"] <= 1
    page = (grid_out / "report.html").read_text(encoding="utf-8")
    assert 'id="heatmap"' in page and 'id="parallel"' in page and "Deflated Sharpe ratio" in page


def test_bayes_is_deterministic_for_its_seed_and_runs_its_trials(spec: Path, tmp_path: Path) -> None:
    assert optimize(spec, "bayes_sweep", tmp_path / "a") == 0
    # Two workers share each round of proposals: the same members, in the same order.
    assert optimize(spec, "bayes_sweep", tmp_path / "b", "--jobs", "2") == 0
    first = (tmp_path / "a" / "results.csv").read_text(encoding="utf-8")
    assert first == (tmp_path / "b" / "results.csv").read_text(encoding="utf-8")
    rows = _rows(tmp_path / "a")
    assert len(rows) == 6 and len({(r["fast"], r["slow"]) for r in rows}) == 6
    assert all(float(r["fast"]) < float(r["slow"]) for r in rows)


def test_random_search_runs_the_seeded_sample(spec: Path, tmp_path: Path) -> None:
    assert optimize(spec, "random_sweep", tmp_path) == 0
    program = check_file(spec).program
    assert program is not None
    sample = Space.of(program.strategy("sma")).sample(6, seed=3)
    assert [(float(r["fast"]), float(r["slow"])) for r in _rows(tmp_path)] == [
        tuple(v for _, v in m) for m in sample
    ]


def test_two_jobs_give_the_same_results_as_one(spec: Path, grid_out: Path, tmp_path: Path) -> None:
    assert optimize(spec, "grid_sweep", tmp_path, "--jobs", "2") == 0
    assert (tmp_path / "results.csv").read_bytes() == (grid_out / "results.csv").read_bytes()
    assert best(tmp_path) == best(grid_out)


@pytest.mark.parametrize(("block", "kept"), [("rolling_sweep", 20), ("bayes_sweep", 3)])
def test_an_interrupted_run_resumed_gives_the_same_results(
    spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: str, kept: int
) -> None:
    whole = tmp_path / "whole"
    assert optimize(spec, block, whole) == 0
    from runtime.optimize import results

    real_add = results.ResultsFile.add
    calls = []

    def add_then_interrupt(self: results.ResultsFile, *args: object) -> None:
        """Ctrl-C after the `kept`-th member's row (rolling: in the first walk-forward fold)."""
        real_add(self, *args)  # type: ignore[arg-type]
        calls.append(1)
        if len(calls) == kept:
            raise KeyboardInterrupt

    part = tmp_path / "part"
    monkeypatch.setattr(results.ResultsFile, "add", add_then_interrupt)
    assert optimize(spec, block, part) == 130
    monkeypatch.setattr(results.ResultsFile, "add", real_add)
    assert len(_rows(part)) == kept
    # A last line cut short by the interruption is dropped on resume.
    with (part / "results.csv").open("a", encoding="utf-8") as f:
        f.write("1,7,15,")
    assert optimize(spec, block, part, "--resume") == 0
    assert (part / "results.csv").read_bytes() == (whole / "results.csv").read_bytes()
    assert best(part) == best(whole)


def test_resume_needs_the_output_folder(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["optimize", str(spec), "grid_sweep", *DATA, "--resume"]) == 2
    assert "--resume needs --out DIR" in capsys.readouterr().err


def test_an_unknown_block_is_refused_with_the_known_ones(spec: Path, capsys: pytest.CaptureFixture[str],
                                                         tmp_path: Path) -> None:  # fmt: skip
    assert optimize(spec, "nope", tmp_path) == 1
    assert "no optimize block 'nope'; known: grid_sweep, random_sweep, bayes_sweep" in capsys.readouterr().err


def test_the_best_member_is_saved_as_an_optimize_run(spec: Path, db_url: str, tmp_path: Path) -> None:
    code = main(["optimize", str(spec), "grid_sweep", *DATA, "--out", str(tmp_path), "--no-report",
                 "--db", db_url])  # fmt: skip
    assert code == 0
    from runtime.store.runs import RunStore
    from runtime.store.schema import open_store

    store = RunStore(open_store(db_url))
    (listing,) = store.latest()
    assert (listing.spec_name, listing.mode, listing.synthetic) == ("sweep", "optimize", True)
    stored = store.get(listing.id)
    assert stored is not None
    found = best(tmp_path)
    assert stored.record.params == tuple((k, f"{v:g}") for k, v in found["params"].items())
    assert stored.record.summary.sharpe == found["metrics"]["sharpe"]
