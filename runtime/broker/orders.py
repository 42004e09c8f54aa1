"""A sleeve's single pending-order slot: place, clear, cancel, and the risk rules' flatten."""

from __future__ import annotations

import numpy as np
from numba import njit

from runtime.broker.state import K_ENTRY, K_EXIT, K_NONE, K_SCALE, R_RISK, Config, State


@njit(cache=True, inline="always")
def clear_order(state: State, s: int) -> None:
    """Empty sleeve s's pending-order slot."""
    sl = state.sleeves[s]
    sl.ord_kind = K_NONE
    sl.ord_filled = 0
    sl.ord_req = np.nan
    sl.ord_rem = np.nan


@njit(cache=True, inline="always")
def place_order(state: State, s: int, kind: int, side: int, due: int, reason: int) -> None:
    """Put an order (sized at its fill) into sleeve s's pending slot."""
    clear_order(state, s)
    sl = state.sleeves[s]
    sl.ord_kind = kind
    sl.ord_side = side
    sl.ord_due = due
    sl.ord_reason = reason


@njit(cache=True, inline="always")
def cancel_entry(state: State, s: int) -> bool:
    """Drop a pending entry or scale-in (its filled part stays); return whether one was pending."""
    kind = state.sleeves[s].ord_kind
    if kind in (K_ENTRY, K_SCALE):
        clear_order(state, s)
        return True
    return False


@njit(cache=True)
def flatten_sleeve(config: Config, state: State, s: int) -> bool:
    """Cancel sleeve s's pending entry and send its position out at the next fill; return if it acted."""
    acted = cancel_entry(state, s)
    sl = state.sleeves[s]
    if sl.qty > 0.0 and sl.ord_kind != K_EXIT:
        due = sl.last_bar + 1 + config.sleeves[s].latency
        place_order(state, s, K_EXIT, sl.side, due, R_RISK)
        acted = True
    return acted


@njit(cache=True)
def busy(state: State, s: int) -> bool:
    """Whether sleeve s holds a position or waits on an entry (something a flatten would act on)."""
    sl = state.sleeves[s]
    return sl.qty > 0.0 or sl.ord_kind in (K_ENTRY, K_SCALE)
