"""The one operator registry: every built-in series function and graph-internal operator, by name.

Each `Operator` carries a batch kernel (`batch(*input_arrays, *param_values)`, one float64 array per output)
and a streaming kernel factory (`stream(*param_values)`, a fresh kernel whose `update(*inputs)` takes one
closed bar). Language built-ins are the operators with `internal=False`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import wraps

import numpy as np

from runtime.ops import arith, events, moving, oscillators, volatility, volume
from runtime.ops.base import FloatArray, Operator, StreamKernel

__all__ = ["BUILTIN_NAMES", "OPERATORS", "Operator", "StreamKernel", "operator"]


def _quiet(batch: Callable[..., tuple[FloatArray, ...]]) -> Callable[..., tuple[FloatArray, ...]]:
    """The batch kernel with numpy's floating-point warnings off.

    Overflow to inf and invalid results to na are the defined outcomes on extreme inputs, exactly as in the
    streaming kernel.
    """

    @wraps(batch)
    def run(*args: object) -> tuple[FloatArray, ...]:
        """Run the batch kernel without floating-point warnings."""
        with np.errstate(all="ignore"):
            return batch(*args)

    return run


def _collect(*groups: tuple[Operator, ...]) -> dict[str, Operator]:
    """Index the operators of the kernel modules by name, refusing a name defined twice.

    Raises:
        ValueError: when two operators share a name.
    """
    registry: dict[str, Operator] = {}
    for group in groups:
        for op in group:
            if op.name in registry:
                raise ValueError(f"operator '{op.name}' is defined twice")
            registry[op.name] = replace(op, batch=_quiet(op.batch))
    return registry


# Every operator by name: the language built-ins and the graph-internal ones.
OPERATORS: dict[str, Operator] = _collect(
    moving.OPS, volatility.OPS, oscillators.OPS, volume.OPS, events.OPS, arith.OPS
)

# Names of the language built-ins (the operators that are not graph-internal).
BUILTIN_NAMES: frozenset[str] = frozenset(name for name, op in OPERATORS.items() if not op.internal)


def operator(name: str) -> Operator:
    """The operator called `name`.

    Raises:
        KeyError: with the known names, when there is no such operator.
    """
    try:
        return OPERATORS[name]
    except KeyError:
        raise KeyError(f"no operator '{name}'; known: {', '.join(sorted(OPERATORS))}") from None
