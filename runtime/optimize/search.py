"""The search methods of an optimize block, its objective and its requirements.

`grid` backtests every allowed grid point, `random(samples, seed)` a seeded uniform sample of them,
`bayes(trials, seed)` lets optuna's TPE sampler (seeded) propose members round by round from the
outcomes so far. A proposal that breaks a constraint is told to optuna as pruned, never backtested: the
sampler learns to leave that region, and the trial budget counts only members that ran. Every method is
deterministic for its seed, and the same however many workers run the members (rounds have a fixed size).

optuna is imported here and nowhere else (an import-linter contract).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from dsl.ir import Expr, OptimizeIR, evaluate
from runtime.optimize.executor import Outcome
from runtime.optimize.members import Domain, Params, Space
from runtime.plan.select import RunError

# Members backtested per round of Bayesian search (and per batch of the other methods' members).
BAYES_ROUND = 8
# Metric names of the language whose Summary field has another name.
METRIC_FIELDS = {"trades": "entries"}
# Runs the batches of members given, yielding each batch's outcomes in order.
Runner = Callable[[Iterable[list[Params]]], Iterator[list[Outcome]]]


@dataclass(frozen=True)
class Method:
    """How members are chosen: grid, random(samples, seed) or bayes(trials, seed)."""

    name: str  # "grid", "random" or "bayes"
    count: int = 0  # samples (random) or trials (bayes); 0 for grid
    seed: int = 0  # seed of the draws

    def __str__(self) -> str:
        """As written in a spec."""
        return self.name if self.name == "grid" else f"{self.name}({self.count}, seed={self.seed})"


@dataclass(frozen=True)
class Objective:
    """What ranks members: maximize(metric) or minimize(metric)."""

    metric: str  # the language's metric name ("sharpe", "trades", ...)
    maximize: bool = True  # whether larger is better

    def value(self, outcome: Outcome) -> float | None:
        """The member's objective value (None when the metric is undefined or the member failed)."""
        return metric_value(outcome, self.metric)

    def key(self, outcome: Outcome) -> float:
        """A sort key, smaller is better: undefined values last."""
        value = self.value(outcome)
        if value is None:
            return float("inf")
        return -value if self.maximize else value

    def __str__(self) -> str:
        """As written in a spec."""
        return f"{'maximize' if self.maximize else 'minimize'}({self.metric})"


def metric_value(outcome: Outcome, name: str) -> float | None:
    """A language metric's value for a member."""
    if outcome.error:
        return None
    return outcome.metric(METRIC_FIELDS.get(name, name))


def read_block(block: OptimizeIR) -> tuple[Method, Objective]:
    """The method (default grid) and objective (default maximize(sharpe)) of a checked optimize block."""
    method = Method("grid")
    if block.method is not None:
        args = [int(a.value) for a in block.method.args]  # type: ignore[arg-type]
        method = Method(str(block.method.value), *args)
    objective = Objective("sharpe")
    if block.objective is not None:
        objective = Objective(str(block.objective.args[0].value), block.objective.value == "maximize")
    return method, objective


def requirement(require: Expr | None) -> Callable[[Outcome], bool]:
    """A member's pass/fail of the block's `require` (every member passes without one).

    A metric that is undefined for the member (a Sharpe ratio without trades) fails the requirement.
    """
    if require is None:
        return lambda outcome: not outcome.error
    condition = _metrics_as_params(require)
    names = _metric_names(require)

    def passes(outcome: Outcome) -> bool:
        """Whether the member meets the requirement."""
        values = {name: metric_value(outcome, name) for name in names}
        if outcome.error or any(v is None for v in values.values()):
            return False
        return evaluate(condition, values) is True  # type: ignore[arg-type]

    return passes


def _metrics_as_params(expr: Expr) -> Expr:
    """The expression with each metric node read as a param of the same name (so `evaluate` takes it)."""
    if expr.op == "metric":
        return expr.model_copy(update={"op": "param"})
    return expr.model_copy(update={"args": tuple(_metrics_as_params(a) for a in expr.args)})


def _metric_names(expr: Expr) -> set[str]:
    """The metrics an expression reads."""
    own = {str(expr.value)} if expr.op == "metric" else set()
    return own.union(*(_metric_names(a) for a in expr.args))


def members(space: Space, method: Method) -> list[Params] | None:
    """The members of a grid or random search in order; None for Bayesian search (proposed as it goes)."""
    if method.name == "grid":
        return space.grid()
    if method.name == "random":
        return space.sample(method.count, method.seed)
    return None


def search(
    space: Space,
    method: Method,
    objective: Objective,
    run: Runner,
    batch: int,
) -> Iterator[Outcome]:
    """Every member's outcome, in member order (`run` backtests batches of at most `batch` members)."""
    listed = members(space, method)
    if listed is not None:
        batches = (listed[i : i + batch] for i in range(0, len(listed), batch))
        for outcomes in run(batches):
            yield from outcomes
        return
    yield from _bayes(space, method, objective, run, batch)


def _bayes(space: Space, method: Method, objective: Objective, run: Runner, batch: int) -> Iterator[Outcome]:
    """Bayesian search: optuna's seeded TPE sampler proposes rounds of members from the outcomes so far.

    A round's members run in batches of at most `batch` (so that several workers share a round).
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not space.domains:
        raise RunError("bayes needs at least one param with a domain")
    sampler = optuna.samplers.TPESampler(seed=method.seed, constant_liar=True)
    study = optuna.create_study(direction="maximize" if objective.maximize else "minimize", sampler=sampler)
    seen: dict[Params, Outcome] = {}
    ran = 0
    # Proposals are capped so that a space smaller than the budget (or mostly forbidden) still ends.
    for _ in range(max(1, method.count) * 20 // BAYES_ROUND + 1):
        if ran >= method.count:
            break
        trials = [study.ask() for _ in range(min(BAYES_ROUND, method.count - ran))]
        proposed = [tuple((d.name, _suggest(t, d)) for d in space.domains) for t in trials]
        fresh = [p for p in dict.fromkeys(proposed) if p not in seen and space.allowed(p)]
        for outcomes in run([fresh[i : i + batch] for i in range(0, len(fresh), batch)]):
            for item in outcomes:
                seen[item.params] = item
                yield item
        ran += len(fresh)
        for trial, params in zip(trials, proposed, strict=True):
            known = seen.get(params)
            value = None if known is None else objective.value(known)
            if value is None:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                study.tell(trial, value)


def _suggest(ask: Any, domain: Domain) -> float:
    """A trial's value for one domain: a listed value, a grid point or a point of an interval."""
    if domain.choices:
        return float(ask.suggest_categorical(domain.name, list(domain.values)))
    if domain.integer and domain.step is not None:
        return float(ask.suggest_int(domain.name, int(domain.low), int(domain.high), step=int(domain.step)))
    value = ask.suggest_float(domain.name, domain.low, domain.high, step=domain.step)
    return round(float(value), 12)


def best(
    outcomes: Iterable[Outcome], objective: Objective, passes: Callable[[Outcome], bool]
) -> Outcome | None:
    """The best member by the objective among those passing the requirement (the first of equals)."""
    ranked = [o for o in outcomes if passes(o) and objective.value(o) is not None]
    return min(ranked, key=objective.key) if ranked else None


def done_filter(done: Mapping[Params, Outcome], run: Runner) -> Runner:
    """A runner that takes finished members' outcomes from `done` and runs only the others (--resume)."""

    def resumed(batches: Iterable[list[Params]]) -> Iterator[list[Outcome]]:
        """Each batch's outcomes, the finished ones read back, the others run."""
        listed = list(batches)
        todo = ([p for p in b if p not in done] for b in listed)
        ran = run(t for t in todo if t)
        for batch in listed:
            fresh = next(ran) if any(p not in done for p in batch) else []
            got = iter(fresh)
            yield [done[p] if p in done else next(got) for p in batch]

    return resumed
