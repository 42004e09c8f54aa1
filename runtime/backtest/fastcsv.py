"""Compiled text formatting for the large CSV files: ISO-8601 times and fixed eight-decimal floats.

A million-row equity.csv formatted with Python's `%` operator takes seconds; these kernels write the same
bytes into a buffer in a few tens of milliseconds. The output is exactly what `"%.8f" % x` and
`numpy.datetime_as_string(..., unit="s" or "ms") + "Z"` give: the eight-decimal value is rounded from the
exact binary value of x (half to even on a tie), using an error-free product so no rounding slips in.
Anything the kernels do not cover (a float beyond 2**63, a year outside 1..9999) makes them return -1 and
the caller formats that part the slow way.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numba import njit

# Bytes of one formatted time: "YYYY-MM-DDTHH:MM:SS" plus ".mmm" with milliseconds, plus "Z".
TIME_WIDTH_S = 20
TIME_WIDTH_MS = 24
# Bytes of the date part "YYYY-MM-DDT" of a formatted time.
_DATE_WIDTH = 11
# Most bytes of one "%.8f" value the kernel writes: sign, 19 integer digits, point, 8 decimals.
FLOAT_WIDTH = 29
# Veltkamp's splitting constant for float64 (2**27 + 1).
_SPLIT = 134217729.0
# Values at or beyond this magnitude are left to Python (their integer part overflows int64).
_LIMIT = 9.2e18


@njit(cache=True, nogil=True)
def _two_prod(a: float, b: float) -> tuple[float, float]:  # pragma: no cover
    """Dekker's error-free product: (p, e) with p = fl(a * b) and a * b = p + e exactly."""
    p = a * b
    c = _SPLIT * a
    ah = c - (c - a)
    al = a - ah
    c = _SPLIT * b
    bh = c - (c - b)
    bl = b - bh
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


# "00", "01", ..., "99": the two ASCII digits of every number below 100, for writing digits in pairs.
_PAIRS = np.frombuffer("".join(f"{i:02d}" for i in range(100)).encode(), dtype=np.uint8)


@njit(cache=True, nogil=True)
def _put_digits(buf: np.ndarray, pos: int, value: int, width: int) -> int:  # pragma: no cover
    """Write a non-negative integer below 10**19 in decimal, zero-padded to `width` digits; return the end."""
    # Count the digits by comparison, then fill them from the right two at a time (the divisions by the
    # constant 100 compile to multiplications); unsigned arithmetic spares Python's floor-division fix-ups.
    rest = np.uint64(value)
    digits = 1
    limit = np.uint64(10)
    while digits < 19 and rest >= limit:
        digits += 1
        limit *= np.uint64(10)
    end = pos + max(digits, width)
    i = end
    hundred = np.uint64(100)
    while i - pos >= 2:
        pair = 2 * (rest % hundred)
        rest //= hundred
        buf[i - 1] = _PAIRS[pair + 1]
        buf[i - 2] = _PAIRS[pair]
        i -= 2
    if i > pos:
        buf[pos] = np.uint8(48) + np.uint8(rest % np.uint64(10))
    return end


@njit(cache=True, nogil=True)
def _put_text(buf: np.ndarray, pos: int, text: bytes) -> int:  # pragma: no cover
    """Write ASCII bytes; return the end."""
    for i in range(len(text)):
        buf[pos] = text[i]
        pos += 1
    return pos


@njit(cache=True, nogil=True)
def put_fixed8(buf: np.ndarray, pos: int, x: float) -> int:  # pragma: no cover
    """Write `"%.8f" % x` at pos and return the end, or -1 when |x| is too large for the kernel."""
    if x != x:
        return _put_text(buf, pos, b"nan")
    negative = math.copysign(1.0, x) < 0.0
    if negative:
        buf[pos] = 45
        pos += 1
    a = abs(x)
    if a == math.inf:
        return _put_text(buf, pos, b"inf")
    if a >= _LIMIT:
        return -1
    # Integer and fractional parts are exact; the fraction times 1e8 is p + e exactly.
    whole = math.floor(a)
    p, e = _two_prod(a - whole, 1e8)
    low = math.floor(p)
    d = p - low
    # Round p + e to the nearest integer: d and 0.5 differ by at least one ulp of p unless equal, and
    # |e| is at most half an ulp, so e only decides an exact tie of d (then half to even when e is 0).
    units = int(low)
    if d > 0.5 or (d == 0.5 and (e > 0.0 or (e == 0.0 and units & 1 == 1))):
        units += 1
    integer = int(whole)
    if units == 100_000_000:
        integer += 1
        units = 0
    pos = _put_digits(buf, pos, integer, 1)
    buf[pos] = 46
    return _put_eight(buf, pos + 1, units)


@njit(cache=True, nogil=True)
def _put_eight(buf: np.ndarray, pos: int, value: int) -> int:  # pragma: no cover
    """Write a value below 10**8 as exactly eight digits (four pairs, no digit counting); return the end."""
    high = value // 10_000
    low = value - high * 10_000
    for at, part in ((pos, high), (pos + 4, low)):
        left = 2 * (part // 100)
        right = 2 * (part % 100)
        buf[at] = _PAIRS[left]
        buf[at + 1] = _PAIRS[left + 1]
        buf[at + 2] = _PAIRS[right]
        buf[at + 3] = _PAIRS[right + 1]
    return pos + 8


@njit(cache=True, nogil=True)
def put_iso(buf: np.ndarray, pos: int, ms: int, millis: bool) -> int:  # pragma: no cover
    """Write a UTC ms time as `YYYY-MM-DDTHH:MM:SS[.mmm]Z`; return the end, or -1 outside years 1..9999."""
    days = ms // 1000 // 86_400
    # Civil date from days since 1970-01-01 (H. Hinnant's algorithm, proleptic Gregorian).
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    if year < 1 or year > 9999:
        return -1
    pos = _put_digits(buf, pos, year, 4)
    buf[pos] = 45
    pos = _put_digits(buf, pos + 1, month, 2)
    buf[pos] = 45
    pos = _put_digits(buf, pos + 1, day, 2)
    buf[pos] = 84
    return _put_clock(buf, pos + 1, ms, millis)


@njit(cache=True, nogil=True)
def _put_clock(buf: np.ndarray, pos: int, ms: int, millis: bool) -> int:  # pragma: no cover
    """Write the time of day of a UTC ms time as `HH:MM:SS[.mmm]Z`; return the end."""
    seconds = ms // 1000
    rest = seconds - (seconds // 86_400) * 86_400
    pos = _put_digits(buf, pos, rest // 3600, 2)
    buf[pos] = 58
    pos = _put_digits(buf, pos + 1, (rest // 60) % 60, 2)
    buf[pos] = 58
    pos = _put_digits(buf, pos + 1, rest % 60, 2)
    if millis:
        buf[pos] = 46
        pos = _put_digits(buf, pos + 1, ms - seconds * 1000, 3)
    buf[pos] = 90
    return pos + 1


@njit(cache=True, nogil=True)
def _iso_block(ms: np.ndarray, millis: bool, width: int) -> np.ndarray:  # pragma: no cover
    """Fixed-width ISO times, one per `width` bytes; an empty array when one cannot be written."""
    buf = np.empty(len(ms) * width, dtype=np.uint8)
    for i in range(len(ms)):
        if put_iso(buf, i * width, ms[i], millis) < 0:
            return np.empty(0, dtype=np.uint8)
    return buf


@njit(cache=True, nogil=True)
def _rows_block(
    time: np.ndarray, columns: np.ndarray, start: int, stop: int, millis: bool, buf: np.ndarray
) -> int:  # pragma: no cover
    """Write rows start..stop-1 as `time,c0,c1,...` ("%.8f" values) ending in LF into buf; bytes or -1.

    It reads the whole arrays in place (no sliced copies) and releases the GIL, so a writer thread spends
    almost all its time here without waiting for the interpreter.
    """
    pos = 0
    # Consecutive rows mostly share their day: the row start and day of the last full ISO time, whose
    # `YYYY-MM-DDT` is then copied instead of worked out again.
    dated = -1
    day = np.int64(0)
    # A column often holds the previous row's value (cash and exposure between trades, drawdown at a
    # peak): per column, where that value's text starts and ends in buf, and the value, to copy the text.
    count = columns.shape[0]
    text_at = np.full(count, -1, dtype=np.int64)
    text_end = np.zeros(count, dtype=np.int64)
    previous = np.zeros(count)
    for i in range(start, stop):
        today = time[i] // 86_400_000
        if dated >= 0 and today == day:
            _copy(buf, dated, pos, _DATE_WIDTH)
            pos = _put_clock(buf, pos + _DATE_WIDTH, time[i], millis)
        else:
            dated, day = pos, today
            pos = put_iso(buf, pos, time[i], millis)
            if pos < 0:
                return -1
        for j in range(count):
            buf[pos] = 44
            pos += 1
            x = columns[j, i]
            # The same value with the same sign (so -0.0 is not taken for 0.0) has the same text.
            if (
                text_at[j] >= 0
                and x == previous[j]
                and math.copysign(1.0, x) == math.copysign(1.0, previous[j])
            ):
                size = text_end[j] - text_at[j]
                _copy(buf, text_at[j], pos, size)
                pos += size
            else:
                end = put_fixed8(buf, pos, x)
                if end < 0:
                    return -1
                text_at[j], text_end[j], previous[j] = pos, end, x
                pos = end
        buf[pos] = 10
        pos += 1
    return pos


@njit(cache=True, nogil=True)
def _copy(buf: np.ndarray, source: int, target: int, size: int) -> None:  # pragma: no cover
    """Copy `size` bytes of buf from `source` to a later, non-overlapping `target`."""
    for k in range(size):
        buf[target + k] = buf[source + k]


# The compiled kernels, typed loosely for mypy (numba's dispatchers have no useful signatures).
_ISO_BLOCK: Callable[..., np.ndarray] = _iso_block
_ROWS_BLOCK: Callable[..., int] = _rows_block


def iso_column(ms: np.ndarray, millis: bool) -> list[str] | None:
    """ISO-8601 UTC strings of ms times like `metrics.iso_times`; None when a year is outside 1..9999."""
    width = TIME_WIDTH_MS if millis else TIME_WIDTH_S
    values = np.ascontiguousarray(ms, dtype=np.int64)
    if len(values) == 0:
        return []
    buf = _ISO_BLOCK(values, millis, width)
    if len(buf) == 0:
        return None
    return buf.view(f"S{width}").astype(f"U{width}").tolist()  # type: ignore[no-any-return]


def row_bytes(columns: int) -> int:
    """Most bytes one row of `rows_text` with this many float columns takes."""
    return TIME_WIDTH_MS + 1 + columns * (FLOAT_WIDTH + 1)


def rows_text(
    time: np.ndarray,
    columns: np.ndarray,
    millis: bool,
    out: np.ndarray | None = None,
    start: int = 0,
    stop: int | None = None,
) -> np.ndarray | None:
    """CSV rows `time,c0,...` from ms times and a (columns, rows) float64 block, as a uint8 array.

    Only rows start..stop-1 are written (all by default). `out` is a byte buffer to write into (reused
    across chunks; grown when too small). Returns the written part of the buffer, or None when a value is
    out of the kernel's range.
    """
    values = np.ascontiguousarray(time, dtype=np.int64)
    block = np.ascontiguousarray(columns, dtype=np.float64)
    end = len(values) if stop is None else min(stop, len(values))
    need = max(end - start, 0) * row_bytes(block.shape[0])
    buf = out if out is not None and len(out) >= need else np.empty(need, dtype=np.uint8)
    size = _ROWS_BLOCK(values, block, start, end, millis, buf)
    return None if size < 0 else buf[:size]
