"""Warm-up: bars of the base clock an expression needs before its value can be trusted."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from dsl import builtins as b
from dsl.ir import (
    Expr,
    evaluate,
)
from dsl.types import Qual
from dsl.units import TIMEFRAMES


def warmup(node: Expr, params: Mapping[str, float], base_ms: int) -> int:
    """Bars of the base clock before `node` has a trustworthy value (the longest lookback path)."""
    memo: dict[str, int] = {}
    return _warmup(node, params, base_ms, memo)


def longest_warmup(nodes: Iterable[Expr], params: Mapping[str, float], base_ms: int) -> int:
    """The largest `warmup` of `nodes` (0 for none), sharing the work on their common sub-expressions."""
    memo: dict[str, int] = {}
    return max((_warmup(node, params, base_ms, memo) for node in nodes), default=0)


def _warmup(node: Expr, params: Mapping[str, float], base_ms: int, memo: dict[str, int]) -> int:
    """Memoized warm-up of one node, in base bars."""
    if node.digest in memo:
        return memo[node.digest]
    ratio = max(TIMEFRAMES.get(node.clock or "", base_ms) // base_ms, 1)
    inputs = [a for a in node.args if a.qual == Qual.SERIES]
    below = max((_warmup(a, params, base_ms, memo) for a in inputs), default=0)
    own = 0
    if node.op == "source" and node.clock is not None:
        own = ratio - 1  # the first slower bar is seen when its period has closed
    elif node.op == "call" and isinstance(node.value, str) and node.value in b.SERIES_FUNCTIONS:
        sig = b.SERIES_FUNCTIONS[node.value]
        values = {
            a.name: evaluate(v, params)
            for a, v in zip(sig.args, node.args, strict=False)
            if a.role in b.FIXED_ROLES
        }
        known = {k: float(v) for k, v in values.items() if isinstance(v, int | float)}
        if len(known) == len(values):
            own = sig.warmup(known) * ratio
    elif node.op == "offset":
        n = evaluate(node.args[1], params)
        own = b.SYNTAX_OPERATORS["offset"].warmup({"n": n}) * ratio if isinstance(n, int | float) else 0
    elif node.op == "cross":
        own = b.SYNTAX_OPERATORS[f"crosses_{node.value}"].warmup({}) * ratio
    memo[node.digest] = below + own
    return below + own
