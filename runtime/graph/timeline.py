"""The one merge of several bar feeds into a time line: the order in which a live engine sees closed bars.

A bar closes at its open time plus its feed's bar length. The merged time line is a sequence of points,
one per distinct close time in ascending order; a point holds every bar closing then. Within a point,
bars of slower feeds (longer bars) come first, so that the 14:00–15:00 hourly bar is visible to the 5m
bar that closes at 15:00; feeds of equal bar length keep the order in which they were given.

The streaming graph driver (`run_stream`), the replay driver and the live engine all take their bars in
this order, so it is written only here.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt


class Point(NamedTuple):
    """The bars of several feeds that close at one moment."""

    close: int  # close time shared by the point's bars, UTC ms
    bars: tuple[tuple[int, int], ...]  # (feed, bar index) of each bar closing then, in delivery order


def points(opens: Sequence[npt.ArrayLike], bar_ms: Sequence[int]) -> Iterator[Point]:
    """Merge feeds into the points of their time line, in order (see the module docstring).

    `opens[f]` are the bar open times (UTC ms, ascending) of feed f and `bar_ms[f]` its bar length in ms.
    """
    closes = [np.asarray(t, dtype=np.int64) + ms for t, ms in zip(opens, bar_ms, strict=True)]
    lengths = [len(c) for c in closes]
    if sum(lengths) == 0:
        return
    close = np.concatenate(closes)
    feed = np.repeat(np.arange(len(closes), dtype=np.int64), lengths)
    index = np.concatenate([np.arange(n, dtype=np.int64) for n in lengths])
    slower = np.repeat(-np.asarray(bar_ms, dtype=np.int64), lengths)
    # Sort by close time, then longer bars first, then feed order, then bar index (the last key leads).
    order = np.lexsort((index, feed, slower, close))
    close, feed, index = close[order], feed[order], index[order]
    # A point starts wherever the close time changes.
    starts = [0, *(np.flatnonzero(np.diff(close)) + 1).tolist(), len(close)]
    times, feeds, indexes = close.tolist(), feed.tolist(), index.tolist()
    for a, z in itertools.pairwise(starts):
        yield Point(times[a], tuple(zip(feeds[a:z], indexes[a:z], strict=True)))
