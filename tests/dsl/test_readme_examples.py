"""Every spec example of README.md checks clean and runs, so the README can never drift from the language.

The examples are read out of the README itself: each fenced block that starts with `strat 1` is a whole
spec (checked, then run on the synthetic market); the `optimize` block is checked inside the first whole
spec (it targets its strategy); each form the settings table gives for `size` is checked as a one-line
setting of a strategy.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from dsl_helpers import HEAD, ROOT, check

from runtime.cli import main

# The README's text.
README = (ROOT / "README.md").read_text(encoding="utf-8")
# Every fenced code block of the README, without its fences.
BLOCKS = [m.group(1) for m in re.finditer(r"^```[^\n]*\n(.*?)^```", README, re.S | re.M)]
# The whole specs among them.
SPECS = [b for b in BLOCKS if b.startswith("strat 1\n")]
# The `optimize` blocks (they need a strategy to target).
OPTIMIZE = [b for b in BLOCKS if b.startswith("optimize ")]
# The settings table's `size` row.
SIZE_ROW = next(line for line in README.splitlines() if line.startswith("| `size` |"))
# The sizing forms that row documents: each backticked call.
SIZES = re.findall(r"`([a-z_]+\([^`]*\))`", SIZE_ROW)


def _errors(text: str) -> list[str]:
    """The error diagnostics of `text`, one line each."""
    found = check(text).diagnostics
    return [f"{d.line}:{d.col} {d.code} {d.message}" for d in found if d.severity == "error"]


def test_the_readme_has_examples_of_each_kind() -> None:
    assert len(SPECS) >= 1 and len(OPTIMIZE) == 1
    assert SIZES == [
        "equity_pct(x)",
        "risk_per_trade(x)",
        "fixed(q)",
        "kelly(fraction=50%, lookback=50, cap=25%)",
    ]


@pytest.mark.parametrize("spec", SPECS, ids=lambda b: b.splitlines()[1][:30])
def test_readme_spec_checks_clean_and_runs_on_synthetic_data(spec: str, tmp_path: Path) -> None:
    assert _errors(spec) == []
    # Run it on a short synthetic range (its `use` resolves in library/).
    path = tmp_path / "readme.strat"
    path.write_text(spec, encoding="utf-8")
    span = ["--from", "2024-01-01", "--to", "2024-03-01"]
    out = ["--no-save", "--no-report", "--out", str(tmp_path / "out")]
    code = main(["run", str(path), "--data", "synthetic", *span, *out])
    assert code == 0


def test_readme_optimize_block_checks_clean_in_the_readme_spec() -> None:
    assert _errors(SPECS[0] + "\n" + OPTIMIZE[0]) == []


@pytest.mark.parametrize("size", SIZES)
def test_readme_sizing_forms_check_clean(size: str) -> None:
    # The placeholders of the table (`x`, `q`) stand for a percentage and a quantity.
    text = size.replace("(x)", "(2%)").replace("(q)", "(0.1)")
    rules = "    entry long when close > open\n    exit long when close < open\n"
    body = f"    stop_loss: 2%\n    size: {text}\n{rules}"
    assert _errors(HEAD + body) == []
