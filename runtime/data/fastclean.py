"""Compiled one-pass versions of the validation of `validate`, for the common case of a clean series.

`scan` counts, in one pass over the columns and without temporary arrays, every defect `validate.clean`
looks for; when the rows are already sorted, unique and positive, those counts are the report's as they
stand. `spike_mask` is `validate.find_spikes` after the log returns: the same block medians (the two
middle order statistics averaged exactly as numpy's median does) and the same comparisons, so the mask
is identical bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from numba import njit


class Scan(NamedTuple):
    """The counts of one pass over a series (see `scan`)."""

    unsorted: int  # rows whose open time is not after the previous row's
    nonfinite: int  # rows with a NaN or infinite price or volume
    nonpositive: int  # rows with finite values and a price <= 0
    negative_volume: int  # rows with finite values, positive prices and a volume < 0
    ohlc_errors: int  # rows whose high is below open/close or low above them
    misaligned: int  # open times that are not a multiple of the bar length
    crowded: int  # rows less than one bar length after the previous row (a finer timeframe's)
    gaps: int  # runs of missing bars (meaningful only when nothing is unsorted)
    missing_bars: int  # bars missing in all gaps together
    longest_gap_bars: int  # bars missing in the longest gap
    zero_volume: int  # rows that were not filled and have volume == 0


@njit(cache=True, nogil=True)
def _scan(
    time: np.ndarray,
    o: np.ndarray,
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    v: np.ndarray,
    filled: np.ndarray,
    step: int,
) -> tuple[int, int, int, int, int, int, int, int, int, int, int]:  # pragma: no cover
    """The counts of `Scan`, in its field order."""
    unsorted = nonfinite = nonpositive = negative = ohlc = misaligned = crowded = 0
    gaps = missing = longest = zero = 0
    for i in range(time.shape[0]):
        if i > 0:
            spacing = time[i] - time[i - 1]
            if spacing <= 0:
                unsorted += 1
            elif spacing < step:
                crowded += 1
            else:
                skipped = spacing // step - 1
                if skipped > 0:
                    gaps += 1
                    missing += skipped
                    longest = max(longest, skipped)
        # Each impossible row counts once, under its first defect in this order.
        if not (np.isfinite(o[i]) and np.isfinite(h[i]) and np.isfinite(lo[i]) and np.isfinite(c[i])
                and np.isfinite(v[i])):  # fmt: skip
            nonfinite += 1
        elif not (o[i] > 0 and h[i] > 0 and lo[i] > 0 and c[i] > 0):
            nonpositive += 1
        elif v[i] < 0:
            negative += 1
        top = max(o[i], c[i])
        bottom = min(o[i], c[i])
        if h[i] < top or lo[i] > bottom:
            ohlc += 1
        if time[i] % step != 0:
            misaligned += 1
        if not filled[i] and v[i] == 0:
            zero += 1
    return unsorted, nonfinite, nonpositive, negative, ohlc, misaligned, crowded, gaps, missing, longest, zero


def scan(
    time: np.ndarray,
    prices: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    filled: np.ndarray,
    step: int,
) -> Scan:
    """Count the defects of a series in one pass: open times (ms), (open, high, low, close, volume)."""
    return Scan(*_SCAN(time, *prices, filled, step))


def bad_rows(prices: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Bool mask of the rows `scan` counts as impossible: a non-finite value, a price <= 0, a volume < 0."""
    o, h, lo, c, v = prices
    finite = np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c) & np.isfinite(v)
    with np.errstate(invalid="ignore"):
        return ~(finite & (o > 0) & (h > 0) & (lo > 0) & (c > 0) & (v >= 0))


@njit(cache=True, nogil=True)
def _select(values: np.ndarray, size: int, k: int) -> float:  # pragma: no cover
    """The k-th smallest of values[:size] (no NaN), reordering them so that values[k+1:size] >= it."""
    left = 0
    right = size - 1
    while left < right:
        # Hoare partition around the middle element; the k-th value stays inside [left, right].
        pivot = values[(left + right) // 2]
        i = left
        j = right
        while i <= j:
            while values[i] < pivot:
                i += 1
            while values[j] > pivot:
                j -= 1
            if i <= j:
                values[i], values[j] = values[j], values[i]
                i += 1
                j -= 1
        if k <= j:
            right = j
        elif k >= i:
            left = i
        else:
            break
    return values[k]


@njit(cache=True, nogil=True)
def _block_median(ret: np.ndarray, lo: int, hi: int, scratch: np.ndarray) -> float:  # pragma: no cover
    """Median of |ret[lo:hi]| as numpy takes it (middle value, or mean of the middle two); NaN if any."""
    size = hi - lo
    for k in range(size):
        value = abs(ret[lo + k])
        if value != value:
            return np.nan
        scratch[k] = value
    half = size // 2
    if size % 2 == 1:
        return _select(scratch, size, half)
    low = _select(scratch, size, half - 1)
    # After the selection every value above position half-1 is >= low: the next order statistic is
    # their minimum.
    high = scratch[half]
    for k in range(half + 1, size):
        high = min(high, scratch[k])
    return (low + high) / 2.0


@njit(cache=True, nogil=True)
def _nan_min(a: float, b: float) -> float:  # pragma: no cover
    """np.minimum of two floats: NaN when either is."""
    if a != a or b != b:
        return np.nan
    return min(a, b)


@njit(cache=True, nogil=True)
def _spike_mask(
    ret: np.ndarray, sigmas: float, block: int, mad_to_sigma: float
) -> np.ndarray:  # pragma: no cover
    """The spike mask over the len(ret) + 1 bars of the log returns `ret` (see `validate.find_spikes`)."""
    n = ret.shape[0]
    blocks = -(-n // block)
    scale = np.empty(blocks)
    scratch = np.empty(block)
    for b in range(blocks):
        scale[b] = mad_to_sigma * _block_median(ret, b * block, min((b + 1) * block, n), scratch)
    mask = np.zeros(n + 1, dtype=np.bool_)
    for i in range(n - 1):
        into = ret[i]
        out = ret[i + 1]
        limit = sigmas * _nan_min(scale[i // block], scale[(i + 1) // block])
        big = abs(into) > limit and abs(out) > limit and limit > 0
        back = abs(into + out) < 0.5 * _nan_min(abs(into), abs(out))
        mask[i + 1] = big and back
    return mask


def spike_mask(ret: np.ndarray, sigmas: float, block: int, mad_to_sigma: float) -> np.ndarray:
    """Bool mask of spike bars from the log returns of a series (at least two of them)."""
    return _SPIKE_MASK(np.ascontiguousarray(ret, dtype=np.float64), sigmas, block, mad_to_sigma)  # type: ignore[no-any-return]


# The compiled kernels, typed loosely for mypy (numba's dispatchers have no useful signatures).
_SCAN: Callable[..., tuple[int, ...]] = _scan
_SPIKE_MASK: Callable[..., np.ndarray] = _spike_mask
