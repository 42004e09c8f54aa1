"""A sleeve's single pending-order slot: place, clear, cancel, and the risk rules' flatten.

These work on one sleeve's records (`state.SLEEVE_STATE`, `state.SLEEVE_CONFIG`), which the step takes
out of the bundles once per bar: a record carries no reference count, an array taken out of a bundle does.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from runtime.broker.state import K_ENTRY, K_EXIT, K_NONE, K_SCALE, R_RISK, Record


@njit(cache=True, inline="always")
def clear_order(sl: Record) -> None:
    """Empty the pending-order slot of sleeve record `sl`."""
    sl.ord_kind = K_NONE
    sl.ord_filled = 0
    sl.ord_req = np.nan
    sl.ord_rem = np.nan


@njit(cache=True, inline="always")
def place_order(sl: Record, kind: int, side: int, due: int, reason: int) -> None:
    """Put an order (sized at its fill) into the pending slot of sleeve record `sl`."""
    clear_order(sl)
    sl.ord_kind = kind
    sl.ord_side = side
    sl.ord_due = due
    sl.ord_reason = reason


@njit(cache=True, inline="always")
def cancel_entry(sl: Record) -> bool:
    """Drop a pending entry or scale-in (its filled part stays); return whether one was pending."""
    if sl.ord_kind in (K_ENTRY, K_SCALE):
        clear_order(sl)
        return True
    return False


@njit(cache=True)
def flatten_sleeve(cfg: Record, sl: Record) -> bool:
    """Cancel a sleeve's pending entry and send its position out at the next fill; return if it acted."""
    acted = cancel_entry(sl)
    if sl.qty > 0.0 and sl.ord_kind != K_EXIT:
        place_order(sl, K_EXIT, sl.side, sl.last_bar + 1 + cfg.latency, R_RISK)
        acted = True
    return acted


@njit(cache=True)
def busy(sl: Record) -> bool:
    """Whether a sleeve holds a position or waits on an entry (something a flatten would act on)."""
    return sl.qty > 0.0 or sl.ord_kind in (K_ENTRY, K_SCALE)
