"""Which portfolio of a checked spec runs: the file's portfolio, or one strategy as a one-sleeve portfolio."""

from __future__ import annotations

from dsl.ir import PortfolioIR, Program, alone
from runtime.errors import StratError
from runtime.plan.model import DEFAULT_CAPITAL


class RunError(StratError):
    """A spec that checks clean but cannot be run as asked (no such strategy, missing data, ...)."""


def select(program: Program, strategy: str | None, capital: float | None) -> PortfolioIR:
    """The portfolio to run: the file's portfolio, or one strategy on its own as a one-sleeve portfolio."""
    if strategy is None and len(program.portfolios) == 1:
        chosen = program.portfolios[0]
        return chosen.model_copy(update={"capital": capital}) if capital is not None else chosen
    if strategy is None:
        own = [s for s in program.strategies if s.file == program.file] or list(program.strategies)
        if not own and not program.portfolios:
            # A file of risk profiles or defs only (library/risk.strat): nothing to run in it.
            raise RunError(f"{program.file} defines no strategy or portfolio to run (it is meant to be used)")
        if len(program.portfolios) > 1 or len(own) != 1:
            names = [p.name for p in program.portfolios] or [s.name for s in own]
            raise RunError(f"{program.file} defines {', '.join(names)}: choose one with --strategy NAME")
        strategy = own[0].name
    for portfolio in program.portfolios:
        if portfolio.name == strategy:
            return portfolio.model_copy(update={"capital": capital}) if capital is not None else portfolio
    try:
        template = program.strategy(strategy)
    except KeyError:
        known = [s.name for s in program.strategies] + [p.name for p in program.portfolios]
        raise RunError(f"no strategy or portfolio '{strategy}'; known: {', '.join(known)}") from None
    return alone(template, capital or DEFAULT_CAPITAL)
