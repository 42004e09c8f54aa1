"""The built wheel carries the grammar and the standard library, and finds them where it is installed."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_carries_grammar_and_library(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("strat-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    library = sorted(p.name for p in (ROOT / "library").glob("*.strat"))
    assert "dsl/grammar.lark" in names
    assert {f"dsl/library/{name}" for name in library} <= names
    # Unpacked alone (no checkout beside it), the package finds both inside itself and parses a spec.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import dsl.resources as r; from dsl.checker import check_source;"
        "print(r.grammar_path().parent == r.library_dir().parent);"
        "print(check_source('strat 1\\nuse \"ma_cross.strat\"\\n', 'x.strat').ok)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
    )
    assert out.stdout.split() == ["True", "True"], out.stderr
    assert str(site) in subprocess.run(
        [sys.executable, "-c", "import dsl.resources as r; print(r.grammar_path())"],
        cwd=tmp_path, env={"PYTHONPATH": str(site)}, capture_output=True, text=True,
    ).stdout  # fmt: skip
