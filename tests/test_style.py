"""The owner's style rules that ruff cannot see.

- every module, class and function, private ones included, has a docstring;
- every attribute (a class-level annotated field, or `self.x = ...` in a method) has a comment stating its
  meaning: on the same line, or on the line(s) directly above.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted(p for pkg in ("dsl", "runtime") for p in (ROOT / pkg).rglob("*.py"))


def _has_comment(lines: list[str], lineno: int) -> bool:
    """Whether source line `lineno` (1-based) carries a trailing comment or follows a comment line."""
    line = lines[lineno - 1]
    if "#" in line:
        return True
    above = lines[lineno - 2].strip() if lineno >= 2 else ""
    return above.startswith("#")


def _problems(path: Path) -> list[str]:
    """List the style problems of one source file as `path:line: message` strings."""
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text)
    lines = text.splitlines()
    rel = path.relative_to(ROOT)
    found: list[str] = []
    if ast.get_docstring(tree) is None:
        found.append(f"{rel}:1: module has no docstring")
    for node in ast.walk(tree):
        # Every def and class needs a docstring, whatever its visibility.
        if (
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and ast.get_docstring(node) is None
        ):
            found.append(f"{rel}:{node.lineno}: '{node.name}' has no docstring")
        # Class-level annotated fields (dataclasses, pydantic models, NamedTuples) need a comment.
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if (
                    isinstance(item, ast.AnnAssign)
                    and isinstance(item.target, ast.Name)
                    and not _has_comment(lines, item.lineno)
                ):
                    found.append(f"{rel}:{item.lineno}: field '{item.target.id}' has no comment")
        # Instance attributes are introduced by assignments to self.<name>; the first one needs a comment.
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            for stmt in ast.walk(node):
                targets: list[ast.expr] = []
                if isinstance(stmt, ast.Assign):
                    targets = list(stmt.targets)
                elif isinstance(stmt, ast.AnnAssign):
                    targets = [stmt.target]
                for target in targets:
                    if (
                        isinstance(target, ast.Attribute)
                        and isinstance(target.value, ast.Name)
                        and target.value.id == "self"
                        and not _has_comment(lines, stmt.lineno)
                    ):
                        found.append(f"{rel}:{stmt.lineno}: attribute 'self.{target.attr}' has no comment")
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_source_follows_style(path: Path) -> None:
    assert _problems(path) == []


def test_checker_catches_missing_docstring_and_comment(tmp_path: Path) -> None:
    """The style checker itself must fail on a bad file (a test that can fail)."""
    bad = ROOT / "runtime" / "_style_probe_tmp.py"
    bad.write_text('"""Probe."""\n\n\nclass A:\n    """A."""\n\n    x: int\n\n\ndef _f():\n    pass\n')
    try:
        problems = _problems(bad)
    finally:
        bad.unlink()
    assert problems == [
        "runtime/_style_probe_tmp.py:7: field 'x' has no comment",
        "runtime/_style_probe_tmp.py:10: '_f' has no docstring",
    ]
