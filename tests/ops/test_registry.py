"""The operator registry: names, signatures, parameter binding and checks, warm-up, kernel shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from runtime.ops.registry import BUILTIN_NAMES, OPERATORS, operator

# The signatures the language uses: name -> (series inputs, params with defaults, outputs, implicit).
HLC = ("high", "low", "close")
SIGNATURES = {
    **{
        name: (("source",), (("length", None),), ("value",), False)
        for name in (
            "sma",
            "ema",
            "wma",
            "rma",
            "stdev",
            "variance",
            "highest",
            "lowest",
            "sum",
            "roc",
            "momentum",
        )
    },
    "change": (("source",), (("length", 1),), ("value",), False),
    "rsi": (("source",), (("length", 14),), ("value",), False),
    "macd": (("source",), (("fast", 12), ("slow", 26), ("signal", 9)), ("line", "signal", "hist"), False),
    "bbands": (("source",), (("length", 20), ("mult", 2.0)), ("upper", "mid", "lower"), False),
    "atr": (HLC, (("length", 14),), ("value",), True),
    "tr": (HLC, (), ("value",), True),
    "adx": (HLC, (("length", 14),), ("value",), True),
    "stoch": (HLC, (("k", 14), ("d", 3)), ("k", "d"), True),
    "cci": (HLC, (("length", 20),), ("value",), True),
    "obv": (("close", "volume"), (), ("value",), True),
    "vwap": (("high", "low", "close", "volume"), (("length", 14),), ("value",), True),
    "donchian": (("high", "low"), (("length", 20),), ("upper", "mid", "lower"), True),
    "keltner": (HLC, (("length", 20), ("mult", 2.0), ("atr_length", 10)), ("upper", "mid", "lower"), True),
    "supertrend": (HLC, (("factor", 3.0), ("atr_length", 10)), ("line", "direction"), True),
    "barssince": (("cond",), (), ("value",), False),
    "valuewhen": (("cond", "source"), (("occurrence", 0),), ("value",), False),
    "abs": (("x",), (), ("value",), False),
    "log": (("x",), (), ("value",), False),
    "sqrt": (("x",), (), ("value",), False),
    "min": (("a", "b"), (), ("value",), False),
    "max": (("a", "b"), (), ("value",), False),
    "round": (("x",), (("digits", 0),), ("value",), False),
    "nz": (("x",), (("default", 0.0),), ("value",), False),
}
INTERNAL = {
    "offset": (("x",), (("n", None),), ("value",), False),
    "crosses_above": (("a", "b"), (), ("value",), False),
    "crosses_below": (("a", "b"), (), ("value",), False),
}


def test_builtins_and_internal_operators_are_exactly_the_specified_ones() -> None:
    assert set(BUILTIN_NAMES) == set(SIGNATURES)
    assert {name for name, op in OPERATORS.items() if op.internal} == set(INTERNAL)


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_signature(name: str) -> None:
    op = OPERATORS[name]
    assert op.name == name
    assert (op.inputs, op.params, op.outputs, op.implicit) == {**SIGNATURES, **INTERNAL}[name]


def test_recursive_flags() -> None:
    recursive = {name for name, op in OPERATORS.items() if op.recursive}
    assert recursive == {"ema", "rma", "rsi", "macd", "atr", "adx", "keltner", "supertrend"}


def test_bind_fills_defaults_and_names() -> None:
    macd = operator("macd")
    assert macd.bind() == (12, 26, 9)
    assert macd.bind(5, signal=4) == (5, 26, 4)
    with pytest.raises(ValueError, match=r"^sma\(\) needs parameter 'length'$"):
        operator("sma").bind()
    with pytest.raises(ValueError, match=r"^rsi\(\) has no parameter 'len'$"):
        operator("rsi").bind(len=3)
    with pytest.raises(ValueError, match=r"^rsi\(\) got parameter 'length' twice$"):
        operator("rsi").bind(3, length=4)
    with pytest.raises(ValueError, match=r"^tr\(\) takes 0 parameters; got 1$"):
        operator("tr").bind(3)


def test_unknown_operator() -> None:
    with pytest.raises(KeyError, match="no operator 'smaa'; known: abs, adx"):
        operator("smaa")


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("sma", (0,), "length must be a whole number >= 1; got 0"),
        ("ema", (2.5,), "length must be a whole number >= 1; got 2.5"),
        ("offset", (-1,), "n must be a whole number >= 0; got -1"),
        ("macd", (12, 26, 0), "signal must be a whole number >= 1; got 0"),
        ("bbands", (20, math.nan), "mult must be a finite number; got nan"),
        ("valuewhen", (-1,), "occurrence must be a whole number >= 0; got -1"),
        ("round", (301,), "digits must be at most 300; got 301"),
    ],
)
def test_bad_parameters_are_refused_by_both_kernels(
    name: str, params: tuple[float, ...], message: str
) -> None:
    op = OPERATORS[name]
    inputs = [np.ones(3)] * len(op.inputs)
    with pytest.raises(ValueError, match=f"^{message}$"):
        op.batch(*inputs, *params)
    with pytest.raises(ValueError, match=f"^{message}$"):
        op.stream(*params)


def test_integral_float_parameters_are_accepted() -> None:
    x = np.arange(5.0)
    assert np.array_equal(operator("sma").batch(x, 2.0)[0], operator("sma").batch(x, 2)[0], equal_nan=True)


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_warmup_is_the_first_bar_where_every_output_is_valid(name: str) -> None:
    """On clean random bars (conditions always true), outputs are all valid first at the warm-up bar."""
    op = OPERATORS[name]
    rng = np.random.default_rng(3)
    size = 80
    close = 100.0 + np.cumsum(rng.normal(size=size))
    columns = {
        "high": close + rng.uniform(0.1, 1.0, size),
        "low": close - rng.uniform(0.1, 1.0, size),
        "close": close,
        "volume": rng.uniform(1.0, 10.0, size),
        "cond": np.ones(size),
    }
    inputs = [columns.get(name, close) for name in op.inputs]
    params = [7 if default is None else default for _, default in op.params]
    outputs = op.batch(*inputs, *params)
    if name in ("crosses_above", "crosses_below"):
        # Crosses are never na: they are false on bar 0, where there is no previous bar.
        assert op.warmup() == 1 and all(out[0] == 0.0 for out in outputs)
        return
    valid = ~np.any([np.isnan(out) for out in outputs], axis=0)
    assert valid[op.warmup(*params) :].all()
    assert not valid[: op.warmup(*params)].any()


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_empty_series(name: str) -> None:
    op = OPERATORS[name]
    params = [3 if default is None else default for _, default in op.params]
    outputs = op.batch(*[np.array([])] * len(op.inputs), *params)
    assert [out.shape for out in outputs] == [(0,)] * len(op.outputs)


def test_stream_kernels_are_independent() -> None:
    first, second = operator("sum").stream(2), operator("sum").stream(2)
    warm = [first.update(x)[0] for x in (1.0, 2.0, 3.0)]
    assert math.isnan(warm[0]) and warm[1:] == [3.0, 5.0]
    first_values = [first.update(x)[0] for x in (10.0, 20.0)]
    second_values = [second.update(x)[0] for x in (1.0, 2.0)]
    assert first_values == [13.0, 30.0]
    assert math.isnan(second_values[0]) and second_values[1] == 3.0
