"""Shared parts of the operator library: the operator record, the streaming kernel protocol, parameter checks.

Conventions for every operator: series are float64 numpy arrays, `na` is NaN, booleans are 1.0/0.0 and a
condition that is na counts as false. A batch kernel returns one array per output, of the input's length; a
streaming kernel takes one closed bar and returns one float per output. Both do the same arithmetic in the
same order, so they agree to the last bit (the parity tests allow 1e-9 relative).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from dsl.builtins import Signature

# A float64 series; NaN is na.
FloatArray = npt.NDArray[np.float64]
# The na value of one bar.
NAN = math.nan
# The streaming result of a one-output operator whose value is na (shared to avoid a tuple per bar).
NA1: tuple[float] = (NAN,)


class StreamKernel(Protocol):
    """A streaming kernel: the state of one operator node, fed one closed bar at a time in O(1).

    `kernel.update(*inputs: float) -> tuple[float, ...]` consumes one closed bar's inputs (in the operator's
    input order) and returns one value per output. It is declared as a read-only callable so that kernels
    may name their inputs (`update(self, high, low, close)`), which a `*inputs` signature would forbid.
    """

    @property
    def update(self) -> Callable[..., tuple[float, ...]]:
        """The per-bar update: `update(*inputs) -> one value per output`."""
        ...


@dataclass(frozen=True)
class Kernels:
    """What an ops module registers for one built-in: its two kernels, under the built-in's name.

    The signature (inputs, parameters with their defaults, outputs, warm-up) is the built-in's in
    `dsl.builtins`; the kernels take the inputs, then the parameters, in its order.
    """

    # Name of the series function or syntax operator in `dsl.builtins`, e.g. "sma" or "offset".
    name: str
    # batch(*input_arrays, *param_values) -> one float64 array per output, each of the inputs' length.
    batch: Callable[..., tuple[FloatArray, ...]]
    # stream(*param_values) -> a fresh streaming kernel.
    stream: Callable[..., StreamKernel]


@dataclass(frozen=True)
class Operator:
    """One built-in series function (or syntax operator): its signature's runtime view and its kernels.

    Everything but the kernels is derived from the `dsl.builtins.Signature` by `Operator.of`.
    """

    # Language name, e.g. "sma" (syntax operators such as "offset" are not callable by name).
    name: str
    # Series input names in order, e.g. ("source",) or ("high", "low", "close").
    inputs: tuple[str, ...]
    # True when the inputs are the strategy's own bars, passed by the compiler (atr, tr, stoch, ...).
    implicit: bool
    # Fixed (per-run) parameters in order: (name, default), default None when the parameter is required.
    params: tuple[tuple[str, float | int | None], ...]
    # Output names: ("value",) or the struct fields, e.g. ("line", "signal", "hist").
    outputs: tuple[str, ...]
    # batch(*input_arrays, *param_values) -> one float64 array per output, each of the inputs' length.
    batch: Callable[..., tuple[FloatArray, ...]]
    # stream(*param_values) -> a fresh streaming kernel.
    stream: Callable[..., StreamKernel]
    # The built-in's signature in the language, which all the fields above but the kernels come from.
    signature: Signature
    # True for a syntax operator that is not callable by name (offset, crosses_above, ...).
    internal: bool = False

    @classmethod
    def of(cls, signature: Signature, kernels: Kernels, *, internal: bool) -> Operator:
        """The operator of a built-in's signature with its kernels.

        Raises:
            TypeError: when a fixed parameter's default is not a number (only setting functions, which
                have no kernels, have defaults such as "50%").
        """
        params: list[tuple[str, float | int | None]] = []
        for arg in signature.fixed_args:
            if isinstance(arg.default, str):
                raise TypeError(f"{signature.name}() parameter '{arg.name}' has a default that is no number")
            params.append((arg.name, arg.default))
        return cls(
            name=signature.name,
            inputs=signature.implicit or tuple(a.name for a in signature.series_args),
            implicit=bool(signature.implicit),
            params=tuple(params),
            outputs=tuple(name for name, _ in signature.fields) or ("value",),
            batch=kernels.batch,
            stream=kernels.stream,
            signature=signature,
            internal=internal,
        )

    @property
    def recursive(self) -> bool:
        """Whether this is a recursive filter (ema, rma, rsi, atr, ...).

        Its values depend on the whole history and converge after its first valid bar, so its warm-up in
        the language adds a convergence allowance.
        """
        return self.signature.recursive

    def first_valid(self, *params: float) -> int:
        """Index of the first bar whose outputs are all valid on clean input (bars of the inputs' clock).

        The parameter values are given in order; for barssince/valuewhen, the input's condition always holds.
        """
        return self.signature.first_valid(dict(zip([name for name, _ in self.params], params, strict=True)))

    def bind(self, *args: float, **kwargs: float) -> tuple[float, ...]:
        """Parameter values in order, from positional and keyword values plus the defaults.

        Raises:
            ValueError: on an unknown or duplicated parameter, too many values, or a missing required one.
        """
        names = [name for name, _ in self.params]
        if len(args) > len(names):
            raise ValueError(f"{self.name}() takes {len(names)} parameters; got {len(args)}")
        values: dict[str, float] = dict(zip(names, args, strict=False))
        for key, value in kwargs.items():
            if key not in names:
                raise ValueError(f"{self.name}() has no parameter '{key}'")
            if key in values:
                raise ValueError(f"{self.name}() got parameter '{key}' twice")
            values[key] = value
        bound: list[float] = []
        for name, default in self.params:
            if name in values:
                bound.append(values[name])
            elif default is None:
                raise ValueError(f"{self.name}() needs parameter '{name}'")
            else:
                bound.append(default)
        return tuple(bound)


def int_param(name: str, value: float, minimum: int) -> int:
    """A whole-number parameter (an integral float is accepted) of at least `minimum`.

    Raises:
        ValueError: when the value is not a whole number or is below the minimum.
    """
    if isinstance(value, bool) or not float(value).is_integer() or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}; got {value!r}")
    return int(value)


def float_param(name: str, value: float) -> float:
    """A finite real parameter.

    Raises:
        ValueError: when the value is not finite.
    """
    if isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    return float(value)


def series(values: npt.ArrayLike) -> FloatArray:
    """The input as a contiguous float64 array (no copy when it already is one)."""
    return np.ascontiguousarray(values, dtype=np.float64)


def lagged(values: FloatArray, n: int) -> FloatArray:
    """`values[t - n]` at every t (na for the first n bars); n = 0 returns a copy."""
    out = np.full(values.shape[0], np.nan)
    if n == 0:
        out[:] = values
    elif n < values.shape[0]:
        out[n:] = values[:-n]
    return out


def is_true(cond: FloatArray) -> npt.NDArray[np.bool_]:
    """Where a condition series holds: non-zero and not na."""
    return (cond == cond) & (cond != 0.0)


def as_bool(mask: npt.NDArray[np.bool_]) -> FloatArray:
    """A boolean mask as a 1.0/0.0 series."""
    return mask.astype(np.float64)
