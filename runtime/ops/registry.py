"""The one operator registry: every built-in series function and syntax operator, by name.

The ops modules register only kernels (`Kernels`: a batch kernel `batch(*input_arrays, *param_values)`, one
float64 array per output, and a streaming kernel factory `stream(*param_values)`, a fresh kernel whose
`update(*inputs)` takes one closed bar) under a built-in's name; the signature (inputs, parameters with
their defaults, outputs, warm-up) comes from `dsl.builtins`. Every series function there must have kernels
and every kernel a signature. Language built-ins are the operators with `internal=False`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import wraps

import numpy as np

from dsl import builtins as b
from runtime.ops import arith, events, moving, oscillators, volatility, volume
from runtime.ops.base import FloatArray, Kernels, Operator, StreamKernel

__all__ = ["BUILTIN_NAMES", "OPERATORS", "Kernels", "Operator", "StreamKernel", "operator"]


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


def _collect(*groups: tuple[Kernels, ...]) -> dict[str, Operator]:
    """The operators of the kernels registered by the ops modules, by name, with their signatures.

    Raises:
        ValueError: when two kernels share a name, a kernel names no built-in, or a series function or
            syntax operator of `dsl.builtins` has no kernels.
    """
    registry: dict[str, Operator] = {}
    for group in groups:
        for kernels in group:
            if kernels.name in registry:
                raise ValueError(f"operator '{kernels.name}' is defined twice")
            internal = kernels.name in b.SYNTAX_OPERATORS
            signature = b.SYNTAX_OPERATORS.get(kernels.name) or b.SERIES_FUNCTIONS.get(kernels.name)
            if signature is None:
                raise ValueError(f"kernels '{kernels.name}' name no built-in of dsl.builtins")
            quiet = replace(kernels, batch=_quiet(kernels.batch))
            registry[kernels.name] = Operator.of(signature, quiet, internal=internal)
    missing = sorted({*b.SERIES_FUNCTIONS, *b.SYNTAX_OPERATORS} - set(registry))
    if missing:
        raise ValueError(f"built-ins without kernels: {', '.join(missing)}")
    return registry


# Every operator by name: the language built-ins and the syntax operators.
OPERATORS: dict[str, Operator] = _collect(
    moving.KERNELS, volatility.KERNELS, oscillators.KERNELS, volume.KERNELS, events.KERNELS, arith.KERNELS
)

# Names of the language built-ins (the operators that are not syntax operators).
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
