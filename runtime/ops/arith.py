"""Element-wise math: abs, log, sqrt, min, max, round, nz (stateless; batch is vectorized numpy).

na handling: na in, na out (min and max are na when either side is na), except nz which replaces na. log is
na for x <= 0 and sqrt for x < 0. round rounds half away from zero to `digits` decimals (negative digits
round to tens, hundreds, ...).
"""

from __future__ import annotations

import math

import numpy as np

from runtime.ops.base import NAN, FloatArray, Kernels, float_param, int_param, series

# Above this magnitude (2**52) every float is already a whole number, so scaled rounding leaves it as is.
_WHOLE = 4503599627370496.0


def abs_batch(x: FloatArray) -> tuple[FloatArray]:
    """Absolute value."""
    return (np.abs(series(x)),)


class Abs:
    """Streaming twin of `abs_batch`."""

    __slots__ = ()

    def update(self, x: float) -> tuple[float]:
        """Feed one bar; return |x|."""
        return (abs(x),)


def log_batch(x: FloatArray) -> tuple[FloatArray]:
    """Natural logarithm; na for x <= 0."""
    v = series(x)
    positive = v > 0.0
    return (np.where(positive, np.log(np.where(positive, v, 1.0)), np.nan),)


class Log:
    """Streaming twin of `log_batch`."""

    __slots__ = ()

    def update(self, x: float) -> tuple[float]:
        """Feed one bar; return ln(x)."""
        return (math.log(x) if x > 0.0 else NAN,)


def sqrt_batch(x: FloatArray) -> tuple[FloatArray]:
    """Square root; na for x < 0."""
    v = series(x)
    valid = v >= 0.0
    return (np.where(valid, np.sqrt(np.where(valid, v, 0.0)), np.nan),)


class Sqrt:
    """Streaming twin of `sqrt_batch`."""

    __slots__ = ()

    def update(self, x: float) -> tuple[float]:
        """Feed one bar; return sqrt(x)."""
        return (math.sqrt(x) if x >= 0.0 else NAN,)


def min_batch(a: FloatArray, b: FloatArray) -> tuple[FloatArray]:
    """The smaller of a and b; na when either is na."""
    return (np.minimum(series(a), series(b)),)


class Min:
    """Streaming twin of `min_batch`."""

    __slots__ = ()

    def update(self, a: float, b: float) -> tuple[float]:
        """Feed one bar; return min(a, b)."""
        return (NAN if a != a or b != b else (b if b < a else a),)


def max_batch(a: FloatArray, b: FloatArray) -> tuple[FloatArray]:
    """The larger of a and b; na when either is na."""
    return (np.maximum(series(a), series(b)),)


class Max:
    """Streaming twin of `max_batch`."""

    __slots__ = ()

    def update(self, a: float, b: float) -> tuple[float]:
        """Feed one bar; return max(a, b)."""
        return (NAN if a != a or b != b else (b if b > a else a),)


def _scale(digits: float) -> float:
    """10 ** digits for rounding to `digits` decimals.

    Raises:
        ValueError: when digits is not a whole number in -300..300.
    """
    places = int_param("digits", digits, -300)
    if places > 300:
        raise ValueError(f"digits must be at most 300; got {digits!r}")
    return 10.0**places


def round_batch(x: FloatArray, digits: float) -> tuple[FloatArray]:
    """Round x half away from zero to `digits` decimals."""
    v = series(x)
    p = _scale(digits)
    scaled = np.abs(v) * p
    rounded = np.floor(scaled + 0.5) / p
    rounded = np.where(v < 0.0, -rounded, rounded)
    return (np.where(scaled < _WHOLE, rounded, v),)


class Round:
    """Streaming twin of `round_batch`."""

    __slots__ = ("scale",)

    def __init__(self, digits: float) -> None:
        """Store the fixed parameter (the kernel keeps no state between bars)."""
        # 10 ** digits.
        self.scale = _scale(digits)

    def update(self, x: float) -> tuple[float]:
        """Feed one bar; return x rounded."""
        scaled = abs(x) * self.scale
        # na, infinities and values too large to carry decimals are returned as they are.
        if not scaled < _WHOLE:
            return (x,)
        rounded = math.floor(scaled + 0.5) / self.scale
        return (-rounded if x < 0.0 else rounded,)


def nz_batch(x: FloatArray, default: float) -> tuple[FloatArray]:
    """x, with na replaced by `default`."""
    v = series(x)
    return (np.where(np.isnan(v), float_param("default", default), v),)


class Nz:
    """Streaming twin of `nz_batch`."""

    __slots__ = ("default",)

    def __init__(self, default: float) -> None:
        """Store the fixed parameter (the kernel keeps no state between bars)."""
        # Replacement for na.
        self.default = float_param("default", default)

    def update(self, x: float) -> tuple[float]:
        """Feed one bar; return x, or the default when x is na."""
        return (self.default if x != x else x,)


# Kernels of this module, by built-in name (signatures in `dsl.builtins`), in the language's order.
KERNELS: tuple[Kernels, ...] = (
    Kernels("abs", abs_batch, Abs),
    Kernels("log", log_batch, Log),
    Kernels("sqrt", sqrt_batch, Sqrt),
    Kernels("min", min_batch, Min),
    Kernels("max", max_batch, Max),
    Kernels("round", round_batch, Round),
    Kernels("nz", nz_batch, Nz),
)
