"""Batch and streaming kernels agree for every operator (hypothesis property test).

Same na positions and values within 1e-9 relative, on random series, series with na runs, constant series,
very short series (shorter than any window), extreme magnitudes, and realistic random-walk bars.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.ops.registry import OPERATORS, Operator

# A strategy for every parameter name used by the registry.
PARAMS: dict[str, st.SearchStrategy[float]] = {
    "length": st.integers(1, 12),
    "fast": st.integers(1, 12),
    "slow": st.integers(1, 12),
    "signal": st.integers(1, 12),
    "k": st.integers(1, 12),
    "d": st.integers(1, 6),
    "atr_length": st.integers(1, 12),
    "n": st.integers(0, 6),
    "occurrence": st.integers(0, 3),
    "digits": st.integers(-3, 6),
    "mult": st.floats(0.1, 5.0),
    "factor": st.floats(0.1, 5.0),
    "default": st.floats(-100.0, 100.0),
}

# Magnitudes mixed in the "extreme" case (finite, no infinities).
EXTREMES = [0.0, 1e-300, -1e-300, 1e-12, 1e12, -1e12, 1e150, -1e150, 1e300, -1e300, 5e-324]


def _values(kind: str, size: int, draw: st.DrawFn, walk: np.ndarray) -> np.ndarray:
    """One input series of the given kind."""
    if kind == "constant":
        return np.full(size, draw(st.floats(-1e6, 1e6, allow_nan=False)))
    if kind == "extreme":
        return np.array(draw(st.lists(st.sampled_from(EXTREMES), min_size=size, max_size=size)), dtype=float)
    if kind == "walk":
        # Close to a shared random walk, so that bands, crosses and trend flips all happen.
        noise = draw(st.lists(st.floats(-1.0, 1.0), min_size=size, max_size=size))
        return walk + np.array(noise, dtype=float)
    values = np.array(draw(st.lists(st.floats(-1e3, 1e3), min_size=size, max_size=size)), dtype=float)
    if kind == "gaps":
        # Runs of na at random places.
        for _ in range(draw(st.integers(1, 4))):
            start = draw(st.integers(0, max(size - 1, 0)))
            values[start : start + draw(st.integers(1, 8))] = np.nan
    return values


def _condition(size: int, draw: st.DrawFn) -> np.ndarray:
    """A condition series: 1.0, 0.0 or na."""
    return np.array(
        draw(st.lists(st.sampled_from([0.0, 1.0, np.nan]), min_size=size, max_size=size)), dtype=float
    )


def assert_agree(op: Operator, inputs: list[np.ndarray], params: list[float]) -> None:
    """Run both kernels and compare every output bar by bar."""
    batch = op.batch(*inputs, *params)
    assert len(batch) == len(op.outputs)
    kernel = op.stream(*params)
    size = len(inputs[0])
    rows = [kernel.update(*(float(a[i]) for a in inputs)) for i in range(size)]
    stream = np.array(rows, dtype=float).reshape(size, len(op.outputs)).T
    for name, b, s in zip(op.outputs, batch, stream, strict=True):
        assert b.shape == (size,)
        np.testing.assert_array_equal(np.isnan(b), np.isnan(s), err_msg=f"{op.name}.{name}: na positions")
        np.testing.assert_allclose(b, s, rtol=1e-9, atol=0, equal_nan=True, err_msg=f"{op.name}.{name}")


@pytest.mark.parametrize("name", sorted(OPERATORS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_batch_and_stream_agree(name: str, data: st.DataObject) -> None:
    op = OPERATORS[name]
    params = [data.draw(PARAMS[param], label=param) for param, _ in op.params]
    kind = data.draw(
        st.sampled_from(["random", "gaps", "constant", "short", "extreme", "walk"]), label="kind"
    )
    size = data.draw(st.integers(0, 5) if kind == "short" else st.integers(1, 60), label="size")
    steps = np.array(data.draw(st.lists(st.floats(-2.0, 2.0), min_size=size, max_size=size)), dtype=float)
    walk = 100.0 + np.cumsum(steps)
    draw = data.draw
    inputs = [
        _condition(size, draw)
        if inp == "cond"
        else _values("random" if kind == "short" else kind, size, draw, walk)
        for inp in op.inputs
    ]
    assert_agree(op, inputs, params)


def test_agreement_over_long_real_bars(shared_data) -> None:  # type: ignore[no-untyped-def]
    """Over 5,980 real ETH/USDT hours (many ring wraps and recomputes), every operator agrees at defaults."""
    raw = np.loadtxt(shared_data / "ETHUSDT-1h.csv", delimiter=",", skiprows=1)
    bars = {"open": raw[:, 1], "high": raw[:, 2], "low": raw[:, 3], "close": raw[:, 4], "volume": raw[:, 5]}
    close = bars["close"]
    extra = {
        "source": close,
        "x": close,
        "a": close,
        "b": OPERATORS["sma"].batch(close, 20)[0],
        "cond": (close > bars["open"]).astype(float),
    }
    for op in OPERATORS.values():
        inputs = [bars.get(name, extra.get(name)) for name in op.inputs]
        params = [20 if default is None else default for _, default in op.params]
        assert_agree(op, inputs, params)  # type: ignore[arg-type]
