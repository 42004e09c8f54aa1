"""The local clock: the current UTC time in ms, which every source of candles reads "now" from."""

from __future__ import annotations

import time


def wall_clock_ms() -> int:
    """The current UTC time in ms."""
    return time.time_ns() // 1_000_000
