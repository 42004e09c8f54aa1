"""The search space of an optimize block: each param's domain, the constraints, and its members.

A member is one assignment of values to the searched params (`Params`, in declaration order). A param
with a range domain takes `low, low + step, ..., high` (step 1 for a whole-number param without a step);
a set domain its listed values; a param without a domain keeps its default and is not searched. A float
range without a step is continuous: random and Bayesian search draw from it, the grid refuses it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from dsl.ir import Expr, StrategyIR, evaluate
from runtime.plan.select import RunError

# One member: (param name, value) for every searched param, in declaration order.
Params = tuple[tuple[str, float], ...]

# Draws a random search may make per sample asked before it stops (constraints and repeats reject some).
DRAWS_PER_SAMPLE = 50


@dataclass(frozen=True)
class Domain:
    """The values one searched param may take."""

    name: str  # param name
    integer: bool  # whole-number valued
    values: tuple[float, ...]  # every grid value in order; () for a continuous range
    low: float  # smallest value
    high: float  # largest value
    step: float | None  # grid step of a range; None for a set or a continuous range
    choices: bool  # whether the domain is a set of listed values

    @property
    def continuous(self) -> bool:
        """Whether the param is drawn from an interval rather than a list of values."""
        return not self.values


def _grid_values(low: float, high: float, step: float, integer: bool) -> tuple[float, ...]:
    """`low, low + step, ...` up to `high` (within float tolerance), rounded to shed float noise."""
    count = math.floor((high - low) / step + 1e-9) + 1
    values = (low + i * step for i in range(count))
    return tuple(float(round(v)) if integer else round(v, 12) for v in values)


def domain_of(param_name: str, low: float | None, high: float | None, step: float | None,
              choices: tuple[float, ...] | None, integer: bool) -> Domain | None:  # fmt: skip
    """The domain of a param's checked domain fields; None when it has none (not searched)."""
    if choices is not None:
        return Domain(param_name, integer, tuple(choices), min(choices), max(choices), None, True)
    if low is None or high is None:
        return None
    if step is None and integer:
        step = 1.0
    values = _grid_values(low, high, step, integer) if step is not None else ()
    return Domain(param_name, integer, values, low, high, step, False)


@dataclass(frozen=True)
class Space:
    """The searched params of a strategy and the constraints every member must satisfy."""

    strategy: StrategyIR  # the target template
    domains: tuple[Domain, ...]  # searched params in declaration order
    constraints: tuple[Expr, ...]  # bool expressions over params

    @classmethod
    def of(cls, strategy: StrategyIR) -> Space:
        """The space of a template: every param with a domain is searched."""
        found = (domain_of(p.name, p.low, p.high, p.step, p.choices, p.integer) for p in strategy.params)
        return cls(strategy, tuple(d for d in found if d is not None), strategy.constraints)

    @property
    def names(self) -> tuple[str, ...]:
        """The searched params' names, in declaration order."""
        return tuple(d.name for d in self.domains)

    def allowed(self, params: Params) -> bool:
        """Whether a member satisfies every constraint (unsearched params at their defaults)."""
        values = {p.name: p.default for p in self.strategy.params} | dict(params)
        return all(evaluate(c, values) is not False for c in self.constraints)

    def size(self) -> int:
        """The number of grid points before constraints (the product of the domains' sizes)."""
        return math.prod(len(d.values) for d in self.domains)

    def grid(self) -> list[Params]:
        """Every grid point satisfying the constraints, the last param varying fastest."""
        open_ = [d.name for d in self.domains if d.continuous]
        if open_:
            raise RunError(f"grid needs a step for {', '.join(open_)} (a float range without one)")
        names = self.names
        points = (tuple(zip(names, combo, strict=True)) for combo in itertools.product(*self.values()))
        return [p for p in points if self.allowed(p)]

    def values(self) -> list[tuple[float, ...]]:
        """Each searched param's grid values."""
        return [d.values for d in self.domains]

    def sample(self, samples: int, seed: int) -> list[Params]:
        """Up to `samples` distinct members satisfying the constraints, drawn uniformly with `seed`.

        Fewer come back when the space has fewer allowed members (or they are too rare to draw).
        """
        rng = np.random.default_rng(seed)
        found: dict[Params, None] = {}
        for _ in range(samples * DRAWS_PER_SAMPLE):
            if len(found) == samples:
                break
            member = tuple((d.name, _draw(d, rng)) for d in self.domains)
            if member not in found and self.allowed(member):
                found[member] = None
        return list(found)


def _draw(domain: Domain, rng: np.random.Generator) -> float:
    """One uniform draw from a domain: a listed value, or a point of a continuous interval."""
    if domain.values:
        return domain.values[int(rng.integers(len(domain.values)))]
    return round(float(rng.uniform(domain.low, domain.high)), 12)


def member_text(params: Params) -> str:
    """A member as `name=value` pairs (whole numbers without a point)."""
    return ", ".join(f"{name}={format_number(value)}" for name, value in params)


def format_number(value: float) -> str:
    """A param value as `--set` reads it back: whole numbers without a point, others in full precision."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def param_values(params: Params) -> dict[str, int | float]:
    """A member's params as JSON values: whole numbers as integers (`fast: 43`, not 43.0)."""
    return {name: int(value) if float(value).is_integer() else float(value) for name, value in params}


def overrides(params: Params) -> dict[str, str]:
    """A member as `--set` texts by name (what `strat run --set` would be given)."""
    return {name: format_number(value) for name, value in params}


def chunks(items: Sequence[Params], size: int) -> Iterator[list[Params]]:
    """Consecutive batches of at most `size` members."""
    for i in range(0, len(items), size):
        yield list(items[i : i + size])
