"""The operator registry, checked against dsl.builtins by value.

Names, the kernels' parameter order, defaults, parameter checks by role, first valid bar and warm-up for
several parameter values, struct fields in order; then binding, parameter errors and kernel shapes.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import numpy as np
import pytest

from dsl import builtins
from dsl.builtins import Signature
from runtime.ops import arith, events, moving, oscillators, volatility, volume
from runtime.ops.registry import BUILTIN_NAMES, OPERATORS, Kernels, Operator, _collect, operator

# Bars of the clean series the kernels run on to find their first valid bar.
SIZE = 90
# The series functions whose values depend on their whole history (their warm-up adds a convergence
# allowance to their first valid bar).
RECURSIVE = {"ema", "rma", "rsi", "macd", "atr", "adx", "keltner", "supertrend"}


def signature(name: str) -> Signature:
    """The language's signature of an operator: a series function or a syntax operator."""
    return {**builtins.SERIES_FUNCTIONS, **builtins.SYNTAX_OPERATORS}[name]


def clean_bars() -> dict[str, np.ndarray]:
    """Clean random-walk bars (no na, a range on every bar) and a condition that always holds."""
    rng = np.random.default_rng(3)
    close = 100.0 + np.cumsum(rng.normal(size=SIZE))
    return {
        "high": close + rng.uniform(0.1, 1.0, SIZE),
        "low": close - rng.uniform(0.1, 1.0, SIZE),
        "close": close,
        "volume": rng.uniform(1.0, 10.0, SIZE),
        "cond": np.ones(SIZE),
    }


def inputs_of(op: Operator, bars: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The operator's input series from the bars (a plain series input reads the close)."""
    return [bars.get(name, bars["close"]) for name in op.inputs]


def parameter_sets(sig: Signature) -> list[dict[str, float]]:
    """A few values of a signature's fixed arguments, by name.

    The defaults (7 where required), then whole numbers that differ per argument, in both orders (a number
    argument keeps its default).
    """
    fixed = sig.fixed_args
    sets = [{a.name: 7.0 if a.default is None else float(a.default) for a in fixed}]
    for base in (2, 3, 5):
        for order in (fixed, fixed[::-1]):
            values = {a.name: float(base + 3 * i) for i, a in enumerate(order)}
            sets.append({a.name: values[a.name] if a.role != "number" else sets[0][a.name] for a in fixed})
    return sets


def test_kernels_cover_exactly_the_builtins_and_syntax_operators() -> None:
    assert set(OPERATORS) == {*builtins.SERIES_FUNCTIONS, *builtins.SYNTAX_OPERATORS}
    assert set(builtins.SERIES_FUNCTIONS) == BUILTIN_NAMES
    assert {name for name, op in OPERATORS.items() if op.internal} == set(builtins.SYNTAX_OPERATORS)
    assert set(builtins.SYNTAX_OPERATORS) == {"offset", "crosses_above", "crosses_below"}


def test_registry_refuses_a_duplicate_an_unknown_name_and_a_missing_builtin() -> None:
    sma = next(k for k in moving.KERNELS if k.name == "sma")
    groups = (moving.KERNELS, volatility.KERNELS, oscillators.KERNELS, volume.KERNELS, events.KERNELS)
    with pytest.raises(ValueError, match=r"^operator 'sma' is defined twice$"):
        _collect(*groups, arith.KERNELS, (sma,))
    with pytest.raises(ValueError, match=r"^kernels 'smaa' name no built-in of dsl\.builtins$"):
        _collect(*groups, arith.KERNELS, (Kernels("smaa", sma.batch, sma.stream),))
    with pytest.raises(ValueError, match=r"^built-ins without kernels: abs, log, max, min, nz, round, sqrt$"):
        _collect(*groups)


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_operator_is_its_signature(name: str) -> None:
    """The registry's view of a built-in: inputs, parameters with defaults and outputs, from dsl.builtins."""
    op, sig = OPERATORS[name], signature(name)
    assert (op.name, op.signature, op.implicit, op.recursive) == (
        name,
        sig,
        bool(sig.implicit),
        sig.recursive,
    )
    # Every argument of a series function is a series input or a fixed parameter.
    assert len(sig.series_args) + len(sig.fixed_args) == len(sig.args)
    assert not (sig.implicit and sig.series_args)
    assert op.inputs == (sig.implicit or tuple(a.name for a in sig.args if a.role in ("series", "cond")))
    assert op.params == tuple(
        (a.name, a.default) for a in sig.args if a.role in ("length", "count", "number")
    )
    assert op.outputs == (tuple(f for f, _ in sig.fields) or ("value",))


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_kernels_take_the_signatures_inputs_and_parameters_in_order(name: str) -> None:
    """The kernels' own positional order (their Python parameters) is the signature's, name by name."""
    op, sig = OPERATORS[name], signature(name)
    inputs = list(sig.implicit or [a.name for a in sig.series_args])
    params = [a.name for a in sig.fixed_args]
    assert list(inspect.signature(op.batch).parameters) == inputs + params
    assert list(inspect.signature(op.stream).parameters) == params
    kernel = op.stream(*(7 if default is None else default for _, default in op.params))
    assert list(inspect.signature(kernel.update).parameters) == inputs
    # Arity: one kernel argument per argument of the call, plus the bar fields read implicitly.
    assert len(inputs) + len(params) == len(sig.args) + len(sig.implicit)


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_defaults_are_the_signatures_and_both_kernels_accept_them(name: str) -> None:
    op, sig = OPERATORS[name], signature(name)
    fixed = sig.fixed_args
    required = [7] * sum(1 for a in fixed if a.default is None)
    assert op.bind(*required) == tuple(7 if a.default is None else a.default for a in fixed)
    bars = clean_bars()
    outputs = op.batch(*inputs_of(op, bars), *op.bind(*required))
    update = op.stream(*op.bind(*required)).update
    rows = [update(*(x[i] for x in inputs_of(op, bars))) for i in range(SIZE)]
    assert len(outputs) == len(op.outputs) == len(rows[0])


# Kernel parameters whose lowest accepted value is below the language's floor for the role (the checker
# refuses those values; the lag kernels also serve lag 0, round also rounds to tens, hundreds, ...).
KERNEL_FLOORS = {
    ("change", "length"): 0,
    ("momentum", "length"): 0,
    ("roc", "length"): 0,
    ("round", "digits"): -300,
}
# The language's floor of each whole-number role.
ROLE_FLOORS = {"length": 1, "count": 0}


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_kernels_check_parameters_as_their_roles_say(name: str) -> None:
    """A length is a whole number >= 1, a count a whole number >= 0, a number finite; both kernels say so.

    They accept the language's smallest value and refuse a fraction, a value below their floor or a
    non-finite number.
    """
    op, sig = OPERATORS[name], signature(name)
    base = {a.name: 3 if a.default is None else a.default for a in sig.fixed_args}
    ones = [np.ones(3)] * len(op.inputs)
    for arg in sig.fixed_args:
        if arg.role == "number":
            refused = {math.nan: f"^{arg.name} must be a finite number; got nan$"}
            accepted = 0.5
        else:
            floor = KERNEL_FLOORS.get((name, arg.name), ROLE_FLOORS[arg.role])
            message = f"^{arg.name} must be a whole number >= {floor}; got "
            refused = {floor + 0.5: message + f"{floor + 0.5}$", floor - 1: message + f"{floor - 1}$"}
            accepted = ROLE_FLOORS[arg.role]
        for value, pattern in refused.items():
            params = [value if k == arg.name else v for k, v in base.items()]
            with pytest.raises(ValueError, match=pattern):
                op.batch(*ones, *params)
            with pytest.raises(ValueError, match=pattern):
                op.stream(*params)
        params = [accepted if k == arg.name else v for k, v in base.items()]
        assert len(op.batch(*ones, *params)) == len(op.outputs)
        assert len(op.stream(*params).update(*[1.0] * len(op.inputs))) == len(op.outputs)


def test_kernel_floors_name_parameters_and_lie_below_the_languages() -> None:
    for (name, param), floor in KERNEL_FLOORS.items():
        (arg,) = [a for a in signature(name).fixed_args if a.name == param]
        assert floor < ROLE_FLOORS[arg.role]


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_first_valid_bar_of_the_signature_is_the_kernels(name: str) -> None:
    """Both kernels' outputs are all valid first at the bar dsl.builtins' formula gives.

    On clean bars (conditions always true), for several parameter values.
    """
    op, sig = OPERATORS[name], signature(name)
    bars = clean_bars()
    for values in parameter_sets(sig):
        params = op.bind(**values)
        batch = op.batch(*inputs_of(op, bars), *params)
        update = op.stream(*params).update
        stream = np.array([update(*(x[i] for x in inputs_of(op, bars))) for i in range(SIZE)]).T
        expected = sig.first_valid(values)
        assert op.first_valid(*params) == expected
        for outputs in (batch, stream):
            valid = ~np.any([np.isnan(out) for out in outputs], axis=0)
            if name.startswith("crosses_"):
                # Crosses are never na: they are false on bar 0, where there is no previous bar.
                assert expected == 1 and all(out[0] == 0.0 for out in outputs)
                continue
            assert valid[expected:].all(), (values, expected)
            assert not valid[:expected].any(), (values, expected)


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_warmup_is_the_first_valid_bar_plus_a_convergence_allowance_for_recursive_filters(name: str) -> None:
    sig = signature(name)
    for values in parameter_sets(sig):
        if name == "valuewhen":
            # How long the condition takes to hold is unknown: the warm-up counts no bars.
            assert sig.warmup(values) == 0
        elif sig.recursive:
            assert sig.warmup(values) > sig.first_valid(values)
        else:
            assert sig.warmup(values) == sig.first_valid(values)
    assert {n for n in OPERATORS if signature(n).recursive} == RECURSIVE


def _sma(x: np.ndarray, n: int) -> np.ndarray:
    """Reference simple moving average (na until the window is full)."""
    out = np.full(len(x), np.nan)
    for i in range(n - 1, len(x)):
        out[i] = x[i - n + 1 : i + 1].mean()
    return out


def ema(x: np.ndarray, n: int) -> np.ndarray:
    """The ema operator's values."""
    return OPERATORS["ema"].batch(x, n)[0]


# What each struct field is, by name: a check of the outputs in the signature's field order.
FIELD_CHECKS: dict[str, Callable[[dict[str, np.ndarray], dict[str, np.ndarray]], None]] = {
    "macd": lambda o, b: (
        np.testing.assert_allclose(o["line"], ema(b["close"], 12) - ema(b["close"], 26), rtol=1e-12),
        np.testing.assert_allclose(o["signal"], ema(o["line"], 9), rtol=1e-12),
        np.testing.assert_allclose(o["hist"], o["line"] - o["signal"], rtol=1e-12),
    ),
    "bbands": lambda o, b: (
        np.testing.assert_allclose(o["mid"], _sma(b["close"], 20), rtol=1e-9),
        np.testing.assert_array_less(o["lower"][19:], o["upper"][19:]),
    ),
    "stoch": lambda o, b: np.testing.assert_allclose(o["d"], _sma(o["k"], 3), rtol=1e-9),
    "donchian": lambda o, b: (
        np.testing.assert_array_equal(
            o["upper"][19:], [b["high"][i - 19 : i + 1].max() for i in range(19, SIZE)]
        ),
        np.testing.assert_array_equal(
            o["lower"][19:], [b["low"][i - 19 : i + 1].min() for i in range(19, SIZE)]
        ),
        np.testing.assert_allclose(o["mid"], (o["upper"] + o["lower"]) / 2.0, rtol=1e-12),
    ),
    "keltner": lambda o, b: (
        np.testing.assert_allclose(o["mid"], ema(b["close"], 20), rtol=1e-12),
        np.testing.assert_array_less(o["lower"][19:], o["upper"][19:]),
    ),
    "supertrend": lambda o, b: (
        np.testing.assert_array_equal(np.unique(o["direction"][9:]), [-1.0, 1.0]),
        # Up: the line is the lower band, below the close; down: the upper band, above it.
        np.testing.assert_array_less(
            o["line"][9:][o["direction"][9:] > 0], b["close"][9:][o["direction"][9:] > 0]
        ),
    ),
}


def test_every_struct_result_has_its_field_check() -> None:
    assert set(FIELD_CHECKS) == {sig.result for sig in builtins.SERIES_FUNCTIONS.values() if sig.fields}


@pytest.mark.parametrize("name", sorted(FIELD_CHECKS))
def test_struct_outputs_are_the_signatures_fields_in_order(name: str) -> None:
    op = OPERATORS[name]
    bars = clean_bars()
    outputs = op.batch(*inputs_of(op, bars), *op.bind())
    named = dict(zip((f for f, _ in signature(name).fields), outputs, strict=True))
    FIELD_CHECKS[name](named, bars)


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
