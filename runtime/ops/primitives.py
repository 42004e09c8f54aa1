"""The stateful building blocks that operators compose, each a streaming class with its batch twin.

- `Window` / `window_stats`: the last n values with their sum, central second moment (M2) and linearly
  weighted sum, kept incrementally (`window_sum`: the sum alone, for operators that read only it). The
  window is na while it is not full or holds an na. The sums are
  recomputed from the buffer whenever the window becomes full and clean again and each time the ring wraps
  (every n bars), which bounds rounding drift; in between they are updated in O(1). Amortized O(1).
- `Extreme` / `extreme`: highest or lowest of the last n values (current bar included) with a monotonic
  deque, amortized O(1); na while the window is not full or holds an na.
- `Smoother` / `smooth`: a recursive filter `e += alpha * (x - e)` seeded with the simple mean of its first
  n valid inputs; an na input gives na on that bar and leaves the state unchanged.
- `Lag`: the value n bars ago. `TrueRange` / `true_range`: the true range.

The batch twins are numba loops (compiled on first call and cached on disk) doing exactly the same
arithmetic in the same order as the streaming classes, so both agree to the last bit.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from numba import njit

from runtime.ops.base import NAN, FloatArray


class Window:
    """The last n values with their sum, M2 and weighted sum (weight 1 on the oldest .. n on the newest)."""

    __slots__ = ("buf", "count", "m2", "n", "nans", "pos", "stale", "total", "weighted")

    def __init__(self, n: int) -> None:
        """Start with no bar seen."""
        # Window length in bars.
        self.n = n
        # Ring buffer of the last n values; slot t % n holds the value of bar t.
        self.buf = [0.0] * n
        # Next slot to write.
        self.pos = 0
        # Number of values seen, capped at n.
        self.count = 0
        # Number of na values in the window.
        self.nans = 0
        # True when the sums are not those of the current window and must be recomputed.
        self.stale = True
        # Sum of the window's values.
        self.total = 0.0
        # Sum of squared deviations from the window's mean.
        self.m2 = 0.0
        # Sum of the values weighted 1 (oldest) .. n (newest).
        self.weighted = 0.0

    def push(self, x: float) -> bool:
        """Add one bar's value; True when the window is full and clean, so the sums describe it."""
        n = self.n
        buf = self.buf
        pos = self.pos
        old = buf[pos]
        # Account for the value leaving the window (only once the window is full) and the one entering.
        if self.count == n:
            if old != old:
                self.nans -= 1
        else:
            self.count += 1
        if x != x:
            self.nans += 1
        buf[pos] = x
        pos += 1
        if pos == n:
            pos = 0
        self.pos = pos
        if self.count < n or self.nans > 0:
            self.stale = True
            return False
        if self.stale or pos == 0:
            self._recompute()
            return True
        # O(1) update: replace `old` by `x` in the sums (weights shift down by one, x gets weight n).
        total = self.total
        diff = x - old
        old_mean = total / n
        self.weighted += n * x - total
        total += diff
        self.total = total
        self.m2 += diff * (x - total / n + old - old_mean)
        return True

    def _recompute(self) -> None:
        """Recompute the sums from the buffer (ring order for the sum, oldest first for the weighted sum)."""
        n = self.n
        buf = self.buf
        total = 0.0
        for v in buf:
            total += v
        mean = total / n
        m2 = 0.0
        for v in buf:
            d = v - mean
            m2 += d * d
        # The oldest value sits at the next slot to write.
        weighted = 0.0
        weight = 0
        for v in buf[self.pos :]:
            weight += 1
            weighted += weight * v
        for v in buf[: self.pos]:
            weight += 1
            weighted += weight * v
        self.total = total
        self.m2 = m2
        self.weighted = weighted
        self.stale = False


@njit(cache=True)
def window_stats(x: FloatArray, n: int) -> tuple[FloatArray, FloatArray, FloatArray]:  # pragma: no cover
    """Batch twin of `Window`: (sum, M2, weighted sum) of the window ending at each bar, na when not valid."""
    m = x.shape[0]
    total_out = np.full(m, np.nan)
    m2_out = np.full(m, np.nan)
    weighted_out = np.full(m, np.nan)
    buf = np.zeros(n)
    pos = 0
    count = 0
    nans = 0
    stale = True
    total = 0.0
    m2 = 0.0
    weighted = 0.0
    for i in range(m):
        v = x[i]
        old = buf[pos]
        if count == n:
            if old != old:
                nans -= 1
        else:
            count += 1
        if v != v:
            nans += 1
        buf[pos] = v
        pos += 1
        if pos == n:
            pos = 0
        if count < n or nans > 0:
            stale = True
            continue
        if stale or pos == 0:
            total = 0.0
            for j in range(n):
                total += buf[j]
            mean = total / n
            m2 = 0.0
            for j in range(n):
                d = buf[j] - mean
                m2 += d * d
            weighted = 0.0
            for k in range(n):
                weighted += (k + 1) * buf[(pos + k) % n]
            stale = False
        else:
            diff = v - old
            old_mean = total / n
            weighted += n * v - total
            total += diff
            m2 += diff * (v - total / n + old - old_mean)
        total_out[i] = total
        m2_out[i] = m2
        weighted_out[i] = weighted
    return total_out, m2_out, weighted_out


def window_sum(x: FloatArray, n: int) -> FloatArray:
    """The sum output of `window_stats` alone (same arithmetic in the same order, a third of the work)."""
    # The output is allocated here, not in the kernel: numpy backs a big array with huge pages, which on
    # a million bars fault in far faster than numba's allocation.
    total_out = np.full(x.shape[0], np.nan)
    _window_sum(x, n, total_out)
    return total_out


@njit(cache=True)
def _window_sum(x: FloatArray, n: int, total_out: FloatArray) -> None:  # pragma: no cover
    """`window_sum` into `total_out` (all na on entry)."""
    m = x.shape[0]
    buf = np.zeros(n)
    pos = 0
    count = 0
    nans = 0
    stale = True
    total = 0.0
    for i in range(m):
        v = x[i]
        old = buf[pos]
        if count == n:
            if old != old:
                nans -= 1
        else:
            count += 1
        if v != v:
            nans += 1
        buf[pos] = v
        pos += 1
        if pos == n:
            pos = 0
        if count < n or nans > 0:
            stale = True
            continue
        if stale or pos == 0:
            # Recompute from the ring in slot order, as `Window._recompute` does.
            total = 0.0
            for j in range(n):
                total += buf[j]
            stale = False
        else:
            total += v - old
        total_out[i] = total


def variance_of(m2: float, n: int) -> float:
    """Population variance from M2 (a rounding residue below zero counts as zero; na stays na)."""
    return (0.0 if m2 < 0.0 else m2) / n


def batch_variance(m2: FloatArray, n: int) -> FloatArray:
    """Batch twin of `variance_of`."""
    return np.where(m2 < 0.0, 0.0, m2) / n


@njit(cache=True)
def mean_deviation(x: FloatArray, mean: FloatArray, n: int) -> FloatArray:  # pragma: no cover
    """Mean absolute deviation of each window from its mean, in `Window`'s ring order; na where mean is."""
    m = x.shape[0]
    out = np.full(m, np.nan)
    for i in range(m):
        mu = mean[i]
        if mu != mu:
            continue
        acc = 0.0
        for j in range(n):
            acc += abs(x[i - (i - j) % n] - mu)
        out[i] = acc / n
    return out


def window_mean_deviation(window: Window, mean: float) -> float:
    """Streaming twin of `mean_deviation`: the mean absolute deviation of a full window from `mean`."""
    acc = 0.0
    for v in window.buf:
        acc += abs(v - mean)
    return acc / window.n


class Extreme:
    """Highest (or lowest) of the last n values, current bar included, with a monotonic deque."""

    __slots__ = ("highest", "i", "last_nan", "n", "queue")

    def __init__(self, n: int, highest: bool) -> None:
        """Start with no bar seen."""
        # Window length in bars.
        self.n = n
        # True for the highest value, False for the lowest.
        self.highest = highest
        # Candidates as (bar index, value), values strictly decreasing (increasing for the lowest).
        self.queue: deque[tuple[int, float]] = deque()
        # Index of the next bar.
        self.i = 0
        # Index of the last na bar (-n - 1 before any: far enough to be out of every window).
        self.last_nan = -n - 1

    def push(self, x: float) -> float:
        """Add one bar's value and return the window's extreme (na when not full or holding an na)."""
        i = self.i
        self.i = i + 1
        queue = self.queue
        if x != x:
            self.last_nan = i
        elif self.highest:
            while queue and queue[-1][1] <= x:
                queue.pop()
            queue.append((i, x))
        else:
            while queue and queue[-1][1] >= x:
                queue.pop()
            queue.append((i, x))
        # Drop the candidate that left the window.
        start = i - self.n
        if queue and queue[0][0] <= start:
            queue.popleft()
        if i < self.n - 1 or self.last_nan > start:
            return NAN
        return queue[0][1]


@njit(cache=True)
def extreme(x: FloatArray, n: int, highest: bool) -> FloatArray:  # pragma: no cover
    """Batch twin of `Extreme` (the same monotonic deque over an index array)."""
    m = x.shape[0]
    out = np.full(m, np.nan)
    queue = np.empty(m, np.int64)
    head = 0
    tail = 0
    last_nan = -n - 1
    for i in range(m):
        v = x[i]
        if v != v:
            last_nan = i
        elif highest:
            while tail > head and x[queue[tail - 1]] <= v:
                tail -= 1
            queue[tail] = i
            tail += 1
        else:
            while tail > head and x[queue[tail - 1]] >= v:
                tail -= 1
            queue[tail] = i
            tail += 1
        start = i - n
        if tail > head and queue[head] <= start:
            head += 1
        if i >= n - 1 and last_nan <= start:
            out[i] = x[queue[head]]
    return out


class Smoother:
    """Recursive filter `e += alpha * (x - e)`, seeded with the simple mean of its first n valid inputs."""

    __slots__ = ("acc", "alpha", "n", "seen", "value")

    def __init__(self, n: int, alpha: float) -> None:
        """Start with no bar seen."""
        # Number of valid inputs averaged for the seed.
        self.n = n
        # Smoothing factor: 2/(n+1) for an EMA, 1/n for Wilder's RMA.
        self.alpha = alpha
        # Valid inputs seen so far, counted up to n.
        self.seen = 0
        # Sum of the first valid inputs, for the seed.
        self.acc = 0.0
        # Current filter value (na until seeded).
        self.value = NAN

    def step(self, x: float) -> float:
        """Feed one bar; na input gives na and leaves the state unchanged; na until seeded."""
        if x != x:
            return NAN
        if self.seen < self.n:
            self.acc += x
            self.seen += 1
            if self.seen < self.n:
                return NAN
            self.value = self.acc / self.n
            return self.value
        self.value += self.alpha * (x - self.value)
        return self.value


@njit(cache=True)
def smooth(x: FloatArray, n: int, alpha: float) -> FloatArray:  # pragma: no cover
    """Batch twin of `Smoother`."""
    m = x.shape[0]
    out = np.full(m, np.nan)
    seen = 0
    acc = 0.0
    value = np.nan
    for i in range(m):
        v = x[i]
        if v != v:
            continue
        if seen < n:
            acc += v
            seen += 1
            if seen < n:
                continue
            value = acc / n
        else:
            value += alpha * (v - value)
        out[i] = value
    return out


def ema_alpha(n: int) -> float:
    """EMA smoothing factor 2/(n+1)."""
    return 2.0 / (n + 1)


def wilder_alpha(n: int) -> float:
    """Wilder's (RMA) smoothing factor 1/n."""
    return 1.0 / n


class Lag:
    """The value n bars ago (na for the first n bars); n = 0 is the current value."""

    __slots__ = ("buf", "n", "pos")

    def __init__(self, n: int) -> None:
        """Start with no bar seen."""
        # Delay in bars.
        self.n = n
        # Ring buffer of the last n values, na before they are seen.
        self.buf = [NAN] * n
        # Slot holding the value n bars ago, overwritten by the current value.
        self.pos = 0

    def push(self, x: float) -> float:
        """Add one bar's value and return the value n bars ago."""
        if self.n == 0:
            return x
        pos = self.pos
        old = self.buf[pos]
        self.buf[pos] = x
        pos += 1
        self.pos = 0 if pos == self.n else pos
        return old


class TrueRange:
    """True range: max(high - low, |high - prev close|, |low - prev close|); high - low with no prev close."""

    __slots__ = ("prev_close",)

    def __init__(self) -> None:
        """Start with no bar seen."""
        # Close of the previous bar (na before the first bar).
        self.prev_close = NAN

    def step(self, high: float, low: float, close: float) -> float:
        """Feed one bar and return its true range (na when high or low is na)."""
        prev = self.prev_close
        self.prev_close = close
        span = high - low
        if prev != prev or span != span:
            return span
        up = abs(high - prev)
        down = abs(low - prev)
        if up > span:
            span = up
        return down if down > span else span


def true_range(high: FloatArray, low: FloatArray, close: FloatArray) -> FloatArray:
    """Batch twin of `TrueRange`."""
    prev = np.empty(close.shape[0])
    prev[:1] = np.nan
    prev[1:] = close[:-1]
    span = high - low
    widest = np.maximum(np.maximum(span, np.abs(high - prev)), np.abs(low - prev))
    return np.where(np.isnan(prev), span, widest)
