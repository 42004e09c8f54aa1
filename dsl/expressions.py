"""Expression typing: syntax expressions → typed IR nodes (names, units, qualifiers, clocks and calls)."""

from __future__ import annotations

import functools
import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dsl import builtins as b
from dsl import syntax as s
from dsl.diagnostics import Span, did_you_mean
from dsl.ir import (
    Expr,
    evaluate,
)
from dsl.parser import ERROR_NAME
from dsl.render import format_value
from dsl.scopes import ERROR, Env, resolve_once, timeframe_literal
from dsl.types import NUMERIC, PLAIN, Qual, Type, divide, join_qual, multiply, struct, unify
from dsl.units import DURATION_MS, TIMEFRAMES, parse_duration, parse_symbol

if TYPE_CHECKING:
    from dsl.checker import FileChecker

# Setting-function categories that count as kinds of setting values.
_CATEGORIES = frozenset({"sizing", "slippage", "method", "objective", "walk_forward"})


# The largest magnitude of a number literal. Nothing a spec sets (lengths, prices, capital, durations) is
# larger, and refusing bigger literals at the literal keeps every later conversion (int(), float(), warm-up
# arithmetic, the version line) exact and finite, so none of them can overflow.
MAX_LITERAL = 1e15


def read_number(digits: str) -> float | int | None:
    """The value of a literal's digits (`1_000`, `2.5`): an int without a point; None past MAX_LITERAL."""
    clean = digits.replace("_", "")
    # Cheap length guard first: int() of thousands of digits is slow (and refused past 4,300 digits).
    if len(clean.split(".")[0]) > 16:
        return None
    value: float | int = float(clean) if "." in clean else int(clean)
    return value if abs(value) <= MAX_LITERAL else None


def shorten(text: str, width: int = 12) -> str:
    """`text` cut to `width` characters with an ellipsis, so a diagnostic never echoes a huge token."""
    return text if len(text) <= width else text[:width] + "…"


# The longest window a function may look back, bars: longer than any candle history (10 million 1m bars
# are 19 years), and refused in the checker so that no run tries to allocate it (E025 past it).
MAX_LENGTH = 10_000_000
# The most operations one def call may expand to when written out as a tree (E014 past it).
MAX_EXPANSION = 100_000
# The comparison operators.
_COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")


class Expressions:
    """Type-checks expressions into IR nodes under an environment."""

    def __init__(self, fc: FileChecker, *, quiet_types: bool = False) -> None:
        """Bind to a file checker."""
        self.fc = fc  # the file checker (reporter, scopes)
        self.rep = fc.rep  # diagnostics sink
        self.quiet_types = quiet_types  # only names are checked (a def body before its arguments are known)

    # ---------------------------------------------------------------- entry points

    def binding(self, name: str, env: Env) -> Expr:
        """The value of a strategy binding, resolved on demand (cycles are E014)."""
        ctx = env.strategy
        assert ctx is not None
        if name in ctx.done:
            return ctx.done[name]
        st = ctx.syntax[name]
        value = resolve_once(
            name, ctx.resolving, st.name_span, self.rep, lambda: self.check(st.value, Env(env.globals, ctx))
        )
        ctx.done[name] = value
        return value

    def condition(self, node: s.Expr, env: Env, what: str) -> Expr:
        """An expression that must be bool."""
        value = self.check(node, env)
        if value is not ERROR and value.kind not in ("bool", "na"):
            self.rep.add("E022", node.span, f"{what} must be bool; got {type_text(value)}")
            return ERROR
        return value

    def setting_value(self, st: s.Setting, spec: b.SettingSpec, env: Env) -> Expr:
        """The value of a setting, checked against the kinds and qualifier it accepts."""
        value = st.value
        # Enumerated words (fill: next_open) are not names.
        for kind in spec.kinds:
            if kind in b.ENUMS:
                word = value.id if isinstance(value, s.Name) else ""
                if word in b.ENUMS[kind]:
                    return Expr.make("const", word, kind=kind)
                self.rep.add(
                    "E026",
                    value.span,
                    f"{st.name} expects {spec.what}",
                    did_you_mean(word, b.ENUMS[kind]) if word else None,
                )
                return ERROR
        categories = [k for k in spec.kinds if k in _CATEGORIES]
        bare = b.SETTING_FUNCTIONS.get(value.id) if isinstance(value, s.Name) else None
        if bare is not None and bare.required == 0 and bare.category in categories:
            # A setting function without required arguments may be written bare (`method: grid`).
            value = s.Call(span=value.span, func=bare.name, func_span=value.span, args=(), kwargs=())
        if isinstance(value, s.Call) and value.func in b.SETTING_FUNCTIONS:
            sig = b.SETTING_FUNCTIONS[value.func]
            if sig.category not in categories:
                self.rep.add("E026", value.span, f"{st.name} expects {spec.what}")
                return ERROR
            return self.setting_call(value, sig, env)
        if categories and not [k for k in spec.kinds if k not in _CATEGORIES]:
            self.rep.add("E026", value.span, f"{st.name} expects {spec.what}")
            return ERROR
        node = self.check(value, env)
        if node is ERROR:
            return ERROR
        kinds = set(spec.kinds)
        ok = (
            node.kind in kinds
            or ("number" in kinds and node.kind in PLAIN)
            or ("int" in kinds and node.kind == "number" and node.integer)
            or (node.kind == "number" and node.qual == Qual.CONST and kinds & {"price", "qty", "money"})
        )
        if not ok:
            self.rep.add("E026", value.span, f"{st.name} expects {spec.what}; got {type_text(node)}")
            return ERROR
        allowed = {"const": Qual.CONST, "param": Qual.PARAM, "series": Qual.SERIES}[spec.qual]
        if node.qual > allowed:
            self.rep.add("E024", value.span, f"{st.name} must be fixed for the run; got {type_text(node)}")
            return ERROR
        return self._setting_range(st, node)

    def _setting_range(self, st: s.Setting, node: Expr) -> Expr:
        """Range checks of fixed numeric settings (E025)."""
        value = evaluate(node, {})
        if not isinstance(value, int | float) or isinstance(value, bool):
            return node
        limits = {
            "max_entries": (1, None),
            "fee": (0, 0.5),
            "maker_fee": (0, 0.5),
            "taker_fee": (0, 0.5),
            "max_volume": (0, 1),
            "slippage": (0, 1),
            "stop_loss": (0, 1),
            "capital": (0, None),
        }
        low, high = limits.get(st.name, (None, None))
        if low is not None and (
            value < low or (value == low and st.name in ("capital", "max_volume", "stop_loss"))
        ):
            self.rep.add(
                "E025",
                st.value.span,
                f"{st.name} must be > {format_value(low, node.kind)}"
                if st.name in ("capital", "max_volume", "stop_loss")
                else f"{st.name} must be >= {low}",
            )
            return ERROR
        if high is not None and value > high:
            # A bare number where a fraction is meant (`stop_loss: 3`) is almost always a missing %.
            hint = f"write {value}% for a percentage" if node.kind == "number" and high <= 1 else None
            self.rep.add("E025", st.value.span, f"{st.name} must be <= {format_value(high, node.kind)}", hint)
            return ERROR
        return node

    def setting_call(self, call: s.Call, sig: b.Signature, env: Env) -> Expr:
        """A sizing rule, slippage model, search method, objective or walk-forward scheme."""
        bound = self._bind(call, sig)
        if bound is None:
            return ERROR
        args: list[Expr] = []
        for arg in sig.args:
            given = bound.get(arg.name)
            if given is None:
                args.append(_default(arg))
                continue
            if arg.role == "metric":
                name = given.id if isinstance(given, s.Name) else ""
                if name not in b.RESULT_METRICS:
                    self.rep.add(
                        "E060",
                        given.span,
                        f"unknown metric '{name or 'expression'}'",
                        did_you_mean(name, b.RESULT_METRICS),
                    )
                    return ERROR
                args.append(Expr.make("const", name, kind="metric"))
                continue
            node = self.check(given, Env(env.globals, env.strategy, fixed=f"{arg.name} of {sig.name}()"))
            if node is ERROR or not self._fixed_arg(sig, arg, node, given):
                return ERROR
            args.append(node)
        return Expr.make(
            "call", sig.name, tuple(args), kind=sig.category, qual=max((a.qual for a in args), default=0)
        )

    def _fixed_arg(self, sig: b.Signature, arg: b.Arg, node: Expr, given: s.Expr) -> bool:
        """Check the unit and range of a fixed argument of a setting function."""
        want = {
            "percent": ("percent",),
            "duration": ("duration",),
            "qty": ("qty", "money", *PLAIN),
            "length": ("number",),
            "count": ("number",),
            "number": tuple(PLAIN),
        }[arg.role]
        if node.kind not in want or (arg.role in ("length", "count") and not node.integer):
            expected = {
                "percent": "a percentage",
                "duration": "a duration",
                "qty": "a quantity",
                "length": "a whole number",
                "count": "a whole number",
                "number": "a number",
            }[arg.role]
            self.rep.add(
                "E022", given.span, f"{arg.name} of {sig.name}() must be {expected}; got {type_text(node)}"
            )
            return False
        return self._positive(sig, arg, node, given)

    def _positive(self, sig: b.Signature, arg: b.Arg, node: Expr, given: s.Expr) -> bool:
        """Fixed arguments are finite, lengths within 1..MAX_LENGTH and counts >= 0 where known (E025)."""
        value = evaluate(node, self._defaults())
        if isinstance(value, float) and not math.isfinite(value):
            # A product of fixed values past a float's range (`a * a * a ...`) has no usable value.
            self.rep.add(
                "E025", given.span, f"{arg.name} of {sig.name}() must be a finite number; got {value}"
            )
            return False
        floor = 1 if arg.role == "length" else 0
        if arg.role in ("length", "count") and isinstance(value, int | float) and not value >= floor:
            self.rep.add("E025", given.span, f"{arg.name} of {sig.name}() must be >= {floor}")
            return False
        if arg.role == "length" and isinstance(value, int | float) and value > MAX_LENGTH:
            self.rep.add(
                "E025",
                given.span,
                f"{arg.name} of {sig.name}() must be <= {MAX_LENGTH:,} bars (no data is longer)",
            )
            return False
        return True

    def _defaults(self) -> dict[str, float]:
        """Nothing is known about params here; overridden per strategy by evaluate's None handling."""
        return {}

    # ---------------------------------------------------------------- the expression walk

    def check(self, node: s.Expr, env: Env) -> Expr:
        """Type-check an expression; ERROR after reporting a problem."""
        # One method per node type, `_` + the type's name in lower case, looked up once per type.
        route = _ROUTES.get(type(node))
        if route is None:
            route = _ROUTES[type(node)] = getattr(Expressions, "_" + type(node).__name__.lower())
        result: Expr = route(self, node, env)
        return result

    def _literal(self, node: s.Literal, env: Env) -> Expr:
        """Numbers, quantities with units, amounts, dates, strings, booleans and na."""
        text = node.text
        if node.kind == "number":
            value = self._number(node, text)
            if value is None:
                return ERROR
            return Expr.make("const", value, kind="number", integer=isinstance(value, int))
        if node.kind == "quantity":
            return self._quantity(node)
        if node.kind == "amount":
            number, currency = text.rsplit(" ", 1)
            amount = self._number(node, number)
            if amount is None:
                return ERROR
            return Expr.make("const", float(amount), kind="money", symbol=currency)
        if node.kind == "date":
            try:
                when = datetime.fromisoformat(text).replace(tzinfo=UTC)
            except ValueError:
                self.rep.add("E005", node.span, f"'{text}' is not a valid date", "write dates as 2024-01-31")
                return ERROR
            return Expr.make("const", int(when.timestamp() * 1000), kind="date", integer=True)
        if node.kind == "string":
            return Expr.make("const", text, kind="string")
        if node.kind == "bool":
            return Expr.make("const", text == "true", kind="bool")
        return Expr.make("const", None, kind="na")

    def _number(self, node: s.Literal, digits: str) -> float | int | None:
        """The value of a literal's digits; None (after E025 at the literal) when it is too large."""
        value = read_number(digits)
        if value is None:
            self.rep.add(
                "E025",
                node.span,
                f"the number {shorten(digits)} is too large",
                f"numbers in a spec are at most {MAX_LITERAL:.0e}",
            )
        return value

    def _quantity(self, node: s.Literal) -> Expr:
        """`2.5%`, `5bps`, `2R`, `45m`: a number glued to its unit."""
        text = node.text
        digits = text.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ%")
        suffix = text[len(digits) :]
        value = self._number(node, digits)
        if value is None:
            return ERROR
        number = float(value)
        if suffix == "%":
            return Expr.make("const", number / 100, kind="percent")
        if suffix == "bps":
            return Expr.make("const", number / 10_000, kind="bps")
        if suffix == "R":
            return Expr.make("const", number, kind="R")
        if suffix in DURATION_MS and number.is_integer():
            ms = parse_duration(f"{int(number)}{suffix}")
            return Expr.make("const", ms, kind="duration", integer=True)
        self.rep.add(
            "E005",
            node.span,
            f"'{text}' is not a number, percentage or duration",
            "units: %, bps, R, ms, s, m, h, d, w",
        )
        return ERROR

    def _name(self, node: s.Name, env: Env) -> Expr:
        """Resolve a name: def argument, binding, param, const, source, trade state or metric."""
        name = node.id
        if name == ERROR_NAME:
            return ERROR
        if name in env.locals:
            return env.locals[name]
        ctx = env.strategy
        if ctx is not None and name in ctx.syntax and not env.fixed:
            return self.binding(name, env)
        if ctx is not None and name in ctx.params:
            param = ctx.params[name]
            return Expr.make("param", name, kind=param.kind, qual=Qual.PARAM, integer=param.integer)
        if ctx is not None and name in ctx.param_spans:
            return ERROR  # a param whose own declaration already failed
        const = self._global_const(name, env)
        if const is not None:
            return const
        if env.metrics is not None:
            return self._metric(node, env)
        series = b.SOURCES.get(name) or b.TRADE_STATE.get(name)
        if series is not None:
            if env.fixed:
                self.rep.add("E024", node.span, f"{env.fixed} must be fixed; '{name}' changes every bar")
                return ERROR
            if ctx is None:
                self.rep.add(
                    "E017", node.span, f"'{name}' is a series and is only available inside a strategy"
                )
                return ERROR
            if name in b.TRADE_STATE:
                ctx.trade_state = True
                return Expr.make("state", name, kind=series, qual=Qual.SERIES)
            return Expr.make("source", name, kind=series, qual=Qual.SERIES)
        if ctx is not None and name in ctx.syntax and env.fixed:
            self.rep.add("E024", node.span, f"{env.fixed} must be fixed; '{name}' is a series")
            return ERROR
        self.rep.add("E010", node.span, f"undefined name '{name}'", did_you_mean(name, self._visible(env)))
        return ERROR

    def _global_const(self, name: str, env: Env) -> Expr | None:
        """A const visible from `env`, checking it on first use."""
        scope = env.globals
        if name in scope.const_syntax:
            return self.fc.resolve_const(name, scope)
        return scope.consts.get(name)

    def _metric(self, node: s.Name, env: Env) -> Expr:
        """A risk or result metric inside a risk rule or an optimize requirement."""
        assert env.metrics is not None
        name = node.id
        if name in env.metrics:
            # Risk metrics change every bar; a run's result metrics are fixed once the run is over.
            qual = Qual.PARAM if env.metric_scope == "optimize" else Qual.SERIES
            return Expr.make("metric", name, kind=env.metrics[name], qual=qual)
        if env.metric_scope == "optimize":
            self.rep.add("E060", node.span, f"unknown metric '{name}'", did_you_mean(name, env.metrics))
        elif name in b.SLEEVE_METRICS:
            self.rep.add(
                "E052", node.span, f"'{name}' is a per-sleeve metric", "use it inside 'risk per sleeve:'"
            )
        else:
            self.rep.add("E052", node.span, f"unknown risk metric '{name}'", did_you_mean(name, env.metrics))
        return ERROR

    def _visible(self, env: Env) -> list[str]:
        """Every name visible from `env`, for did-you-mean hints."""
        names = [*env.locals, *env.globals.consts, *env.globals.const_syntax, *b.SOURCES, *b.TRADE_STATE]
        if env.strategy is not None:
            names += [*env.strategy.syntax, *env.strategy.params]
        return names

    def _call(self, node: s.Call, env: Env) -> Expr:
        """A call of a def (inlined), bars(), or a built-in series function."""
        name = node.func
        if name in env.globals.defs:
            return self._inline(node, env)
        if name == b.BARS_FUNCTION:
            return self._bars(node, env)
        sig = b.SERIES_FUNCTIONS.get(name)
        if sig is None:
            setting = b.SETTING_FUNCTIONS.get(name)
            if setting is not None:
                self.rep.add(
                    "E017",
                    node.span,
                    f"{name}() is a {setting.category.replace('_', '-')} rule and only "
                    "allowed as the value of a setting",
                )
                return ERROR
            known = [*b.SERIES_FUNCTIONS, *b.SETTING_FUNCTIONS, *env.globals.defs, b.BARS_FUNCTION]
            self.rep.add("E011", node.func_span, f"unknown function '{name}'", did_you_mean(name, known))
            return ERROR
        if env.fixed:
            self.rep.add("E024", node.span, f"{env.fixed} must be fixed; {name}() is a series")
            return ERROR
        bound = self._bind(node, sig)
        if bound is None:
            return ERROR
        args: list[Expr] = []
        series: list[Expr] = []
        for arg in sig.args:
            given = bound.get(arg.name)
            value = _default(arg) if given is None else self.check(given, env)
            if value is ERROR:
                return ERROR
            if given is not None and not self._series_arg(sig, arg, value, given):
                return ERROR
            args.append(value)
            if arg.role in ("series", "cond"):
                series.append(value)
        # A "same" result takes the unit of the first value argument (valuewhen's source, not its cond).
        values = [a for a, spec in zip(args, sig.args, strict=True) if spec.role == "series"]
        first = values[0] if values else None
        kind = sig.result
        if kind == "same":
            kind = first.kind if first is not None and first.kind != "na" else "number"
        clock = _clock(series) if not sig.implicit else None
        if sig.fields:
            t = struct(kind, Qual.SERIES, first.kind if first is not None else "price")
            return Expr.make(
                "call", name, tuple(args), kind=kind, qual=Qual.SERIES, clock=clock, symbol=_fields_key(t)
            )
        return Expr.make(
            "call",
            name,
            tuple(args),
            kind=kind,
            qual=Qual.SERIES,
            clock=clock,
            integer=sig.integer,
        )

    def _series_arg(self, sig: b.Signature, arg: b.Arg, value: Expr, given: s.Expr) -> bool:
        """Check one argument of a series function against its role."""
        if self.quiet_types or value.kind == "na":
            return True
        if arg.role == "cond":
            if value.kind != "bool":
                self.rep.add(
                    "E022", given.span, f"{arg.name} of {sig.name}() must be bool; got {type_text(value)}"
                )
                return False
            return True
        if value.kind not in NUMERIC:
            self.rep.add(
                "E022",
                given.span,
                f"{arg.name} of {sig.name}() must be a number series; got {type_text(value)}",
            )
            return False
        if arg.role in ("length", "count", "number"):
            if value.qual > Qual.PARAM:
                self.rep.add("E024", given.span, f"{arg.name} of {sig.name}() must be fixed for the run")
                return False
            if arg.role != "number" and not (value.kind == "number" and value.integer):
                self.rep.add(
                    "E022",
                    given.span,
                    f"{arg.name} of {sig.name}() must be a whole number; got {type_text(value)}",
                )
                return False
            return self._positive(sig, arg, value, given)
        return True

    def _bind(self, node: s.Call, sig: b.Signature) -> dict[str, s.Expr] | None:
        """Match a call's arguments to a signature (E020 arity, E021 unknown keyword)."""
        names = [a.name for a in sig.args]
        total = len(node.args) + len(node.kwargs)
        if len(node.args) > len(names) or total < sig.required:
            count = f"{sig.required}" if sig.required == len(names) else f"{sig.required} to {len(names)}"
            plural = "argument" if len(names) == 1 and sig.required == 1 else "arguments"
            self.rep.add(
                "E020", node.span, f"{sig.name}() takes {count} {plural} ({', '.join(names)}); got {total}"
            )
            return None
        bound: dict[str, s.Expr] = dict(zip(names, node.args, strict=False))
        for kw in node.kwargs:
            if kw.name not in names:
                self.rep.add(
                    "E021",
                    kw.span,
                    f"{sig.name}() has no parameter '{kw.name}'",
                    did_you_mean(kw.name, names),
                )
                return None
            if kw.name in bound:
                self.rep.add("E021", kw.span, f"{sig.name}() got '{kw.name}' twice")
                return None
            bound[kw.name] = kw.value
        missing = [a.name for a in sig.args if a.default is None and a.name not in bound]
        if missing:
            self.rep.add("E020", node.span, f"{sig.name}() is missing '{missing[0]}'")
            return None
        return bound

    def _inline(self, node: s.Call, env: Env) -> Expr:
        """Inline a call of a pure def: its body checked with the arguments bound (recursion is E014)."""
        st, home = env.globals.defs[node.func]
        if node.func in env.inlining:
            chain = [*env.inlining[env.inlining.index(node.func) :], node.func]
            self.rep.add("E014", node.span, f"circular definition: {' → '.join(chain)}")
            return ERROR
        if node.kwargs or len(node.args) != len(st.params):
            self.rep.add(
                "E020",
                node.span,
                f"{st.name}() takes {len(st.params)} arguments "
                f"({', '.join(st.params)}); got {len(node.args) + len(node.kwargs)}",
            )
            return ERROR
        values = [self.check(a, env) for a in node.args]
        if any(v is ERROR for v in values):
            return ERROR
        # The body's value depends only on the arguments and on the context it is checked in.
        key = (
            node.func,
            id(home),
            tuple(v.digest for v in values),
            id(env.strategy),
            env.inlining,
            env.metric_scope,
            env.fixed,
            self.quiet_types,
        )
        done = self.fc.inlined.get(key)
        if done is not None:
            return done
        inner = Env(
            home,
            env.strategy,
            dict(zip(st.params, values, strict=True)),
            (*env.inlining, node.func),
            env.metrics,
            env.metric_scope,
            env.fixed,
        )
        value = self.check(st.body, inner)
        if value is not ERROR and self._expanded_size(value) > MAX_EXPANSION:
            # Shared nodes keep the check linear, but written out as a tree (an IR dump, a rendering)
            # the expression would be exponential: refuse it where the def is called.
            self.rep.add(
                "E014",
                node.span,
                f"{node.func}() expands to more than {MAX_EXPANSION:,} operations",
                "compute the repeated part once as a binding and use its name",
            )
            value = ERROR
        self.fc.inlined[key] = value
        return value

    def _expanded_size(self, node: Expr) -> int:
        """The number of nodes of `node` written out as a tree (memoised by digest, capped)."""
        sizes = self.fc.expanded
        size = sizes.get(node.digest)
        if size is None:
            size = min(1 + sum(self._expanded_size(a) for a in node.args), MAX_EXPANSION + 1)
            sizes[node.digest] = size
        return size

    def _bars(self, node: s.Call, env: Env) -> Expr:
        """`bars(tf)` or `bars("EXCHANGE:BASE/QUOTE", tf)`: the last closed candles of another clock."""
        ctx = env.strategy
        if ctx is None or env.fixed:
            self.rep.add("E017", node.span, "bars() is only available inside a strategy")
            return ERROR
        if node.kwargs or not 1 <= len(node.args) <= 2:
            self.rep.add(
                "E020",
                node.span,
                f"bars() takes 1 to 2 arguments (symbol, timeframe); got {len(node.args) + len(node.kwargs)}",
            )
            return ERROR
        symbol = None
        if len(node.args) == 2:
            first = node.args[0]
            text = first.text if isinstance(first, s.Literal) and first.kind == "string" else ""
            if parse_symbol(text) is None:
                self.rep.add(
                    "E037", first.span, f"'{text or 'this value'}' is not of the form \"EXCHANGE:BASE/QUOTE\""
                )
                return ERROR
            symbol = text
        tf_node = node.args[-1]
        tf = timeframe_literal(tf_node, self.rep)
        if tf is None:
            return ERROR
        ctx.timeframes.add(tf)
        ctx.bars_spans.append((tf, tf_node.span))
        clock = None if TIMEFRAMES[tf] == ctx.base_ms and symbol is None else tf
        return Expr.make("bars", None, kind="bars", qual=Qual.SERIES, clock=clock, symbol=symbol)

    def _field(self, node: s.Field, env: Env) -> Expr:
        """`x.name` on a struct: a bars source, or one output of a struct-valued built-in."""
        obj = self.check(node.obj, env)
        if obj is ERROR:
            return ERROR
        fields = dict(_fields_of(obj))
        if not fields:
            self.rep.add("E022", node.name_span, f"{type_text(obj)} has no fields")
            return ERROR
        if node.name not in fields:
            self.rep.add(
                "E010",
                node.name_span,
                f"{obj.kind} has no field '{node.name}'",
                did_you_mean(node.name, fields) or f"fields: {', '.join(fields)}",
            )
            return ERROR
        if obj.op == "bars":
            return Expr.make(
                "source",
                node.name,
                kind=fields[node.name],
                qual=Qual.SERIES,
                clock=obj.clock,
                symbol=obj.symbol,
            )
        return Expr.make(
            "field", node.name, (obj,), kind=fields[node.name], qual=Qual.SERIES, clock=obj.clock
        )

    def _offset(self, node: s.Offset, env: Env) -> Expr:
        """`x[n]`: n fixed, whole and >= 0 (a negative offset would read the future: E030)."""
        obj = self.check(node.obj, env)
        index = self.check(
            node.index, Env(env.globals, env.strategy, env.locals, env.inlining, fixed="an offset")
        )
        if obj is ERROR or index is ERROR:
            return ERROR
        if obj.kind not in NUMERIC and obj.kind != "bool":
            self.rep.add(
                "E022", node.obj.span, f"only a number or bool series can be offset; got {type_text(obj)}"
            )
            return ERROR
        if index.kind != "number" or not index.integer:
            self.rep.add(
                "E022", node.index.span, f"an offset must be a whole number of bars; got {type_text(index)}"
            )
            return ERROR
        value = evaluate(index, {})
        if isinstance(value, int | float) and value < 0:
            shown = source_text(self.fc.session.sources.get(self.rep.file, ""), node.span) or "x[-1]"
            self.rep.add("E030", node.span, f"{shown} would read the next bar; offsets must be >= 0")
            return ERROR
        return Expr.make(
            "offset",
            None,
            (obj, index),
            kind=obj.kind,
            qual=max(obj.qual, Qual.SERIES),
            integer=obj.integer,
            clock=obj.clock,
        )

    def _binop(self, node: s.BinOp, env: Env) -> Expr:
        """Arithmetic, comparison and logic, with unit rules."""
        left, right = self.check(node.left, env), self.check(node.right, env)
        if left is ERROR or right is ERROR:
            return ERROR
        op = node.op
        qual = join_qual(_t(left), _t(right))
        clock = _clock([left, right])
        if op in ("and", "or"):
            for side, value in ((node.left, left), (node.right, right)):
                if value.kind not in ("bool", "na") and not self.quiet_types:
                    self.rep.add("E022", side.span, f"'{op}' needs bool operands; got {type_text(value)}")
                    return ERROR
            return Expr.make("binary", op, (left, right), kind="bool", qual=qual, clock=clock)
        if self.quiet_types and "na" in (left.kind, right.kind):
            return Expr.make("const", None, kind="na", qual=qual)
        for side, value in ((node.left, left), (node.right, right)):
            if (
                value.kind not in NUMERIC
                and value.kind != "na"
                and not (op in ("==", "!=") and value.kind == "bool")
            ):
                hint = self._chain_hint(node) if side is node.left else None
                self.rep.add("E022", side.span, f"'{op}' needs numbers; got {type_text(value)}", hint)
                return ERROR
        if op in _COMPARISONS:
            if unify(_t(left), _t(right), compare=True) is None:
                hint = self._scale_hint(node.left, left, op, node.right, right)
                self.rep.add("E023", node.span, f"cannot compare {left.kind} with {right.kind}", hint)
                return ERROR
            return Expr.make("binary", op, (left, right), kind="bool", qual=qual, clock=clock)
        kind = _arith_kind(op, left, right)
        if kind is None:
            verb = {"+": "add", "-": "subtract", "*": "multiply", "/": "divide"}[op]
            joiner = {"+": "and", "-": "and", "*": "by", "/": "by"}[op]
            hint = None
            if op in "+-" and left.kind == "price" and right.kind == "percent":
                # Taking a percentage off a price is a product: the most common slip of this kind.
                sign = "-" if op == "-" else "+"
                product = f"{self._text(node.left)} * (1 {sign} {self._text(node.right)})"
                hint = f"to move a price by a percentage write {product}"
            self.rep.add("E023", node.span, f"cannot {verb} {left.kind} {joiner} {right.kind}", hint)
            return ERROR
        if op == "/" and right.op == "const" and right.value == 0:
            # A fixed division by zero has no value: say so here rather than carry a NaN into a length.
            self.rep.add("E025", node.right.span, "division by zero")
            return ERROR
        integer = op in "+-*" and left.integer and right.integer
        result = Expr.make("binary", op, (left, right), kind=kind, qual=qual, clock=clock, integer=integer)
        if qual == Qual.CONST:
            # Fixed arithmetic has a value now; one past a float's range (`a * a * ... * a`) has none.
            fixed = evaluate(result, {}, self.fc.const_values)
            if isinstance(fixed, float) and not math.isfinite(fixed):
                self.rep.add("E025", node.span, f"this fixed value is out of range ({fixed})")
                return ERROR
        return result

    def _text(self, node: s.Expr) -> str:
        """The source text of an expression as written (for hints)."""
        return source_text(self.fc.session.sources.get(self.rep.file, ""), node.span)

    def _scale_hint(self, a: s.Expr, left: Expr, op: str, b: s.Expr, right: Expr) -> str | None:
        """For `rsi(close, 14) > 75%` (points with a percentage): the comparison on the 0–100 scale."""
        if {left.kind, right.kind} != {"points", "percent"}:
            return None
        scaled = a if left.kind == "points" else b
        percent = right if right.kind == "percent" else left
        fixed = percent.op == "const" and isinstance(percent.value, int | float)
        if not fixed or not isinstance(scaled, s.Name | s.Call | s.Field):
            # An expression's text may not stand alone (its span leaves out brackets): say it in words.
            return "rsi, stoch and adx are on a 0–100 scale: compare them with a number such as 75, not 75%"
        name = self._text(scaled)
        number = format_value(float(percent.value) * 100, "number")  # type: ignore[arg-type]
        sides = (name, number) if left.kind == "points" else (number, name)
        return f"{name} is on a 0–100 scale: write `{sides[0]} {op} {sides[1]}`"

    def _chain_hint(self, node: s.BinOp) -> str | None:
        """For `30 < r < 70` (a comparison of a comparison): the `and` form it means, else None."""
        inner = node.left
        if not (isinstance(inner, s.BinOp) and inner.op in _COMPARISONS and node.op in _COMPARISONS):
            return None
        first, middle, last = (self._text(n) for n in (inner.left, inner.right, node.right))
        return f"write {first} {inner.op} {middle} and {middle} {node.op} {last}"

    def _cross(self, node: s.Cross, env: Env) -> Expr:
        """`a crosses above/below b`: a one-bar bool pulse on the faster clock."""
        left, right = self.check(node.left, env), self.check(node.right, env)
        if left is ERROR or right is ERROR:
            return ERROR
        for side, value in ((node.left, left), (node.right, right)):
            if value.kind not in NUMERIC and value.kind != "na":
                self.rep.add("E022", side.span, f"'crosses' needs number series; got {type_text(value)}")
                return ERROR
        if unify(_t(left), _t(right), compare=True) is None:
            op = f"crosses {node.direction}"
            hint = self._scale_hint(node.left, left, op, node.right, right)
            self.rep.add("E023", node.span, f"cannot compare {left.kind} with {right.kind}", hint)
            return ERROR
        return Expr.make(
            "cross", node.direction, (left, right), kind="bool", qual=Qual.SERIES, clock=_clock([left, right])
        )

    def _unary(self, node: s.Unary, env: Env) -> Expr:
        """`not x` (bool) or `-x` (number)."""
        value = self.check(node.operand, env)
        if value is ERROR:
            return ERROR
        if node.op == "not":
            if value.kind not in ("bool", "na") and not self.quiet_types:
                self.rep.add("E022", node.operand.span, f"'not' needs a bool; got {type_text(value)}")
                return ERROR
            return Expr.make("unary", "not", (value,), kind="bool", qual=value.qual, clock=value.clock)
        if value.kind not in NUMERIC and value.kind != "na":
            self.rep.add("E022", node.operand.span, f"'-' needs a number; got {type_text(value)}")
            return ERROR
        if value.op == "const" and isinstance(value.value, int | float) and not isinstance(value.value, bool):
            return Expr.make(
                "const", -value.value, kind=value.kind, integer=value.integer, symbol=value.symbol
            )
        return Expr.make(
            "unary", "-", (value,), kind=value.kind, qual=value.qual, clock=value.clock, integer=value.integer
        )

    def _ifelse(self, node: s.IfElse, env: Env) -> Expr:
        """`a if cond else b`: cond bool, branches of one unit."""
        cond = self.condition(node.cond, env, "the condition of 'if'")
        then, other = self.check(node.then, env), self.check(node.other, env)
        if ERROR in (cond, then, other):
            return ERROR
        kind = (
            unify(_t(then), _t(other))
            if then.kind != "bool"
            else ("bool" if other.kind in ("bool", "na") else None)
        )
        if kind is None:
            self.rep.add("E023", node.span, f"the branches of 'if' differ: {then.kind} and {other.kind}")
            return ERROR
        return Expr.make(
            "if",
            None,
            (cond, then, other),
            kind=kind,
            qual=join_qual(_t(cond), _t(then), _t(other)),
            clock=_clock([cond, then, other]),
        )


def type_text(node: Expr) -> str:
    """A node's type as shown in messages."""
    fields = _fields_of(node)
    kind = "int" if node.integer and node.kind == "number" else node.kind
    if fields:
        kind = node.kind
    return f"series<{kind}>" if node.qual == Qual.SERIES else kind


def _t(node: Expr) -> Type:
    """The static type of an IR node (a bare number literal is adaptable)."""
    return _type(node.kind, node.qual, node.integer, node.op == "const" and node.kind == "number")


@functools.cache
def _type(kind: str, qual: int, integer: bool, adaptable: bool) -> Type:
    """A static type (types are immutable and few: each is built once)."""
    return Type(kind, Qual(qual), integer, adaptable=adaptable)


def _arith_kind(op: str, left: Expr, right: Expr) -> str | None:
    """The unit kind of `left op right`, or None when the units do not combine."""
    if op in "+-":
        return unify(_t(left), _t(right))
    a = left.kind if left.kind != "na" else "number"
    z = right.kind if right.kind != "na" else "number"
    return multiply(a, z) if op == "*" else divide(a, z)


def _clock(nodes: list[Expr]) -> str | None:
    """The clock of a value computed from `nodes`: the base clock unless every series shares a slower one."""
    clocks = {n.clock for n in nodes if n.qual == Qual.SERIES}
    return clocks.pop() if len(clocks) == 1 else None


def _fields_key(t: Type) -> str:
    """Struct field kinds packed into the node (so a field access knows its unit)."""
    return ",".join(f"{k}:{v}" for k, v in t.fields)


def _fields_of(node: Expr) -> tuple[tuple[str, str], ...]:
    """The fields of a struct-valued node."""
    if node.kind == "bars":
        return struct("bars", Qual.SERIES).fields
    if node.op == "call" and node.symbol and ":" in node.symbol:
        return tuple(tuple(part.split(":", 1)) for part in node.symbol.split(","))  # type: ignore[misc]
    return ()


def _default(arg: b.Arg) -> Expr:
    """The IR constant of an omitted argument's default."""
    value = arg.default
    if isinstance(value, str) and value.endswith("%"):
        return Expr.make("const", float(value[:-1]) / 100, kind="percent")
    if isinstance(value, int) and not isinstance(value, bool):
        return Expr.make("const", value, kind="number", integer=True)
    return Expr.make("const", value, kind="number")


def source_text(source: str, span: Span) -> str:
    """The text of a one-line span (the rule as written, for risk events and messages)."""
    lines = source.splitlines()
    if not 1 <= span.line <= len(lines):
        return ""
    line = lines[span.line - 1]
    end = span.end_col - 1 if span.end_line == span.line else len(line)
    return line[span.col - 1 : end].split("#", 1)[0].strip()


# `Expressions.check`'s method for each syntax node type, filled in as types are met.
_ROUTES: dict[type, Any] = {}
