"""The one merge of several bar feeds into a time line: the order in which a live engine sees closed bars.

A bar closes at its open time plus its feed's bar length. The merged time line is a sequence of points,
one per distinct close time in ascending order; a point holds every bar closing then. Within a point,
bars of slower feeds (longer bars) come first, so that the 14:00–15:00 hourly bar is visible to the 5m
bar that closes at 15:00; feeds of equal bar length keep the order in which they were given.

The streaming graph driver (`run_stream`), the replay driver and the live engine all take their bars in
this order (`points`), so it is written only here; `timeline` gives the same merge as arrays.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt


class Timeline(NamedTuple):
    """Feeds merged into points, as arrays: the form a compiled loop reads (rows are bars)."""

    times: np.ndarray  # int64 close time of each point, UTC ms, ascending
    starts: np.ndarray  # int64, one more than the points: point p holds rows starts[p] to starts[p + 1] - 1
    feed: np.ndarray  # int64 feed of each row, rows in delivery order
    bar: np.ndarray  # int64 bar index of each row within its feed


class Point(NamedTuple):
    """The bars of several feeds that close at one moment."""

    close: int  # close time shared by the point's bars, UTC ms
    bars: tuple[tuple[int, int], ...]  # (feed, bar index) of each bar closing then, in delivery order


def timeline(opens: Sequence[npt.ArrayLike], bar_ms: Sequence[int], *, slower_first: bool = True) -> Timeline:
    """Merge feeds into their time line (see the module docstring).

    `opens[f]` are the bar open times (UTC ms, ascending) of feed f and `bar_ms[f]` its bar length in ms.
    With `slower_first=False`, bars closing at one time keep the feeds' given order whatever their bar
    length (the broker's loop over sleeves, whose order within a point is the spec's).
    """
    closes = [np.asarray(t, dtype=np.int64) + ms for t, ms in zip(opens, bar_ms, strict=True)]
    lengths = [len(c) for c in closes]
    if sum(lengths) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Timeline(empty, np.zeros(1, dtype=np.int64), empty, empty)
    close = np.concatenate(closes)
    feed = np.repeat(np.arange(len(closes), dtype=np.int64), lengths)
    index = np.concatenate([np.arange(n, dtype=np.int64) for n in lengths])
    # Sort by close time, then longer bars first (unless told not to), then feed order, then bar index
    # (np.lexsort: the last key leads).
    keys = [index, feed, close]
    if slower_first:
        keys.insert(2, np.repeat(-np.asarray(bar_ms, dtype=np.int64), lengths))
    order = np.lexsort(keys)
    close, feed, index = close[order], feed[order], index[order]
    # A point starts wherever the close time changes.
    first = np.flatnonzero(np.diff(close)) + 1
    starts = np.concatenate([[0], first, [len(close)]]).astype(np.int64)
    return Timeline(close[starts[:-1]], starts, feed, index)


def points(opens: Sequence[npt.ArrayLike], bar_ms: Sequence[int]) -> Iterator[Point]:
    """The points of the feeds' time line one by one, slower feeds first at equal close times."""
    line = timeline(opens, bar_ms)
    times, feeds, indexes = line.times.tolist(), line.feed.tolist(), line.bar.tolist()
    for p, (a, z) in enumerate(itertools.pairwise(line.starts.tolist())):
        yield Point(times[p], tuple(zip(feeds[a:z], indexes[a:z], strict=True)))
