"""The optimize block's settings: `method: grid` may be written bare, like grid(); others need their call."""

from __future__ import annotations

from dsl_helpers import check, diags

# An optimize block over the library's ma_cross; {method} is the line under test (line 5).
BLOCK = 'strat 1\nuse "ma_cross.strat"\noptimize o:\n    target: ma_cross\n    method: {method}\n'


def test_a_bare_grid_checks_to_the_same_method_as_grid_with_parentheses() -> None:
    bare = check(BLOCK.format(method="grid")).program
    called = check(BLOCK.format(method="grid()")).program
    assert bare is not None and called is not None
    method = bare.optimizes[0].method
    assert method is not None and (method.op, method.value, method.args) == ("call", "grid", ())
    assert method == called.optimizes[0].method


def test_a_bare_method_that_needs_arguments_is_still_refused() -> None:
    assert diags(BLOCK.format(method="random")) == [
        ("E026", 5, 13, "method expects grid, random(samples=...) or bayes(trials=...)", None)
    ]


def test_a_bare_word_of_another_category_is_refused() -> None:
    assert diags(BLOCK.format(method="maximize")) == [
        ("E026", 5, 13, "method expects grid, random(samples=...) or bayes(trials=...)", None)
    ]
