"""The files of an optimisation: results.csv, moments.csv and best.json.

results.csv has one row per member, written as members finish; moments.csv beside it keeps the members'
per-block return moments (the overfitting statistics of a resumed run need them); best.json the winner.

Rows are appended and flushed batch by batch, so an interrupted run keeps every finished member, and
`read_done` reads them back for --resume (a last line cut short by the interruption is dropped). Numbers
are written in full precision (Python's shortest round-trip form), so a value read back is the value
written and a resumed run writes the same file an uninterrupted one does.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from runtime.optimize.executor import METRICS, MOMENTS, Outcome
from runtime.optimize.members import Params, format_number, param_values
from runtime.optimize.runner import FoldResult, Optimization
from runtime.plan.select import RunError

# The results file and the moments file in the output folder.
RESULTS = "results.csv"
MOMENTS_FILE = "moments.csv"


def _cell(value: float | None) -> str:
    """A number as written: shortest round-trip text, '' for None."""
    return "" if value is None else repr(float(value))


def _value(text: str) -> float | None:
    """Inverse of `_cell`."""
    return None if text == "" else float(text)


class ResultsFile:
    """results.csv and moments.csv of one optimisation, appended as members finish."""

    def __init__(self, out: Path, names: Sequence[str], blocks: int, resume: bool) -> None:
        """Open the files in `out` (kept with `resume`, else started afresh) for params `names`."""
        self.names = tuple(names)  # searched params, in order
        self.header = ["fold", "member", *names, *METRICS, "objective", "passed", "error"]  # results columns
        # moments.csv's columns: the params, then each block's count and power sums of returns
        self.moments_header = [*names, *(f"m{b}_{k}" for b in range(blocks) for k in range(MOMENTS))]
        out.mkdir(parents=True, exist_ok=True)
        self.results = self._open(out / RESULTS, self.header, resume)  # results.csv, open for appending
        self.moments = self._open(out / MOMENTS_FILE, self.moments_header, resume)  # moments.csv
        self.rows = csv.writer(self.results, lineterminator="\n")  # writes results.csv's rows
        self.moment_rows = csv.writer(self.moments, lineterminator="\n")  # writes moments.csv's rows

    @staticmethod
    def _open(path: Path, header: list[str], resume: bool) -> TextIO:
        """Open a file for appending rows under `header` (written when it is new or not resumed)."""
        if resume and path.exists():
            _trim(path)
            with path.open(encoding="utf-8", newline="") as f:
                first = next(csv.reader(f), None)
            if first != header:
                raise RunError(
                    f"{path} holds another optimisation's results (its columns differ): no --resume"
                )
            return path.open("a", encoding="utf-8", newline="")
        handle = path.open("w", encoding="utf-8", newline="")
        handle.write(_line(header))
        return handle

    def add(self, fold: int, index: int, item: Outcome, objective: float | None, passed: bool) -> None:
        """Append one member's row (and its moments, when kept)."""
        values = [format_number(v) for _, v in item.params]
        metrics = [_cell(v) for v in item.metrics]
        self.rows.writerow([fold, index, *values, *metrics, _cell(objective), int(passed), item.error])
        if item.moments is not None:
            self.moment_rows.writerow([*values, *map(_cell, item.moments.ravel().tolist())])

    def flush(self) -> None:
        """Push what was appended to the files (after each batch)."""
        self.results.flush()
        self.moments.flush()

    def close(self) -> None:
        """Close both files."""
        self.results.close()
        self.moments.close()


def _line(cells: Sequence[str]) -> str:
    """One CSV line."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue()


def _trim(path: Path) -> None:
    """Drop a last line cut short (no newline at its end) by an interruption."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def read_done(out: Path, names: Sequence[str], blocks: int) -> dict[int, dict[Params, Outcome]]:
    """The outcomes results.csv (and moments.csv) in `out` hold, by fold and member ({} when none)."""
    path = out / RESULTS
    if not path.exists():
        return {}
    _trim(path)
    moments: dict[Params, np.ndarray] = {}
    if (out / MOMENTS_FILE).exists():
        _trim(out / MOMENTS_FILE)
        with (out / MOMENTS_FILE).open(encoding="utf-8", newline="") as f:
            rows = csv.reader(f)
            next(rows, None)
            for row in rows:
                key = tuple(zip(names, (float(x) for x in row[: len(names)]), strict=True))
                moments[key] = np.array([float(x) for x in row[len(names) :]]).reshape(blocks, MOMENTS)
    done: dict[int, dict[Params, Outcome]] = {}
    with path.open(encoding="utf-8", newline="") as f:
        rows = csv.reader(f)
        next(rows, None)
        for row in rows:
            fold = int(row[0])
            key = tuple(zip(names, (float(x) for x in row[2 : 2 + len(names)]), strict=True))
            cells = row[2 + len(names) : 2 + len(names) + len(METRICS)]
            metrics = tuple(_value(c) for c in cells)
            done.setdefault(fold, {})[key] = Outcome(
                key, metrics, moments.get(key) if fold == 0 else None, row[-1]
            )
    return done


def best_json(result: Optimization, path: Path) -> dict[str, Any]:
    """Write best.json and return what was written.

    It holds the best member, its metrics, the overfitting statistics and the walk-forward folds.
    """
    best = result.best
    summary = result.best_run.summary if result.best_run is not None else None
    walk = result.walk
    data: dict[str, Any] = {
        "optimize": result.block.name,
        "target": result.strategy.name,
        "method": str(result.method),
        "objective": str(result.objective),
        "members": len(result.outcomes),
        "passed": sum(result.passed),
        "params": None if best is None else param_values(best.params),
        "objective_value": None if best is None else result.objective.value(best),
        "metrics": None
        if summary is None
        else json.loads(summary.model_dump_json(exclude={"monthly_returns"})),
        "overfitting": None
        if result.overfit is None
        else {k: v for k, v in asdict(result.overfit).items() if k != "logits"},
        "walk_forward": None
        if walk is None
        else {
            "scheme": walk.scheme,
            "train_ms": walk.train_ms,
            "test_ms": walk.test_ms,
            "out_of_sample": asdict(walk.oos_stats),
            "folds": [_fold(f, result) for f in walk.folds],
            "stability": [asdict(s) for s in walk.stability],
        },
    }
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return data


def _fold(fold: FoldResult, result: Optimization) -> dict[str, Any]:
    """One walk-forward fold as best.json writes it."""
    metric = result.objective.metric

    def side(item: Outcome | None) -> dict[str, Any] | None:
        """In- or out-of-sample metrics of the fold's winner."""
        if item is None:
            return None
        picked = ("total_return", "sharpe", "max_drawdown", "entries")
        return {"objective": result.objective.value(item), **{m: item.metric(m) for m in picked}} | (
            {"error": item.error} if item.error else {}
        )

    return {
        "train": [fold.fold.train_start, fold.fold.train_end],
        "test": [fold.fold.train_end, fold.fold.test_end],
        "params": None if fold.train is None else param_values(fold.train.params),
        "objective_metric": metric,
        "in_sample": side(fold.train),
        "out_of_sample": side(fold.test),
    }
