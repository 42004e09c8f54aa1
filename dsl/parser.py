"""The parser: .strat text → syntax tree with spans, plus syntax diagnostics (lark is used here and in lalr).

A valid text is read in one pass by `dsl.lalr` (lark's tables, our own tokenizer and node building); lark
itself parses only a text with an error, for the exception its diagnostic is made from.

Parsing never stops at the first error. A text with errors is read one top-level statement at a time: each
syntax error is reported, the offending lines are replaced by a placeholder of the same indentation (or the
indentation is repaired), and only that statement is parsed again, so that one run reports every syntax
error of a file in time linear in its size, and the checker still sees everything else.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.indenter import Indenter

from dsl import lalr
from dsl import syntax as s
from dsl.builtins import KEYWORDS
from dsl.diagnostics import Reporter, Span
from dsl.lalr import BRACKETS as _BRACKETS
from dsl.lalr import ERROR_NAME
from dsl.resources import grammar_path

# Most syntax errors reported per file before giving up on the rest.
MAX_SYNTAX_ERRORS = 50
# Deepest bracket nesting accepted; deeper input would exhaust the recursion of later passes.
MAX_NESTING = 64
# The largest spec read, characters: a bigger file is refused before anything parses it.
MAX_FILE_CHARS = 2_000_000
# The longest line read, characters: a longer one is refused (and skipped) where it stands.
MAX_LINE_CHARS = 10_000
# String literals, blanked when statements are split (a bracket or '#' inside a string is text).
_STRINGS = re.compile(r'"[^"\n]*"')
# How terminals are named in messages.
_DISPLAY = {
    "NAME": "a name",
    "NUMBER": "a number",
    "QUANTITY": "a value with a unit",
    "AMOUNT": "an amount",
    "DATE": "a date",
    "STRING": "a string",
    "_NL": "end of line",
    "_INDENT": "an indented block",
    "_DEDENT": "end of block",
    "$END": "end of file",
    "COMP_OP": "a comparison",
    "ADD_OP": "'+' or '-'",
    "MUL_OP": "'*' or '/'",
    "RANGE": "'..'",
    "PER_SLEEVE": "'per sleeve'",
}
# Tokens that end a statement: an unclosed bracket is reported when the parser meets one of them.
_ENDINGS = frozenset({"_NL", "_DEDENT", "$END"})
# Keywords that open a named block, for the "expected ':' after strategy name" message and repair.
_HEADERS = ("strategy", "portfolio", "optimize", "risk")
# Terminals that may start an expression: when all are expected, the message says "an expression".
_EXPRESSION_STARTS = frozenset({"NAME", "NUMBER", "QUANTITY", "STRING", "LPAR"})
# A block header whose only fault is the missing colon (`strategy foo`, `execution`).
_HEADER_NO_COLON = re.compile(r"^\s*((strategy|portfolio|optimize|risk)\s+)?[A-Za-z_]\w*\s*(#.*)?$")
# A line that names what it defines: `name = ...`, `name ...` (missing `=`) or `param name ...`.
_NAMED_LINE = re.compile(r"^\s*(param\s+)?([A-Za-z_]\w*)\b(?!\s*[:(.\[])")


class SyntaxProblem(Exception):
    """An indentation or bracket problem found by the post-lexer, with its position."""

    def __init__(
        self, code: str, message: str, line: int, col: int, hint: str | None = None, indent: int | None = None
    ) -> None:
        """Record the problem and its position."""
        super().__init__(message)
        self.code = code  # diagnostic code (E002 or E003)
        self.message = message  # plain-words description
        self.line = line  # 1-based line of the problem
        self.col = col  # 1-based column of the problem
        self.hint = hint  # optional suggestion
        self.indent = indent  # for E003: the indentation (spaces) the repair should give the line


class _StratIndenter(Indenter):
    """Lark's indenter with positioned errors and a record of the brackets still open."""

    NL_type = "_NL"  # newline terminal
    OPEN_PAREN_types: ClassVar[list[str]] = list(_BRACKETS)  # opening bracket terminals
    CLOSE_PAREN_types: ClassVar[list[str]] = list(_BRACKETS.values())  # closing bracket terminals
    INDENT_type = "_INDENT"  # injected indentation token
    DEDENT_type = "_DEDENT"  # injected dedentation token
    tab_len = 8  # unused: tabs are rejected before parsing

    def __init__(self) -> None:
        """Start with no brackets open."""
        super().__init__()
        self.open_brackets: list[Token] = []  # tokens of the brackets opened and not yet closed

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        """Reset the state for a new text and post-process its tokens."""
        self.open_brackets = []
        return super().process(stream)

    def handle_NL(self, token: Token) -> Iterator[Token]:
        """Emit indent/dedent tokens, raising E003 with a position when a dedent matches no block."""
        if self.open_brackets:
            return
        yield token
        indent = len(token.rsplit("\n", 1)[1])
        if indent > self.indent_level[-1]:
            self.indent_level.append(indent)
            yield Token.new_borrow_pos(self.INDENT_type, "", token)
            return
        inner = self.indent_level[-1]
        while indent < self.indent_level[-1]:
            inner = self.indent_level.pop()
            yield Token.new_borrow_pos(self.DEDENT_type, "", token)
        if indent != self.indent_level[-1]:
            raise SyntaxProblem(
                "E003",
                f"indentation of {indent} spaces matches no enclosing block",
                token.end_line or token.line or 1,
                1,
                f"use {inner} spaces to stay in the block above, or {self.indent_level[-1]} to end it",
                indent=inner,
            )

    def _process(self, stream: Iterator[Token]) -> Iterator[Token]:
        """Track brackets (reporting an unmatched closing one) and indentation, token by token."""
        token = None
        for token in stream:
            if token.type == self.NL_type:
                yield from self.handle_NL(token)
                continue
            if token.type in _BRACKETS:
                self.open_brackets.append(token)
            elif token.type in self.CLOSE_PAREN_types:
                if not self.open_brackets or _BRACKETS[self.open_brackets[-1].type] != token.type:
                    raise SyntaxProblem(
                        "E002", f"'{token}' closes no open bracket", token.line or 1, token.column or 1
                    )
                self.open_brackets.pop()
            yield token
        # Close every block still open at the end of the text.
        while len(self.indent_level) > 1:
            self.indent_level.pop()
            yield Token.new_borrow_pos(self.DEDENT_type, "", token) if token else Token(self.DEDENT_type, "")


@dataclass
class _Parser:
    """A lark parser with its indenter; the indenter keeps state, so calls are serialized by a lock."""

    lark: Lark  # the LALR parser
    indenter: _StratIndenter  # its post-lexer
    lock: threading.Lock  # one parse at a time (the reload watcher runs in another thread)
    display: dict[str, str]  # terminal name → how messages show it
    tables: lalr.Tables  # the same grammar's tables for the fast path


@functools.cache
def _parser() -> _Parser:
    """Build (once) the LALR parser from grammar.lark."""
    indenter = _StratIndenter()
    lark = Lark(
        grammar_path().read_text(encoding="utf-8"),
        parser="lalr",
        lexer="basic",
        postlex=indenter,
        strict=True,
        propagate_positions=True,
        maybe_placeholders=True,
        cache=True,
    )
    # Anonymous terminals (keywords, punctuation) are shown as their text, never as "__ANON_0".
    display = dict(_DISPLAY)
    for term in lark.terminals:
        if term.name not in display and term.pattern.type == "str":
            display[term.name] = f"'{term.pattern.value}'"
    return _Parser(lark, indenter, threading.Lock(), display, lalr.tables(lark))


def grammar() -> Lark:
    """A fresh, uncached lark parser of the grammar (for grammar-driven fuzzing in tests)."""
    return Lark(
        grammar_path().read_text(encoding="utf-8"),
        parser="lalr",
        lexer="basic",
        postlex=_StratIndenter(),
        strict=True,
        propagate_positions=True,
        maybe_placeholders=True,
    )


def parse(text: str, path: str, reporter: Reporter) -> s.Module:
    """Parse `text` into a module, reporting every syntax error to `reporter`."""
    if len(text) > MAX_FILE_CHARS:
        size = f"{len(text) / 1e6:.1f} million characters"
        reporter.add("E001", Span.point(1, 1), f"the file has {size}; a spec may have at most 2 million")
        return s.Module(path, (), unread=True)
    lines = _prescan(text.split("\n"), reporter)
    parser = _parser()
    # The fast path reads a valid text in one pass.
    try:
        return s.Module(path, tuple(lalr.parse("\n".join(lines) + "\n", parser.tables)))
    except lalr.ParseFailed:
        pass
    except RecursionError:
        reporter.add("E001", Span.point(1, 1), "the file is nested too deeply to read")
        return s.Module(path, (), unread=True)
    # A text with errors: every top-level statement is read on its own, so a repair re-reads only the
    # statement it mends (linear in the file, not a re-parse of the whole file per error).
    budget = [MAX_SYNTAX_ERRORS]  # syntax errors that may still be reported
    for first, last in _statements(lines):
        # A statement that reads on its own (at line 1: cheap) needs no repair.
        try:
            lalr.parse("\n".join(lines[first:last]) + "\n", parser.tables)
            continue
        except (lalr.ParseFailed, RecursionError):
            pass
        if not _recover(lines, first, last, parser, reporter, budget):
            reporter.add(
                "E001", Span.point(1, 1), f"more than {MAX_SYNTAX_ERRORS} syntax errors; stopped reading"
            )
            return s.Module(path, (), unread=True)
    # Every statement reads now: one more pass builds them all at their real lines.
    return s.Module(path, tuple(lalr.parse("\n".join(lines) + "\n", parser.tables)))


def _statements(lines: list[str]) -> Iterator[tuple[int, int]]:
    """The line ranges [first, last) of the top-level statements (a block with its body is one).

    A statement starts at a line with no indentation outside brackets; comments, blank lines and string
    contents are not looked at for that.
    """
    first, depth = 0, 0
    for i, line in enumerate(lines):
        code = _STRINGS.sub('""', line).split("#", 1)[0]
        if i > first and depth == 0 and code.strip() and not code[0].isspace():
            yield first, i
            first = i
        depth = max(depth + sum(code.count(c) for c in "([{") - sum(code.count(c) for c in ")]}"), 0)
    yield first, len(lines)


def _recover(
    lines: list[str], first: int, last: int, parser: _Parser, reporter: Reporter, budget: list[int]
) -> bool:
    """Mend lines [first, last) until they read as statements, reporting each error; False past the budget.

    `lines` is mended in place. The statement is parsed at its real line numbers (the lines before it are
    given as empty lines, which the tokenizer skips as one run). Every repair changes the text, so the loop
    ends; an error on a line that already holds a repair's placeholder is that repair's echo, not the
    user's mistake, and is not reported.
    """
    lead = "\n" * first
    while True:
        source = lead + "\n".join(lines[first:last]) + "\n"
        try:
            lalr.parse(source, parser.tables)
            return True
        except lalr.ParseFailed:
            pass
        except RecursionError:
            reporter.add("E001", Span.point(first + 1, 1), "the statement is nested too deeply to read")
            lines[first:last] = [""] * (last - first)
            return True
        scratch = Reporter(reporter.file)
        try:
            with parser.lock:
                parser.lark.parse(source)
        except SyntaxProblem as problem:
            line = min(max(problem.line, first + 1), last)
            # A bad indentation is underlined over the indentation itself.
            width = _indent(lines[line - 1]) if problem.indent is not None else 1
            scratch.add(problem.code, Span.point(line, problem.col, width), problem.message, problem.hint)
            code = problem.code
            if problem.indent is not None:
                mended = list(lines)
                mended[line - 1] = " " * problem.indent + lines[line - 1].lstrip(" ")
            else:
                mended = _repair(lines, line, code, parser.indenter.open_brackets)
        except UnexpectedInput as error:
            line, code = _report(error, lines, parser, scratch)
            line = min(max(line, first + 1), last)
            mended = _repair(lines, line, code, parser.indenter.open_brackets)
        else:
            raise AssertionError(f"the fast parser rejects a text lark accepts:\n{source}")
        echo = ERROR_NAME in lines[line - 1]
        if not echo:
            budget[0] -= 1
            if budget[0] < 0:
                return False
            reporter.extend(scratch.diagnostics)
        if mended[first:last] == lines[first:last]:
            # The repair changed nothing: blank the line (or the last non-blank one above it in the
            # statement), so that every pass makes progress.
            index = next((i for i in range(line - 1, first - 1, -1) if mended[i].strip()), None)
            if index is None:
                lines[first:last] = [""] * (last - first)
                return True
            mended[index] = ""
        lines[first:last] = mended[first:last]


def _prescan(lines: list[str], reporter: Reporter) -> list[str]:
    """Report tabs (E003) and over-deep nesting up front; return lines safe to hand to the parser."""
    out = []
    for number, line in enumerate(lines, start=1):
        if "\t" in line:
            col = line.index("\t") + 1
            reporter.add("E003", Span.point(number, col), "tab character; indent with spaces only")
            line = line.replace("\t", "    ")
        if len(line) > MAX_LINE_CHARS:
            reporter.add(
                "E001",
                Span.point(number, 1),
                f"line of {len(line):,} characters; a line may have at most {MAX_LINE_CHARS:,}",
            )
            out.append(_placeholder(line[:MAX_LINE_CHARS], block=False))
            continue
        code = line.split("#", 1)[0]
        # The depth never exceeds the number of opening brackets: count those first (cheap, and enough for
        # nearly every line), walk the characters only when there are too many.
        if code.count("(") + code.count("[") + code.count("{") > MAX_NESTING and _depth(code) > MAX_NESTING:
            reporter.add(
                "E001", Span.point(number, 1), f"brackets nested more than {MAX_NESTING} levels deep"
            )
            line = _placeholder(line, block=False)
        out.append(line)
    return out


def _depth(code: str) -> int:
    """The deepest bracket nesting of a line's code."""
    depth = deepest = 0
    for char in code:
        depth += char in "([{"
        depth -= char in ")]}"
        deepest = max(deepest, depth)
    return deepest


def _report(error: UnexpectedInput, lines: list[str], parser: _Parser, reporter: Reporter) -> tuple[int, str]:
    """Report one lark error as E001, E002 or E003; return the line to repair and the repair's kind."""
    line, col = error.line, error.column
    opened = parser.indenter.open_brackets
    token = getattr(error, "token", None)
    if isinstance(error, UnexpectedEOF) or line is None or line < 1:
        line, col = len(lines), 1
    # An unclosed bracket makes the parser fail on a later line or at the end of its own statement (the
    # indenter swallows the newlines inside brackets): report it where it was opened.
    at_end = isinstance(error, UnexpectedEOF) or (token is not None and token.type in _ENDINGS)
    if opened and ((opened[0].line or 0) < line or at_end):
        first = opened[0]
        reporter.add(
            "E002",
            Span.point(first.line or 1, first.column or 1),
            f"'{first}' opened at {first.line}:{first.column} is never closed",
        )
        return first.line or 1, "E002"
    if token is not None and token.type == "_INDENT":
        # The indent token sits on the newline before the line: point at the indented line itself.
        line = min(token.end_line or line, len(lines))
        depth = _indent(lines[line - 1])
        above = next((_indent(x) for x in reversed(lines[: line - 1]) if x.strip()), 0)
        reporter.add(
            "E003",
            Span.point(line, 1, depth),
            f"unexpected indentation: {depth} spaces where the line above has {above}",
            "only the line after a block header ending in ':' may be indented deeper",
        )
        return line, "E003"
    if isinstance(error, UnexpectedCharacters):
        char = lines[line - 1][col - 1] if line <= len(lines) and col <= len(lines[line - 1]) else "?"
        message = f"unexpected character {char!r}"
    elif isinstance(error, UnexpectedToken):
        message = _token_message(error, lines, parser)
    else:
        message = "unexpected end of file"
    reporter.add("E001", Span.point(line, max(col, 1), _token_width(error)), message)
    return line, "E001"


def _token_width(error: UnexpectedInput) -> int:
    """Width of the offending token, for the caret underline."""
    token = getattr(error, "token", None)
    return max(len(str(token)), 1) if token is not None and token.type not in ("_NL", "$END") else 1


def _token_message(error: UnexpectedToken, lines: list[str], parser: _Parser) -> str:
    """A plain message for an unexpected token, naming what was expected when that is short."""
    token = error.token
    expected = sorted({parser.display.get(t, t) for t in error.expected if not t.startswith("__")})
    found = "end of line" if token.type == "_NL" else parser.display.get(token.type, f"'{token}'")
    if token.type == "NAME" or token.type not in parser.display:
        found = f"'{token}'"
    # "strategy foo" without its colon gets the message a user expects.
    head = lines[(token.line or 1) - 1].split() if token.line else []
    if expected == ["':'"] and head and head[0] in _HEADERS:
        return f"expected ':' after {head[0]} name"
    # Where any expression may start, say so instead of listing a dozen token kinds.
    if set(error.expected) >= _EXPRESSION_STARTS:
        return f"unexpected {found}; expected an expression"
    if len(expected) <= 4:
        return f"unexpected {found}; expected {' or '.join(expected)}"
    return f"unexpected {found}"


def _repair(lines: list[str], line: int, code: str, opened: list[Token]) -> list[str]:
    """Replace the broken line(s) so the next parse can go on past them."""
    lines = list(lines)
    index = min(max(line, 1), len(lines)) - 1
    if code == "E003":
        # Move the badly indented line (and its deeper followers) onto the enclosing block's level.
        indent = _indent(lines[index])
        target = max((_indent(x) for x in lines[:index] if x.strip() and _indent(x) <= indent), default=0)
        if target == indent:
            target = max((_indent(x) for x in lines[:index] if x.strip() and _indent(x) < indent), default=0)
        shift = indent - target
        for i in range(index, len(lines)):
            if i > index and (not lines[i].strip() or _indent(lines[i]) < indent):
                break
            lines[i] = lines[i][shift:] if lines[i][:shift].strip() == "" else lines[i]
        if shift == 0:
            lines[index] = _placeholder(lines[index], block=False)
        return lines
    # A block header missing only its colon is mended, so that the block's body is still checked.
    if code == "E001" and _HEADER_NO_COLON.match(lines[index]) and _opens_block(lines, index):
        lines[index] = lines[index].split("#", 1)[0].rstrip() + ":"
        return lines
    # Blank a bracket's whole unfinished statement, else just the broken line.
    last = index
    if opened and (opened[0].line or 0) - 1 < index:
        index = (opened[0].line or 1) - 1
        last = max(index, last - 1)
    block = _opens_block(lines, last)
    for i in range(index, last + 1):
        lines[i] = _placeholder(lines[i], block=block and i == last) if i == index else ""
    return lines


def _indent(line: str) -> int:
    """Number of leading spaces."""
    return len(line) - len(line.lstrip(" "))


def _opens_block(lines: list[str], index: int) -> bool:
    """Whether the next non-blank line after `index` is indented deeper (so `index` was a block header)."""
    for follower in lines[index + 1 :]:
        if follower.strip() and not follower.strip().startswith("#"):
            return _indent(follower) > _indent(lines[index])
    return False


def _placeholder(line: str, *, block: bool) -> str:
    """A statement the checker ignores, at the same indentation as `line`.

    A broken `name = ...` or `param name = ...` keeps its name (bound to the error marker), so that the
    lines using it do not also report it as undefined.
    """
    pad = " " * _indent(line)
    if block:
        return f"{pad}{ERROR_NAME}:"
    match = _NAMED_LINE.match(line)
    if match and match.group(2) not in KEYWORDS:
        return f"{pad}{match.group(1) or ''}{match.group(2)} = {ERROR_NAME}"
    return f"{pad}{ERROR_NAME} = na"


def is_error_binding(stmt: s.Stmt) -> bool:
    """Whether a statement is the parser's placeholder for an unreadable line."""
    return isinstance(stmt, s.Binding) and stmt.name == ERROR_NAME


def is_placeholder(stmt: s.Stmt) -> bool:
    """Whether a statement stands for text the parser could not read (named placeholders included)."""
    if isinstance(stmt, s.ErrorStmt) or is_error_binding(stmt):
        return True
    value = stmt.value if isinstance(stmt, s.Binding) else stmt.default if isinstance(stmt, s.Param) else None
    return isinstance(value, s.Name) and value.id == ERROR_NAME
