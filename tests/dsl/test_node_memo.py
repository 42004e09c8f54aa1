"""The node memo of `dsl.ir.Expr.make`: shares equal nodes, stays bounded, empties on demand."""

from __future__ import annotations

import pytest
from dsl_helpers import ROOT

from dsl import ir
from dsl.checker import check_file
from dsl.ir import Expr, forget_nodes


def test_equal_content_gives_the_same_node_until_forgotten() -> None:
    first = Expr.make("binary", "+", (Expr.make("const", 1, integer=True), Expr.make("param", "n")))
    again = Expr.make("binary", "+", (Expr.make("const", 1, integer=True), Expr.make("param", "n")))
    assert again is first
    forget_nodes()
    assert ir._MADE == {}
    fresh = Expr.make("binary", "+", (Expr.make("const", 1, integer=True), Expr.make("param", "n")))
    assert fresh is not first and fresh == first and fresh.digest == first.digest


def test_memo_holds_at_most_its_limit_and_starts_over_when_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ir, "NODE_MEMO_LIMIT", 5)
    forget_nodes()
    sizes = []
    for i in range(12):
        Expr.make("const", i, integer=True)
        sizes.append(len(ir._MADE))
    assert sizes == [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2]


def test_a_tiny_memo_checks_to_the_same_program(monkeypatch: pytest.MonkeyPatch) -> None:
    """Results never depend on the memo: a memo that keeps emptying gives the same IR, digests included."""
    path = ROOT / "library" / "macd.strat"
    forget_nodes()
    expected = check_file(path).program
    monkeypatch.setattr(ir, "NODE_MEMO_LIMIT", 3)
    forget_nodes()
    program = check_file(path).program
    assert program is not None and expected is not None
    assert program.model_dump() == expected.model_dump()
    assert len(ir._MADE) <= 3
