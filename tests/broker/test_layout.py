"""The broker's functions take a few named arguments, never long positional lists."""

from __future__ import annotations

import ast
from pathlib import Path

import runtime.broker

BROKER = Path(runtime.broker.__file__).parent


def test_no_broker_function_takes_more_than_ten_parameters() -> None:
    counts = {}
    for path in sorted(BROKER.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef):
                args = node.args
                counts[f"{path.name}:{node.name}"] = len(args.posonlyargs + args.args + args.kwonlyargs)
    assert "step.py:step_points" in counts
    assert {name: n for name, n in counts.items() if n > 10} == {}
