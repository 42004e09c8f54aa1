"""The one merge of bar feeds into a time line: points by close time, slower feeds first at equal times."""

from __future__ import annotations

import numpy as np

from runtime.graph.timeline import Point, points, timeline

HOUR = 3_600_000


def _opens(*hours: int) -> np.ndarray:
    """Bar open times at these whole hours, UTC ms."""
    return np.array(hours, dtype=np.int64) * HOUR


def test_slower_clock_first_at_equal_close_times_across_gaps() -> None:
    # 1h bars with a gap (no bars opening at 04:00 and 05:00) and 4h bars with a gap (none at 04:00).
    one_hour = _opens(0, 1, 2, 3, 6, 7, 8, 9, 10, 11)
    four_hours = _opens(0, 8)
    got = list(points([one_hour, four_hours], [HOUR, 4 * HOUR]))
    assert got == [
        Point(1 * HOUR, ((0, 0),)),
        Point(2 * HOUR, ((0, 1),)),
        Point(3 * HOUR, ((0, 2),)),
        # The 4h bar (feed 1) comes before the 1h bar closing at the same moment, though listed second.
        Point(4 * HOUR, ((1, 0), (0, 3))),
        Point(7 * HOUR, ((0, 4),)),
        Point(8 * HOUR, ((0, 5),)),  # no 4h bar closes at 08:00: the 04:00 bar is missing
        Point(9 * HOUR, ((0, 6),)),
        Point(10 * HOUR, ((0, 7),)),
        Point(11 * HOUR, ((0, 8),)),
        Point(12 * HOUR, ((1, 1), (0, 9))),
    ]


def test_feeds_of_equal_bar_length_keep_their_order() -> None:
    # Two 1h feeds around one 4h feed, the 4h bars given in the middle; the second 1h feed starts late.
    got = list(points([_opens(2, 3), _opens(0), _opens(3, 4)], [HOUR, 4 * HOUR, HOUR]))
    assert got == [
        Point(3 * HOUR, ((0, 0),)),
        Point(4 * HOUR, ((1, 0), (0, 1), (2, 0))),
        Point(5 * HOUR, ((2, 1),)),
    ]


def test_no_bars_no_points() -> None:
    assert list(points([], [])) == []
    assert list(points([_opens(), _opens()], [HOUR, 4 * HOUR])) == []
    assert list(points([_opens(), _opens(5)], [HOUR, 4 * HOUR])) == [Point(9 * HOUR, ((1, 0),))]


def test_the_arrays_of_the_time_line_and_the_given_order_at_ties() -> None:
    opens, bar_ms = [_opens(2, 3), _opens(0), _opens(3, 4)], [HOUR, 4 * HOUR, HOUR]
    line = timeline(opens, bar_ms)
    assert line.times.tolist() == [3 * HOUR, 4 * HOUR, 5 * HOUR]
    assert line.starts.tolist() == [0, 1, 4, 5]
    assert line.feed.tolist() == [0, 1, 0, 2, 2]
    assert line.bar.tolist() == [0, 0, 1, 0, 1]
    # Without the slower-first rule, bars closing together come in feed order (sleeves in spec order).
    given = timeline(opens, bar_ms, slower_first=False)
    assert given.times.tolist() == line.times.tolist() and given.starts.tolist() == line.starts.tolist()
    assert given.feed.tolist() == [0, 0, 1, 2, 2]
    assert given.bar.tolist() == [0, 1, 0, 0, 1]
    empty = timeline([_opens()], [HOUR])
    assert (empty.times.tolist(), empty.starts.tolist(), empty.feed.tolist()) == ([], [0], [])
