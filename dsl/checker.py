"""The checker: syntax tree → typed IR, with every semantic diagnostic of LANGUAGE.md §4.

It resolves names and scopes, `use` imports (with cycle detection), consts and pure defs (inlined, no
recursion), types, qualifiers and units, arity and keyword arguments, settings and statement placement,
params with domains and constraints, portfolio sleeves and weights, risk rules and metric scopes,
optimize blocks, clocks, lookahead, and the derived warm-up of each strategy. It never raises on bad
input: every problem becomes a diagnostic and checking goes on.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dsl import builtins as b
from dsl import syntax as s
from dsl.diagnostics import Diagnostic, Reporter, Span, did_you_mean
from dsl.expressions import Expressions, read_number, shorten, source_text, type_text
from dsl.ir import (
    AlertIR,
    Expr,
    OptimizeIR,
    ParamIR,
    PortfolioIR,
    Program,
    RiskProfileIR,
    RiskRuleIR,
    RuleIR,
    SleeveIR,
    StrategyIR,
    Value,
    alone,
    evaluate,
    risk_comparison,
)
from dsl.parser import ERROR_NAME, is_placeholder, parse
from dsl.render import explain, format_value, render_expr
from dsl.resources import library_dir
from dsl.scopes import ERROR, Env, Globals, StrategyScope, resolve_once, timeframe_literal
from dsl.types import NUMERIC, Qual, Type, unify
from dsl.units import TIMEFRAMES, format_duration, is_spot, parse_duration, parse_symbol
from dsl.warmup import longest_warmup, warmup

# The public API (explain, render_expr and warmup live in their own modules and are re-exported here).
__all__ = [
    "CheckResult",
    "Mode",
    "check_file",
    "check_source",
    "check_venues",
    "explain",
    "render_expr",
    "warmup",
]

# The language versions this checker understands.
SUPPORTED_VERSIONS = (1,)
# Default symbol and timeframe of a strategy that does not set them (reported as E016-free defaults).
DEFAULT_TIMEFRAME = "1h"
# How a spec is to be run: a backtest may short any market; paper and live trading trade a real venue.
Mode = Literal["backtest", "paper", "live"]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of checking one file: the program (None when there are errors) and all diagnostics."""

    program: Program | None  # the typed IR, when the file and its imports have no errors
    diagnostics: tuple[Diagnostic, ...]  # every diagnostic, imports included, in source order
    sources: Mapping[str, str]  # file → text, for rendering diagnostics

    @property
    def ok(self) -> bool:
        """Whether there is no error (warnings allowed)."""
        return not any(d.is_error for d in self.diagnostics)

    def render(self) -> str:
        """All diagnostics rendered for a terminal, separated by blank lines."""
        return "\n\n".join(d.render(self.sources.get(d.file)) for d in self.diagnostics)


def check_file(
    path: str | Path, *, overrides: Mapping[str, str] | None = None, mode: Mode = "backtest"
) -> CheckResult:
    """Check a .strat file and what it imports. `overrides` are `--set name=value` texts (checked).

    In "paper" or "live" mode, what the file runs is also checked against its venues (`check_venues`).
    """
    return check_venues(_Session().run(Path(path), None, overrides or {}), mode)


def check_source(
    text: str, file: str = "<input>", *, overrides: Mapping[str, str] | None = None, mode: Mode = "backtest"
) -> CheckResult:
    """Check source text as if it were the file `file` (imports resolve next to it, then in library/)."""
    return check_venues(_Session().run(Path(file), text, overrides or {}), mode)


def check_venues(result: CheckResult, mode: Mode, portfolio: PortfolioIR | None = None) -> CheckResult:
    """`result` with the errors of trading it in `mode` added: E080, a short entry on a spot market.

    A spot account sells only what it holds, so in "paper" and "live" mode every `entry short` rule of a
    strategy that trades a spot symbol is an error, located at the rule (in the file that writes it) and
    naming the sleeve when it runs inside a portfolio; a backtest may short anything. What is judged is
    `portfolio` (the one about to run; a strategy run alone is a one-sleeve portfolio of its own name, not
    one of the file's), else what the file can run: its portfolios, or its own strategies when it has none.
    A result that already has errors, or that is checked for a backtest, is returned unchanged.
    """
    program = result.program
    if mode == "backtest" or program is None:
        return result
    named = {p.name: p for p in program.portfolios}
    if portfolio is not None:
        targets = [portfolio]
    elif named:
        targets = list(program.portfolios)
    else:
        own = [st for st in program.strategies if st.file == program.file] or list(program.strategies)
        targets = [alone(st, 0.0) for st in own]
    reporter = Reporter(program.file)
    where = "live" if mode == "live" else "in paper trading"
    for target in targets:
        for sleeve in target.sleeves:
            if not is_spot(sleeve.symbol):
                continue
            template = program.strategy(sleeve.strategy)
            inside = f" (sleeve '{sleeve.name}' of portfolio '{target.name}')" if target.name in named else ""
            for rule in template.rules:
                if rule.kind == "entry" and rule.side == "short" and rule.span is not None:
                    reporter.add(
                        "E080",
                        rule.span,
                        f"{sleeve.symbol} is spot: short entries are not allowed {where}{inside}",
                        "a spot account sells only what it holds; backtests may still short",
                        file=_source_key(template.file, result.sources),
                    )
    if not reporter.diagnostics:
        return result
    reporter.extend(result.diagnostics)
    return CheckResult(None, tuple(reporter.diagnostics), result.sources)


def _source_key(file: str, sources: Mapping[str, str]) -> str:
    """The name `sources` knows a strategy's file by (the root file is named as the user wrote it)."""
    if file in sources:
        return file
    real = Path(file).resolve()
    return next((name for name in sources if Path(name).resolve() == real), file)


# ====================================================================== files and imports


@dataclass
class _FileDefs:
    """What one checked file exports to files that `use` it."""

    consts: dict[str, Expr] = field(default_factory=dict)  # const name → value
    defs: dict[str, tuple[s.Def, Globals]] = field(default_factory=dict)  # def name → (syntax, home scope)
    strategies: dict[str, StrategyIR] = field(default_factory=dict)  # checked strategy templates
    profiles: dict[str, RiskProfileIR] = field(default_factory=dict)  # reusable risk profiles
    portfolios: list[PortfolioIR] = field(default_factory=list)  # portfolios (not exported)
    optimizes: list[OptimizeIR] = field(default_factory=list)  # optimize blocks (not exported)
    version: int = 1  # language version declared


class _Session:
    """One check run: loads files once, detects import cycles, collects every file's diagnostics."""

    def __init__(self) -> None:
        """Start a run with nothing loaded."""
        self.sources: dict[str, str] = {}  # file → text
        self.reporters: dict[str, Reporter] = {}  # file → its diagnostics
        self.done: dict[Path, _FileDefs] = {}  # checked files by resolved path
        self.stack: list[Path] = []  # files being checked (import chain) for cycle detection
        self.roots: tuple[Path, ...] = ()  # folders `use` may read from (set from the root file by run)

    def run(self, path: Path, text: str | None, overrides: Mapping[str, str]) -> CheckResult:
        """Check the root file and build the program."""
        display = str(path)
        reporter = self._reporter(display)
        self.roots = _use_roots(path)
        defs = _FileDefs()
        if text is None:
            text = self._read(path, reporter)
        if text is not None:
            defs = self._check(path.resolve(), display, text, overrides)
        diagnostics = tuple(
            sorted((d for r in self.reporters.values() for d in r.diagnostics), key=Diagnostic.sort_key)
        )
        program = None
        if not any(d.is_error for d in diagnostics):
            program = Program(
                file=display,
                version=defs.version,
                strategies=tuple(defs.strategies.values()),
                portfolios=tuple(defs.portfolios),
                risk_profiles=tuple(defs.profiles.values()),
                optimizes=tuple(defs.optimizes),
            )
        return CheckResult(program, diagnostics, dict(self.sources))

    def _reporter(self, display: str) -> Reporter:
        """The reporter of one file."""
        return self.reporters.setdefault(display, Reporter(display))

    def _read(self, path: Path, reporter: Reporter) -> str | None:
        """Read a file as UTF-8 text, reporting unreadable or binary content."""
        try:
            data = path.read_bytes()
        except OSError as error:
            reporter.add("E015", Span.point(1, 1), f"cannot read {path}: {error.strerror or error}")
            return None
        if b"\x00" in data:
            reporter.add("E001", Span.point(1, 1), "this is a binary file, not .strat text")
            return None
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            reporter.add("E001", Span.point(1, 1), f"the file is not UTF-8 text (byte {error.start})")
            return None

    def _check(self, path: Path, display: str, text: str, overrides: Mapping[str, str]) -> _FileDefs:
        """Parse and check one file (its imports first)."""
        self.sources[display] = text
        reporter = self._reporter(display)
        self.stack.append(path)
        try:
            module = parse(text.replace("\r\n", "\n"), display, reporter)
            return FileChecker(self, path, module, reporter, overrides).run()
        except RecursionError:
            reporter.add("E001", Span.point(1, 1), "the file is nested too deeply to check")
            return _FileDefs()
        finally:
            self.stack.pop()

    def _resolve(self, importer: Path, use: s.Use, reporter: Reporter) -> Path | None:
        """The real path of a `use`d spec, or None after an E015 saying why it cannot be used.

        Specs are shared and reloaded by a running engine, so `use` reads nothing but `.strat` files, looked
        up next to the importer, then in library/, and only inside the allowed folders (`_use_roots`),
        judged on the real path (so neither `..` nor a symbolic link leads out).
        """
        name = shorten(use.path, 60)
        if not use.path.endswith(".strat"):
            reporter.add("E015", use.span, f"only .strat files can be used: '{name}'")
            return None
        for candidate in (importer.parent / use.path, library_dir() / use.path):
            try:
                real = candidate.resolve()
                kind = "file" if real.is_file() else "folder" if real.is_dir() else None
            except (OSError, ValueError):  # a name too long, a link loop, a NUL byte: there is no such file
                continue
            if kind == "folder":
                reporter.add("E015", use.span, f"'{name}' is a folder, not a file")
                return None
            if kind is None:
                continue
            if not any(real.is_relative_to(root) for root in self.roots):
                reporter.add(
                    "E015",
                    use.span,
                    f"'{name}' is outside the folders a spec may use",
                    "a spec uses files in its own folder tree, library/ and the folders of $STRAT_USE_PATH",
                )
                return None
            return real
        hint = f"looked in {importer.parent} and in the standard library"
        reporter.add("E015", use.span, f"cannot find '{name}'", hint)
        return None

    def load(self, importer: Path, use: s.Use, reporter: Reporter) -> _FileDefs | None:
        """Resolve (see `_resolve`) and check a `use`d file once per run."""
        found = self._resolve(importer, use, reporter)
        if found is None:
            return None
        if found in self.stack:
            chain = [p.name for p in self.stack[self.stack.index(found) :]] + [found.name]
            reporter.add("E015", use.span, f"import cycle: {' → '.join(chain)}")
            return None
        if found not in self.done:
            display = _display(found)
            text = self._read(found, self._reporter(display))
            self.done[found] = self._check(found, display, text, {}) if text is not None else _FileDefs()
        return self.done[found]


def _use_roots(root: Path) -> tuple[Path, ...]:
    """The folders a spec may `use` files from: the root spec's folder tree, library/, $STRAT_USE_PATH."""
    listed = [Path(p) for p in os.environ.get("STRAT_USE_PATH", "").split(os.pathsep) if p]
    return tuple(p.resolve() for p in (root.resolve().parent, library_dir(), *listed))


def _display(path: Path) -> str:
    """A path relative to the working directory when possible, for readable diagnostics."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# ====================================================================== the file checker


class FileChecker:
    """Checks the statements of one file."""

    def __init__(
        self,
        session: _Session,
        path: Path,
        module: s.Module,
        reporter: Reporter,
        overrides: Mapping[str, str],
    ) -> None:
        """Prepare to check `module`, reporting to `reporter`."""
        self.session = session  # the check run (for imports)
        self.path = path  # resolved file path
        self.module = module  # parsed statements
        self.rep = reporter  # this file's diagnostics
        self.overrides = overrides  # --set texts by name (`param` or `sleeve.param`), for this file only
        self.used_overrides: set[str] = set()  # the --set names some strategy or sleeve of the file took
        self.globals = Globals()  # the file's global scope
        self.out = _FileDefs()  # what the file defines
        self.names: dict[str, Span] = {}  # top-level names and where they are defined
        self.templates: dict[str, StrategyIR] = {}  # visible strategy templates (imported and own)
        self.profiles: dict[str, RiskProfileIR] = {}  # visible risk profiles
        # Inlined def calls by (def, argument digests, context): a def called twice with the same arguments
        # is checked once, so nested defs cost linear, not exponential, work.
        self.inlined: dict[tuple[object, ...], Expr] = {}
        self.expanded: dict[str, int] = {}  # node digest → its size written out as a tree (capped)
        self.const_values: dict[str, Value] = {}  # node digest → value, of the fixed arithmetic checked

    # ---------------------------------------------------------------- top level

    def run(self) -> _FileDefs:
        """Check the whole file."""
        if self.module.unread:
            return self.out
        stmts = [st for st in self.module.stmts if not _is_placeholder(st)]
        self._version(stmts)
        for st in stmts:
            if isinstance(st, s.Use):
                self._use(st)
        # Declare every top-level name first so definitions may appear in any order.
        for st in stmts:
            name_span = _declared_name(st)
            if name_span is not None:
                # Strategies, portfolios and profiles live apart from values: `strategy macd` is fine.
                self._declare(*name_span, self.names, value=isinstance(st, s.Const | s.Def))
            if isinstance(st, s.Const):
                self.globals.const_syntax.setdefault(st.name, st)
            elif isinstance(st, s.Def):
                self.globals.defs[st.name] = (st, self.globals)
        for st in stmts:
            self._top(st)
        self._unused_overrides()
        self.out.consts.update(
            {k: v for k, v in self.globals.consts.items() if k in self.globals.const_syntax}
        )
        self.out.defs.update({k: v for k, v in self.globals.defs.items() if v[1] is self.globals})
        return self.out

    def _version(self, stmts: list[s.Stmt]) -> None:
        """The file must start with `strat 1`."""
        versions = [st for st in stmts if isinstance(st, s.Version)]
        if not versions:
            self.rep.add(
                "E004", Span.point(1, 1), "missing language version", "start the file with 'strat 1'"
            )
            return
        first = versions[0]
        number = read_number(first.number) if first.number.replace("_", "").isdigit() else None
        if not isinstance(number, int) or number not in SUPPORTED_VERSIONS:
            supported = ", ".join(map(str, SUPPORTED_VERSIONS))
            self.rep.add(
                "E004",
                first.span,
                f"unsupported language version {shorten(first.number)}; supported: {supported}",
            )
        elif stmts[0] is not first:
            self.rep.add("E017", first.span, "'strat' must be the first statement of the file")
        else:
            self.out.version = number
        for extra in versions[1:]:
            self.rep.add(
                "E012", extra.span, f"the language version is already declared at line {first.span.line}"
            )

    def _use(self, use: s.Use) -> None:
        """Import another file's consts, defs, strategies and risk profiles."""
        defs = self.session.load(self.path, use, self.rep)
        if defs is None:
            return
        for name, value in defs.consts.items():
            self.globals.consts.setdefault(name, value)
        for name, item in defs.defs.items():
            self.globals.defs.setdefault(name, item)
        for name, strategy in defs.strategies.items():
            self._declare(name, use.span, self.names, imported=True, value=False)
            self.templates.setdefault(name, strategy)
            self.out.strategies.setdefault(name, strategy)
        for name, profile in defs.profiles.items():
            self.profiles.setdefault(name, profile)
            self.out.profiles.setdefault(name, profile)

    def _declare(
        self, name: str, span: Span, table: dict[str, Span], *, imported: bool = False, value: bool = True
    ) -> bool:
        """Register a name in a scope; E013 for a value named like a built-in, E012 for duplicates.

        The parser's placeholder name (an unreadable line) is never registered: it is no name of the user's.
        """
        if name == ERROR_NAME:
            return False
        builtin = _builtin_kind(name) if value else None
        if builtin and not imported:
            self.rep.add("E013", span, f"'{name}' is a {builtin} and cannot be redefined")
            return False
        if name in table:
            if not imported:
                self.rep.add("E012", span, f"'{name}' is already defined at line {table[name].line}")
            return False
        table[name] = span
        return True

    def _top(self, st: s.Stmt) -> None:
        """Dispatch one top-level statement."""
        if isinstance(st, s.Version | s.Use | s.Def):
            if isinstance(st, s.Def):
                self._def(st)
        elif isinstance(st, s.Const):
            self.resolve_const(st.name, self.globals)
        elif isinstance(st, s.Block) and st.kind == "strategy":
            self._strategy(st)
        elif isinstance(st, s.Block) and st.kind == "risk_profile":
            self._profile(st)
        elif isinstance(st, s.Block) and st.kind == "portfolio":
            self._portfolio(st)
        elif isinstance(st, s.Block) and st.kind == "optimize":
            self._optimize(st)
        else:
            self._misplaced(st, "top")

    def _misplaced(self, st: s.Stmt, where: str) -> None:
        """Report a statement that is not allowed where it stands (E017) or an unknown setting (E016)."""
        if isinstance(st, s.Setting | s.Block) and (not isinstance(st, s.Block) or st.kind == "setting"):
            known = _SETTINGS_BY_CONTEXT.get(where, {})
            # A real setting of another block: say where it belongs rather than "unknown".
            home = next((ctx for ctx, specs in _SETTINGS_BY_CONTEXT.items() if st.name in specs), None)
            if home is not None and st.name not in known:
                self.rep.add(
                    "E017",
                    st.name_span,
                    f"'{st.name}' belongs {_PLACES[home]}, not {_PLACES.get(where, 'here')}",
                    "put it inside the strategy's 'execution:' block" if home == "execution" else None,
                )
                return
            self.rep.add(
                "E016",
                st.name_span,
                f"unknown setting '{st.name}' {_PLACES.get(where, 'here')}",
                did_you_mean(st.name, known),
            )
            return
        if isinstance(st, s.Binding):
            self.rep.add(
                "E017",
                st.span,
                f"'{st.name} = ...' defines a series, which is only allowed inside a strategy",
                f"for a fixed value write 'const {st.name} = ...'" if where == "top" else None,
            )
            return
        home = _HOME.get(type(st).__name__ if not isinstance(st, s.Block) else st.kind, "")
        if isinstance(st, s.RiskAction):
            home = "inside a risk block"
        what = f"'{st.keyword}' rules are" if isinstance(st, s.Rule | s.RiskAction) else f"'{st.keyword}' is"
        self.rep.add(
            "E017", st.span, f"{what} only allowed {home}" if home else f"'{st.keyword}' is not allowed here"
        )

    # ---------------------------------------------------------------- consts and defs

    def resolve_const(self, name: str, scope: Globals) -> Expr | None:
        """The checked value of a const of this file, resolved on demand (cycles are E014)."""
        if name in scope.consts:
            return scope.consts[name]
        st = scope.const_syntax.get(name)
        if st is None:
            return None
        value = resolve_once(
            name,
            scope.resolving,
            st.name_span,
            self.rep,
            lambda: Expressions(self).check(st.value, Env(scope, fixed=f"const {name}")),
        )
        if value.qual > Qual.CONST and value is not ERROR:
            self.rep.add(
                "E024", st.value.span, f"const {name} must be fixed in the text; got {type_text(value)}"
            )
            value = ERROR
        scope.consts[name] = value
        return value

    def _def(self, st: s.Def) -> None:
        """Check a def's body once for unknown names (its arguments are unknown until a call)."""
        seen: dict[str, Span] = {}
        for param in st.params:
            if param in seen:
                self.rep.add("E012", st.span, f"parameter '{param}' of {st.name}() is repeated")
            seen[param] = st.span
        wildcard = Expr.make("const", None, kind="na", qual=Qual.SERIES)
        env = Env(self.globals, locals={p: wildcard for p in st.params}, inlining=(st.name,))
        Expressions(self, quiet_types=True).check(st.body, env)

    # ---------------------------------------------------------------- strategies

    def _strategy(self, block: s.Block) -> None:
        """Check a strategy template and record its IR."""
        body = [st for st in block.body if not _is_placeholder(st)]
        settings = {st.name: st for st in body if isinstance(st, s.Setting)}
        timeframe = self._timeframe(settings.get("timeframe"))
        ctx = StrategyScope(block.name, TIMEFRAMES[timeframe])
        env = Env(self.globals, ctx)
        ex = Expressions(self)
        local: dict[str, Span] = {}
        # Declarations first: params and bindings may be used before the line that defines them. Broken
        # `name = ...` lines (named parser placeholders) declare their name too, so uses stay silent.
        for st in block.body:
            if isinstance(st, s.Param) and self._declare(st.name, st.name_span, local):
                ctx.param_spans[st.name] = st.name_span
                param = self._param(st, env)
                if param is not None:
                    ctx.params[st.name] = param
            elif isinstance(st, s.Binding) and self._declare(st.name, st.name_span, local):
                ctx.syntax[st.name] = st
        self._apply_overrides(ctx, block)
        bindings = tuple((name, ex.binding(name, env)) for name in ctx.syntax)
        constraints = tuple(self._constraint(st, env, ctx) for st in body if isinstance(st, s.Constraint))
        rules: list[RuleIR] = []
        alerts: list[AlertIR] = []
        strategy_settings: dict[str, Expr] = {}
        execution: dict[str, Expr] = {}
        for st in body:
            if isinstance(st, s.Rule):
                rules.append(
                    RuleIR(
                        kind=st.kind,
                        side=st.side,
                        cond=ex.condition(st.cond, env, f"{st.kind} condition"),
                        span=st.span,
                    )
                )
            elif isinstance(st, s.Alert):
                alerts.append(AlertIR(message=st.message, cond=ex.condition(st.cond, env, "alert condition")))
            elif isinstance(st, s.Setting):
                self._setting(st, b.STRATEGY_SETTINGS, env, strategy_settings, "strategy")
            elif isinstance(st, s.Block) and st.kind == "setting" and st.name == "execution":
                for inner in st.body:
                    if isinstance(inner, s.Setting):
                        self._setting(inner, b.EXECUTION_SETTINGS, env, execution, "execution")
                    elif not _is_placeholder(inner):
                        self._misplaced(inner, "execution")
            elif not isinstance(st, s.Param | s.Binding | s.Constraint) and not _is_placeholder(st):
                self._misplaced(st, "strategy")
        data = strategy_settings.pop("data", None)  # where candles come from: not a trading setting
        symbol = self._symbol(settings.get("symbol"), block)
        self._strategy_warnings(block, rules, strategy_settings, settings)
        # The derived warm-up: the longest lookback path over everything a decision reads.
        roots = [r.cond for r in rules] + [v for k, v in strategy_settings.items() if v.qual == Qual.SERIES]
        defaults = {name: p.default for name, p in ctx.params.items()}
        maxima = {name: _domain_max(p) for name, p in ctx.params.items()}
        self._check_clocks(ctx, ctx.base_ms, None)
        strategy = StrategyIR(
            name=block.name,
            file=_display(self.path),
            symbol=symbol,
            timeframe=timeframe,
            params=tuple(ctx.params.values()),
            constraints=constraints,
            bindings=bindings,
            rules=tuple(rules),
            alerts=tuple(alerts),
            settings=tuple(strategy_settings.items()),
            execution=tuple(execution.items()),
            timeframes=(timeframe, *sorted(ctx.timeframes - {timeframe}, key=TIMEFRAMES.__getitem__)),
            warmup=longest_warmup(roots, defaults, ctx.base_ms),
            warmup_sweep=longest_warmup(roots, maxima, ctx.base_ms),
            trade_state=ctx.trade_state,
            data=str(data.value) if data is not None else None,
            digest=_digest(
                block.name,
                symbol,
                timeframe,
                [(r.kind, r.side, r.cond.digest) for r in rules],
                [(name, v.digest) for name, v in bindings],
                [(k, v.digest) for k, v in (*strategy_settings.items(), *execution.items())],
                [p.model_dump_json() for p in ctx.params.values()],
                [c.digest for c in constraints],
                [(a.message, a.cond.digest) for a in alerts],
            ),
        )
        self.templates[block.name] = strategy
        self.out.strategies[block.name] = strategy

    def _timeframe(self, st: s.Setting | None) -> str:
        """The strategy's base timeframe (E036 when it is not available)."""
        if st is None:
            return DEFAULT_TIMEFRAME
        return timeframe_literal(st.value, self.rep) or DEFAULT_TIMEFRAME

    def _symbol(self, st: s.Setting | None, block: s.Block) -> str:
        """The strategy's symbol (E037 when malformed; E016-style error when missing)."""
        if st is None:
            self.rep.add(
                "E026",
                block.name_span,
                f"strategy '{block.name}' has no symbol",
                'add: symbol: "BINANCE:BTC/USDT"',
            )
            return "BINANCE:BTC/USDT"
        text = st.value.text if isinstance(st.value, s.Literal) and st.value.kind == "string" else None
        if text is None or parse_symbol(text) is None:
            shown = text if text is not None else "this value"
            self.rep.add(
                "E037",
                st.value.span,
                f"'{shown}' is not of the form \"EXCHANGE:BASE/QUOTE\"",
                'for example "BINANCE:BTC/USDT"',
            )
            return "BINANCE:BTC/USDT"
        return text

    def _strategy_warnings(
        self,
        block: s.Block,
        rules: list[RuleIR],
        settings: dict[str, Expr],
        written: dict[str, s.Setting],
    ) -> None:
        """W054 (an entry with no way out) and E081 (risk sizing without a stop).

        Both judge the strategy as a whole, so each stays silent only when an error may be its real
        cause: W054 after any error inside the strategy (an unreadable rule or bracket), E081 when a
        `stop_loss` was written but did not check, or an unknown setting may be a misspelt `stop_loss:`.
        Any other error (in a rule, a binding, a param) leaves E081 reported: every error of a file is.
        """
        quiet = self.rep.has_errors_within(block.span)  # W054's judgement, before E081 adds an error
        stop_unknown = "stop_loss" in written or any(name not in b.STRATEGY_SETTINGS for name in written)
        if "stop_loss" not in settings and not stop_unknown:
            # Settings measured in R, the initial risk: the distance to the stop.
            for name, value in settings.items():
                what = _measured_to_the_stop(name, value)
                if what is not None and name in written:
                    self.rep.add(
                        "E081",
                        written[name].value.span,
                        f"{what[0]} needs stop_loss",
                        f"{what[1]} is measured to the stop: add stop_loss: 2% (or 2 * atr(14))",
                    )
        if quiet:
            return
        brackets = {"stop_loss", "take_profit", "trailing_stop", "max_hold"} & settings.keys()
        for side in ("long", "short"):
            entries = [r for r in rules if r.kind == "entry" and r.side == side]
            exits = [r for r in rules if r.kind == "exit" and r.side == side]
            if entries and not exits and not brackets:
                self.rep.add(
                    "W054",
                    block.name_span,
                    f"entry {side} has no exit: no exit rule, stop, target "
                    "or max_hold ever closes the position",
                )

    # ---------------------------------------------------------------- params and overrides

    def _param(self, st: s.Param, env: Env) -> ParamIR | None:
        """Check a param's default and domain (E040–E044)."""
        ex = Expressions(self)
        fixed = Env(env.globals, fixed=f"the default of param {st.name}")
        default = ex.check(st.default, fixed)
        if default is ERROR:
            return None
        value = evaluate(default, {})
        if default.kind not in NUMERIC or not isinstance(value, int | float) or isinstance(value, bool):
            self.rep.add(
                "E022", st.default.span, f"param {st.name} must be a number; got {type_text(default)}"
            )
            return None
        param = ParamIR(
            name=st.name,
            kind="number" if default.kind == "na" else default.kind,
            integer=default.integer,
            default=float(value),
        )
        if st.domain is None:
            return param
        return self._domain(st, param, st.domain, ex, fixed)

    def _domain(
        self, st: s.Param, param: ParamIR, dom: s.Domain, ex: Expressions, env: Env
    ) -> ParamIR | None:
        """Check a param's range or set domain and attach it."""
        items = [dom.low, dom.high, dom.step] if dom.low is not None else list(dom.items)
        values: list[float | None] = []
        for item in items:
            if item is None:
                values.append(None)
                continue
            node = ex.check(item, env)
            if node is ERROR:
                return None
            if unify(Type(node.kind, adaptable=node.kind == "number"), Type(param.kind)) != param.kind:
                self.rep.add(
                    "E044",
                    item.span,
                    f"domain value has unit {node.kind} but the default of {st.name} is {param.kind}",
                )
                return None
            value = evaluate(node, {})
            if isinstance(value, int | float) and not math.isfinite(value):
                self.rep.add("E025", item.span, f"domain value of {st.name} must be a finite number")
                return None
            values.append(float(value) if isinstance(value, int | float) else None)
        shown = format_value(param.default, param.kind)
        if dom.low is not None:
            low, high, step = values
            if low is None or high is None:
                return None
            text = f"{format_value(low, param.kind)}..{format_value(high, param.kind)}"
            if low > high:
                self.rep.add("E042", dom.span, f"empty range {text}: the start is above the end")
                return None
            if step is not None and step <= 0:
                self.rep.add("E042", dom.span, f"step of {text} must be above zero")
                return None
            result = param.model_copy(update={"low": low, "high": high, "step": step})
            if not low <= param.default <= high:
                self.rep.add("E040", st.default.span, f"default {shown} is outside {text}")
            elif not _on_grid(param.default, low, step):
                self.rep.add(
                    "E041",
                    st.default.span,
                    f"default {shown} is not on the grid {text} step {format_value(step or 0, param.kind)}",
                )
            return result
        choices = tuple(v for v in values if v is not None)
        if not choices:
            self.rep.add("E042", dom.span, "empty set of values")
            return None
        if param.default not in choices:
            listed = ", ".join(format_value(c, param.kind) for c in choices)
            self.rep.add("E040", st.default.span, f"default {shown} is not one of {{{listed}}}")
        return param.model_copy(update={"choices": choices})

    def _constraint(self, st: s.Constraint, env: Env, ctx: StrategyScope) -> Expr:
        """A constraint over params must be fixed, bool, and hold at the defaults (E043)."""
        fixed = Env(env.globals, ctx, fixed="a constraint")
        node = Expressions(self).condition(st.expr, fixed, "constraint")
        if node is not ERROR and evaluate(node, {k: p.default for k, p in ctx.params.items()}) is False:
            shown = ", ".join(
                f"{k}={format_value(p.default, p.kind)}"
                for k, p in ctx.params.items()
                if k in _param_names(node)
            )
            self.rep.add("E043", st.expr.span, f"constraint is false at the defaults ({shown})")
        return node

    def _apply_overrides(self, ctx: StrategyScope, block: s.Block) -> None:
        """Apply `--set name=value` to this file's strategy (each value checked like a default).

        A name the strategy has no param for is left to the file's other strategies and sleeves; one that
        nothing in the file takes is reported once, by `_unused_overrides`.
        """
        for name, text in self.overrides.items():
            if name not in ctx.params:
                continue
            self.used_overrides.add(name)
            value = self._override_value(name, text, ctx.params[name], block.name_span)
            if value is not None:
                ctx.params[name] = ctx.params[name].model_copy(update={"default": value})

    def _override_value(self, name: str, text: str, param: ParamIR, span: Span) -> float | None:
        """The value of `--set name=text` for `param`, or None after E005 (unreadable) or E040 (domain)."""
        value = _parse_override(text, param)
        if value is None:
            self.rep.add(
                "E005",
                span,
                f"--set {name}={text}: '{text}' is not a valid value for {param.name} ({param.kind})",
            )
            return None
        problem = _domain_problem(param, value)
        if problem:
            self.rep.add("E040", span, f"--set {name}={text}: {problem}")
            return None
        return value

    def _sleeve_overrides(self, st: s.Sleeve, template: StrategyIR) -> list[tuple[str, float]]:
        """The `--set` values for one sleeve: `SLEEVE.param=v`, and `param=v` when its template has it."""
        params = {p.name: p for p in template.params}
        own = template.file == _display(self.path)  # its default already took a bare `param=v`
        found: list[tuple[str, float]] = []
        for key, text in self.overrides.items():
            sleeve, dot, name = key.rpartition(".")
            if (dot and sleeve != st.name) or (not dot and name not in params):
                continue
            self.used_overrides.add(key)
            if name not in params:
                self.rep.add(
                    "E051",
                    st.name_span,
                    f"--set {key}: sleeve '{st.name}' ({template.name}) has no param '{name}'",
                    did_you_mean(name, params),
                )
                continue
            if own and not dot:
                # Checked (and any error reported) where the template's default took it.
                quiet = _parse_override(text, params[name])
                if quiet is not None and not _domain_problem(params[name], quiet):
                    found.append((name, quiet))
                continue
            value = self._override_value(key, text, params[name], st.name_span)
            if value is not None:
                found.append((name, value))
        return found

    def _unused_overrides(self) -> None:
        """E051 for each `--set` name that no strategy, sleeve or param of the file takes."""
        unused = [key for key in self.overrides if key not in self.used_overrides]
        if not unused:
            return
        # Where a `--set` problem is shown: the file's first portfolio, else its first strategy.
        heads = [
            st for st in self.module.stmts if isinstance(st, s.Block) and st.kind in ("portfolio", "strategy")
        ]
        heads.sort(key=lambda st: st.kind != "portfolio")
        span = heads[0].name_span if heads else Span.point(1, 1)
        sleeves = [sleeve for portfolio in self.out.portfolios for sleeve in portfolio.sleeves]
        own = [t for t in self.out.strategies.values() if t.file == _display(self.path)]
        names = [p.name for t in own for p in t.params]
        names += [
            p.name
            for sl in sleeves
            if sl.strategy in self.templates
            for p in self.templates[sl.strategy].params
        ]
        for key in unused:
            sleeve, dot, _ = key.rpartition(".")
            if dot:
                message = f"--set {key}: this file has no sleeve '{sleeve}'"
                known = [sl.name for sl in sleeves]
                hint = did_you_mean(sleeve, known) or (f"sleeves: {', '.join(known)}" if known else None)
            else:
                message = f"--set {key}: no strategy or sleeve of this file has a param '{key}'"
                hint = did_you_mean(key, dict.fromkeys(names))
                if key in ("symbol", "timeframe"):
                    hint = f"--set changes params; write the {key} in the spec (or a sleeve's {key}=...)"
            self.rep.add("E051", span, message, hint)

    def _setting(
        self, st: s.Setting, specs: Mapping[str, b.SettingSpec], env: Env, out: dict[str, Expr], where: str
    ) -> None:
        """Check one `key: value` setting against its specification."""
        spec = specs.get(st.name)
        if spec is None:
            self._misplaced(st, where)
            return
        if st.name in out:
            self.rep.add("E012", st.name_span, f"'{st.name}' is already set in this block")
            return
        if st.name in ("symbol", "timeframe"):
            # Validated by _symbol and _timeframe; recorded there.
            return
        if st.name == "data":
            source = self._data_source(st)
            if source is not None:
                out["data"] = Expr.make("const", source, kind="data_source")
            return
        node = Expressions(self).setting_value(st, spec, env)
        if node is not ERROR:
            out[st.name] = node

    def _data_source(self, st: s.Setting) -> str | None:
        """A `data:` value: "exchange", "synthetic" or the absolute path of an existing folder.

        A string names a folder relative to the file that says it (E038 when there is none); a bare word
        must be one of `DATA_SOURCES` (E026).
        """
        value = st.value
        if isinstance(value, s.Name) and value.id in b.DATA_SOURCES:
            return value.id
        if not (isinstance(value, s.Literal) and value.kind == "string"):
            word = value.id if isinstance(value, s.Name) else ""
            hint = did_you_mean(word, b.DATA_SOURCES) if word else None
            self.rep.add("E026", value.span, f"data expects {b.DATA_WHAT}", hint)
            return None
        text = value.text or ""
        folder = self.path.parent / text
        try:
            kind = "folder" if folder.is_dir() else "file" if folder.exists() else None
        except (OSError, ValueError):  # a name too long for the file system, a NUL byte
            kind = None
        if kind == "folder":
            return str(folder.resolve())
        shown = shorten(text, 60)
        problem = "is a file, not a folder" if kind == "file" else "does not exist"
        self.rep.add(
            "E038",
            value.span,
            f"data folder '{shown}' {problem} ({shorten(str(folder), 120)})",
            "a folder of SYMBOL-TIMEFRAME.csv files, relative to this spec; or data: exchange",
        )
        return None

    # ---------------------------------------------------------------- risk

    def _risk_rules(self, body: tuple[s.Stmt, ...], scope: str, where: str) -> list[RiskRuleIR]:
        """Check the rules of a risk block (scope: portfolio or sleeve)."""
        metrics = b.SLEEVE_METRICS if scope == "sleeve" else b.PORTFOLIO_METRICS
        env = Env(self.globals, metrics=metrics, metric_scope=scope)
        ex = Expressions(self)
        rules = []
        for st in body:
            if _is_placeholder(st):
                continue
            if not isinstance(st, s.RiskAction):
                self._misplaced(st, where)
                continue
            rule = self._risk_rule(st, scope, env, ex)
            if rule is not None:
                rules.append(rule)
        return rules

    def _risk_rule(self, st: s.RiskAction, scope: str, env: Env, ex: Expressions) -> RiskRuleIR | None:
        """Check one halt / pause / flatten / cap rule."""
        text = source_text(self.session.sources.get(self.rep.file, ""), st.span)
        if st.action == "cap":
            metric = st.metric or ""
            kind = self._metric_kind(metric, st.metric_span or st.span, scope)
            if kind is None or st.limit is None:
                return None
            limit = ex.check(st.limit, Env(self.globals, fixed=f"the limit of cap {metric}"))
            if limit is ERROR:
                return None
            if unify(Type(limit.kind, adaptable=limit.kind == "number"), Type(kind)) != kind:
                self.rep.add("E023", st.limit.span, f"cap {metric} needs a limit in {kind}; got {limit.kind}")
                return None
            value = evaluate(limit, {})
            if not self._cap_domain(metric, kind, value, st):
                return None
            return RiskRuleIR(
                scope=scope,
                action="cap",
                cond=None,
                duration_ms=None,
                metric=metric,
                limit=float(value) if isinstance(value, int | float) else None,
                text=text,
            )
        cond = ex.condition(st.cond, env, f"{st.action} condition") if st.cond is not None else ERROR
        duration = None
        if st.duration is not None:
            node = ex.check(st.duration, Env(self.globals, fixed="a pause length"))
            if node is not ERROR and node.kind != "duration":
                self.rep.add(
                    "E026", st.duration.span, f"pause expects a duration such as 24h; got {node.kind}"
                )
            elif node is not ERROR:
                length = evaluate(node, {})
                if isinstance(length, int | float) and math.isfinite(length):
                    duration = int(length)
                else:
                    self.rep.add("E025", st.duration.span, f"a pause lasts a finite duration; got {length}")
        if cond is ERROR or st.cond is None:
            return None
        wrong = _risk_condition_problem(cond, st.cond)
        if wrong is not None:
            self.rep.add(
                "E052",
                wrong.span,
                "a risk condition compares a metric with a fixed value",
                "for example drawdown > 15% or day_pnl < -4%, joined by and, or, not",
            )
            return None
        return RiskRuleIR(
            scope=scope, action=st.action, cond=cond, duration_ms=duration, metric=None, limit=None, text=text
        )

    def _cap_domain(self, metric: str, kind: str, value: object, st: s.RiskAction) -> bool:
        """Whether `metric` may be capped and `value` lies in its limit's domain (E052, E025 otherwise)."""
        domain = b.CAPPABLE.get(metric)
        if domain is None:
            self.rep.add(
                "E052",
                st.metric_span or st.span,
                f"cannot cap {metric}: a cap limits what an entry adds",
                f"cappable: {', '.join(b.CAPPABLE)}; for {metric} write halt, pause or flatten when ...",
            )
            return False
        assert st.limit is not None  # a cap rule always has its limit (the grammar requires it)
        number = float(value) if isinstance(value, int | float) else math.nan
        shown = {"low": format_value(domain.low, kind), "high": format_value(domain.high or 0.0, kind)}
        if domain.whole and not (number >= domain.low and number.is_integer()):
            problem = f"cap {metric} must be a whole number >= {shown['low']}"
        elif not domain.whole and not number > domain.low:
            problem = f"cap {metric} must be > {shown['low']}"
        elif domain.high is not None and not number <= domain.high:
            problem = f"cap {metric} must be <= {shown['high']}"
        else:
            return True
        self.rep.add("E025", st.limit.span, problem)
        return False

    def _metric_kind(self, metric: str, span: Span, scope: str) -> str | None:
        """The kind of a risk metric visible at `scope`, or None after reporting E052."""
        table = b.SLEEVE_METRICS if scope == "sleeve" else b.PORTFOLIO_METRICS
        if metric in table:
            return table[metric]
        if metric in b.SLEEVE_METRICS:
            self.rep.add(
                "E052", span, f"'{metric}' is a per-sleeve metric", "use it inside 'risk per sleeve:'"
            )
        else:
            self.rep.add(
                "E052", span, f"unknown risk metric '{metric}'", did_you_mean(metric, b.SLEEVE_METRICS)
            )
        return None

    def _profile(self, block: s.Block) -> None:
        """A reusable risk profile: rules checked with the sleeve metrics (scope set when applied)."""
        rules = self._risk_rules(block.body, "sleeve", "risk_profile")
        profile = RiskProfileIR(name=block.name, rules=tuple(rules))
        self.profiles[block.name] = profile
        self.out.profiles[block.name] = profile

    # ---------------------------------------------------------------- portfolios

    def _portfolio(self, block: s.Block) -> None:
        """Check a portfolio: settings, sleeves, weights and risk."""
        ex = Expressions(self)
        env = Env(self.globals)
        settings: dict[str, Expr] = {}
        sleeves: list[SleeveIR] = []
        weights: list[tuple[s.Sleeve, float | None]] = []
        risk: list[RiskRuleIR] = []
        names: dict[str, Span] = {}
        for st in block.body:
            if _is_placeholder(st):
                continue
            if isinstance(st, s.Setting):
                self._setting(st, b.PORTFOLIO_SETTINGS, env, settings, "portfolio")
            elif isinstance(st, s.Sleeve):
                if not self._declare(st.name, st.name_span, names):
                    continue
                sleeve = self._sleeve(st, ex)
                if sleeve is not None:
                    sleeves.append(sleeve)
                    weights.append((st, sleeve.weight if st.weight is not None else None))
            elif isinstance(st, s.Block) and st.kind in ("risk", "risk_sleeve"):
                scope = "sleeve" if st.kind == "risk_sleeve" else "portfolio"
                risk.extend(self._risk_rules(st.body, scope, st.kind))
            elif isinstance(st, s.RiskRef):
                risk.extend(self._apply_profile(st))
            else:
                self._misplaced(st, "portfolio")
        sleeves = self._weights(block, sleeves, weights)
        capital = settings.get("capital")
        if not any(isinstance(st, s.Sleeve) for st in block.body):
            self.rep.add(
                "E026",
                block.name_span,
                f"portfolio '{block.name}' has no sleeves",
                "add: sleeve NAME = strategy(...) weight 50%",
            )
        rebalance = settings.get("rebalance")
        self.out.portfolios.append(
            PortfolioIR(
                name=block.name,
                file=_display(self.path),
                capital=float(capital.value)
                if capital is not None and isinstance(capital.value, int | float)
                else 10_000.0,
                quote=capital.symbol if capital is not None else None,
                rebalance_ms=int(rebalance.value)
                if rebalance is not None and isinstance(rebalance.value, int | float)
                else None,
                sleeves=tuple(sleeves),
                risk=tuple(risk),
                data=str(settings["data"].value) if "data" in settings else None,
            )
        )

    def _sleeve(self, st: s.Sleeve, ex: Expressions) -> SleeveIR | None:
        """Check a sleeve: its template, overrides (like defaults) and weight."""
        template = self.templates.get(st.call.func)
        if template is None:
            self.rep.add(
                "E051",
                st.call.func_span,
                f"unknown strategy '{st.call.func}'",
                did_you_mean(st.call.func, self.templates),
            )
            return None
        if st.call.args:
            self.rep.add("E020", st.call.args[0].span, "sleeve overrides must be named, e.g. fast=20")
        params = {p.name: p for p in template.params}
        overrides: list[tuple[str, float]] = []
        symbol, timeframe = template.symbol, template.timeframe
        fixed = Env(self.globals, fixed="a sleeve override")
        for kw in st.call.kwargs:
            if kw.name == "symbol":
                text = kw.value.text if isinstance(kw.value, s.Literal) and kw.value.kind == "string" else ""
                if parse_symbol(text) is None:
                    self.rep.add(
                        "E037",
                        kw.value.span,
                        f"'{text or 'this value'}' is not of the form \"EXCHANGE:BASE/QUOTE\"",
                    )
                else:
                    symbol = text
                continue
            if kw.name == "timeframe":
                timeframe = self._override_timeframe(kw, template) or timeframe
                continue
            if kw.name not in params:
                self.rep.add(
                    "E051",
                    kw.span,
                    f"strategy '{template.name}' has no param '{kw.name}'",
                    did_you_mean(kw.name, [*params, "symbol", "timeframe"]),
                )
                continue
            node = ex.check(kw.value, fixed)
            value = evaluate(node, {}) if node is not ERROR else None
            if not isinstance(value, int | float) or isinstance(value, bool):
                if node is not ERROR:
                    self.rep.add("E022", kw.value.span, f"override of {kw.name} must be a fixed number")
                continue
            param = params[kw.name]
            if unify(Type(node.kind, adaptable=node.kind == "number"), Type(param.kind)) != param.kind:
                self.rep.add("E023", kw.value.span, f"{kw.name} is {param.kind}; got {node.kind}")
                continue
            problem = _domain_problem(param, float(value))
            if problem:
                self.rep.add("E040", kw.value.span, problem)
                continue
            overrides.append((kw.name, float(value)))
        # `--set` wins over the sleeve's own values.
        overrides = list((dict(overrides) | dict(self._sleeve_overrides(st, template))).items())
        # Constraints of the template must still hold with the overrides.
        values = {p.name: p.default for p in template.params} | dict(overrides)
        for constraint in template.constraints:
            if evaluate(constraint, values) is False:
                shown = ", ".join(
                    f"{k}={format_value(values[k], params[k].kind)}" for k in sorted(_param_names(constraint))
                )
                self.rep.add(
                    "E043",
                    st.call.span,
                    f"a constraint of '{template.name}' is false for this sleeve ({shown})",
                )
        weight = self._weight(st, ex)
        return SleeveIR(
            name=st.name,
            strategy=template.name,
            symbol=symbol,
            timeframe=timeframe,
            weight=weight if weight is not None else 0.0,
            overrides=tuple(overrides),
        )

    def _override_timeframe(self, kw: s.Kwarg, template: StrategyIR) -> str | None:
        """A sleeve's timeframe override: available, and not faster than any clock the template reads."""
        text = timeframe_literal(kw.value, self.rep)
        if text is None:
            return None
        base = TIMEFRAMES[text]
        for other in template.timeframes[1:]:
            if TIMEFRAMES[other] < base:
                self.rep.add(
                    "E034",
                    kw.value.span,
                    f"bars({other}) of '{template.name}' is faster than the sleeve timeframe {text}",
                )
                return None
            if TIMEFRAMES[other] % base:
                self.rep.add(
                    "E035", kw.value.span, f"{other} of '{template.name}' is not a whole multiple of {text}"
                )
                return None
        return text

    def _weight(self, st: s.Sleeve, ex: Expressions) -> float | None:
        """A sleeve weight: a percentage in (0, 100%]."""
        if st.weight is None:
            return None
        node = ex.check(st.weight, Env(self.globals, fixed="a sleeve weight"))
        if node is ERROR:
            return None
        value = evaluate(node, {})
        if node.kind != "percent" or not isinstance(value, int | float):
            self.rep.add("E026", st.weight.span, f"weight expects a percentage such as 40%; got {node.kind}")
            return None
        if value <= 0:
            self.rep.add("E025", st.weight.span, "weight must be > 0%")
            return None
        if value > 1 + 1e-12:
            self.rep.add("E025", st.weight.span, "weight must be <= 100%")
            return None
        return float(value)

    def _weights(
        self, block: s.Block, sleeves: list[SleeveIR], weights: list[tuple[s.Sleeve, float | None]]
    ) -> list[SleeveIR]:
        """Sum check (E050); sleeves without a weight share what the others leave, equally."""
        given = sum(w for _, w in weights if w is not None)
        if given > 1 + 1e-9:
            self.rep.add("E050", block.name_span, f"sleeve weights sum to {format_value(given, 'percent')}")
            return sleeves
        missing = [i for i, (_, w) in enumerate(weights) if w is None]
        if not missing:
            return sleeves
        share = (1 - given) / len(missing)
        return [
            sl.model_copy(update={"weight": share}) if i in missing else sl for i, sl in enumerate(sleeves)
        ]

    def _apply_profile(self, ref: s.RiskRef) -> list[RiskRuleIR]:
        """Apply a reusable risk profile at portfolio or sleeve scope."""
        profile = self.profiles.get(ref.name)
        if profile is None:
            self.rep.add(
                "E051",
                ref.name_span,
                f"unknown risk profile '{ref.name}'",
                did_you_mean(ref.name, self.profiles),
            )
            return []
        scope = "sleeve" if ref.per_sleeve else "portfolio"
        rules = []
        for rule in profile.rules:
            names = _metric_names(rule.cond) | ({rule.metric} if rule.metric else set())
            wrong = sorted(n for n in names if scope == "portfolio" and n not in b.PORTFOLIO_METRICS)
            if wrong:
                self.rep.add(
                    "E052",
                    ref.name_span,
                    f"'{wrong[0]}' in profile '{ref.name}' is a per-sleeve metric",
                    "apply it with 'risk per sleeve:'",
                )
                continue
            rules.append(rule.model_copy(update={"scope": scope}))
        return rules

    # ---------------------------------------------------------------- optimize

    def _optimize(self, block: s.Block) -> None:
        """Check an optimize block: target, range, method, objective, requirements, walk-forward."""
        env = Env(self.globals, metrics=b.RESULT_METRICS, metric_scope="optimize")
        values: dict[str, Expr] = {}
        target = ""
        for st in block.body:
            if _is_placeholder(st):
                continue
            if not isinstance(st, s.Setting):
                self._misplaced(st, "optimize")
                continue
            if st.name == "target":
                name = st.value.id if isinstance(st.value, s.Name) else ""
                if name not in self.templates:
                    self.rep.add(
                        "E051",
                        st.value.span,
                        f"unknown strategy '{name or 'expression'}'",
                        did_you_mean(name, self.templates),
                    )
                target = name
                continue
            self._setting(st, b.OPTIMIZE_SETTINGS, env, values, "optimize")
        if not target:
            self.rep.add(
                "E026", block.name_span, f"optimize '{block.name}' has no target", "add: target: STRATEGY"
            )
        start, end = values.get("start"), values.get("end")
        if start is not None and end is not None and (start.value or 0) >= (end.value or 0):  # type: ignore[operator]
            self.rep.add("E025", block.name_span, "start must be before end")
        self.out.optimizes.append(
            OptimizeIR(
                name=block.name,
                target=target,
                start_ms=_int(start),
                end_ms=_int(end),
                method=values.get("method"),
                objective=values.get("objective"),
                require=values.get("require"),
                walk_forward=values.get("walk_forward"),
            )
        )

    # ---------------------------------------------------------------- clocks

    def _check_clocks(self, ctx: StrategyScope, base: int, where: Span | None) -> None:
        """Every bars() clock must be available, not faster than the base and a whole multiple of it."""
        for tf, span in ctx.bars_spans:
            size = TIMEFRAMES[tf]
            base_name = format_duration(base)
            if size < base:
                self.rep.add(
                    "E034", where or span, f"bars({tf}) is faster than the strategy timeframe {base_name}"
                )
            elif size % base:
                self.rep.add("E035", where or span, f"{tf} is not a whole multiple of {base_name}")


# ====================================================================== helpers

# Settings by the block they belong to, for E016 hints.
_SETTINGS_BY_CONTEXT: dict[str, Mapping[str, b.SettingSpec]] = {
    "strategy": {**b.STRATEGY_SETTINGS, "execution": b.SettingSpec(())},
    "execution": b.EXECUTION_SETTINGS,
    "portfolio": b.PORTFOLIO_SETTINGS,
    "optimize": b.OPTIMIZE_SETTINGS,
}
# How each context is named in E016/E017 messages.
_PLACES: dict[str, str] = {
    "top": "at the top level",
    "strategy": "in a strategy",
    "execution": "in an execution block",
    "portfolio": "in a portfolio",
    "optimize": "in an optimize block",
    "risk": "in a risk block",
    "risk_sleeve": "in a risk block",
    "risk_profile": "in a risk profile",
}
# Where each kind of statement belongs, for E017 messages.
_HOME: dict[str, str] = {
    "Param": "inside a strategy",
    "Constraint": "inside a strategy",
    "Binding": "inside a strategy",
    "Rule": "inside a strategy",
    "Alert": "inside a strategy",
    "Sleeve": "inside a portfolio",
    "RiskRef": "inside a portfolio",
    "Const": "at the top level",
    "Def": "at the top level",
    "Use": "at the top level",
    "Version": "at the top level",
    "strategy": "at the top level",
    "portfolio": "at the top level",
    "optimize": "at the top level",
    "risk_profile": "at the top level",
    "risk": "inside a portfolio",
    "risk_sleeve": "inside a portfolio",
}


def _is_placeholder(st: s.Stmt) -> bool:
    """Whether a statement stands for text the parser could not read."""
    return is_placeholder(st)


def _declared_name(st: s.Stmt) -> tuple[str, Span] | None:
    """The top-level name a statement defines, if any."""
    if isinstance(st, s.Const | s.Def):
        return st.name, st.name_span
    if isinstance(st, s.Block) and st.kind in ("strategy", "portfolio", "optimize", "risk_profile"):
        return st.name, st.name_span
    return None


def _builtin_kind(name: str) -> str | None:
    """What a reserved built-in name is, for E013 messages; None for a free name."""
    if name in b.SOURCES or name in b.TRADE_STATE:
        return "built-in series"
    if name in b.SERIES_FUNCTIONS or name in b.SETTING_FUNCTIONS or name == b.BARS_FUNCTION:
        return "built-in function"
    return None


def _on_grid(value: float, low: float, step: float | None) -> bool:
    """Whether `value` lies on the grid low, low+step, ... (within float tolerance)."""
    if step is None or step <= 0:
        return True
    k = (value - low) / step
    return abs(k - round(k)) < 1e-9


def _domain_max(param: ParamIR) -> float:
    """The largest value of a param's domain (its default when it has none)."""
    if param.choices:
        return max(param.choices)
    return param.high if param.high is not None else param.default


def _domain_problem(param: ParamIR, value: float) -> str | None:
    """Why `value` is not allowed for `param` (outside its domain or off its grid), or None."""
    shown = format_value(value, param.kind)
    if param.integer and not float(value).is_integer():
        return f"{param.name} must be a whole number; got {shown}"
    if param.choices is not None and value not in param.choices:
        return f"{shown} is not one of {{{', '.join(format_value(c, param.kind) for c in param.choices)}}}"
    if param.low is not None and param.high is not None:
        text = f"{format_value(param.low, param.kind)}..{format_value(param.high, param.kind)}"
        if not param.low <= value <= param.high:
            return f"{param.name} = {shown} is outside {text}"
        if not _on_grid(value, param.low, param.step):
            step = format_value(param.step or 0, param.kind)
            return f"{param.name} = {shown} is not on the grid {text} step {step}"
    return None


def _parse_override(text: str, param: ParamIR) -> float | None:
    """Parse a `--set` value in the param's unit (`30`, `1.5%`, `4h`); None unless a finite number."""
    value = _override_number(text.strip(), param)
    return value if value is not None and math.isfinite(value) else None


def _override_number(text: str, param: ParamIR) -> float | None:
    """The number a `--set` text (stripped) stands for in the param's unit, or None if unreadable."""
    try:
        if param.kind == "percent":
            return float(text.rstrip("%")) / 100 if text.endswith("%") else None
        if param.kind == "bps":
            return float(text[:-3]) / 10_000 if text.endswith("bps") else None
        if param.kind == "duration":
            ms = parse_duration(text)
            return float(ms) if ms is not None else None
        if param.kind == "R":
            return float(text.rstrip("R"))
        return float(text.replace("_", ""))
    except ValueError:
        return None


def _measured_to_the_stop(name: str, value: Expr) -> tuple[str, str] | None:
    """How E081 names a strategy setting measured to the stop (in R) and what it measures; None otherwise."""
    if name == "size" and value.value == "risk_per_trade":
        return "risk_per_trade()", "the risk per trade"
    if name in ("take_profit", "trail_after") and value.kind == "R":
        return f"{name} in R", f"an R multiple ({name})"
    if name == "breakeven_after":
        return name, "breakeven_after (an R multiple)"
    return None


def _risk_condition_problem(cond: Expr, syntax: s.Expr) -> s.Expr | None:
    """The part of a risk condition the broker cannot evaluate, or None when all of it is a comparison.

    The broker evaluates comparisons of one metric with a fixed value, joined by and, or, not. The IR
    and the syntax are walked together so the problem is located at its own text (at the whole
    condition where they differ, as after a def is inlined).
    """
    if (cond.op, cond.value) in (("binary", "and"), ("binary", "or"), ("unary", "not")):
        parts: tuple[s.Expr, ...] = ()
        if isinstance(syntax, s.BinOp) and syntax.op == cond.value:
            parts = (syntax.left, syntax.right)
        elif isinstance(syntax, s.Unary) and syntax.op == cond.value:
            parts = (syntax.operand,)
        if len(parts) != len(cond.args):
            parts = (syntax,) * len(cond.args)
        for arg, part in zip(cond.args, parts, strict=True):
            found = _risk_condition_problem(arg, part)
            if found is not None:
                return found
        return None
    return None if risk_comparison(cond) is not None else syntax


def _int(node: Expr | None) -> int | None:
    """An integer constant's value, or None."""
    return int(node.value) if node is not None and isinstance(node.value, int | float) else None


def _param_names(node: Expr) -> set[str]:
    """The params an expression reads."""
    return {str(n.value) for n in _walk(node) if n.op == "param"}


def _metric_names(node: Expr | None) -> set[str]:
    """The metrics an expression reads."""
    return {str(n.value) for n in _walk(node) if n.op == "metric"} if node is not None else set()


def _walk(node: Expr) -> Iterator[Expr]:
    """Every node of an expression tree (iteratively: deep trees must not exhaust the stack)."""
    todo = [node]
    while todo:
        item = todo.pop()
        yield item
        todo.extend(item.args)


def _digest(*parts: object) -> str:
    """A content hash of a strategy's parts (names, node digests and params; never whole-tree reprs)."""
    return hashlib.blake2b(repr(parts).encode(), digest_size=10).hexdigest()
