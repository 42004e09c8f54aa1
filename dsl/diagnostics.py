"""Diagnostics: located, coded messages about a spec, rendered for people or as JSON for editors."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, order=True)
class Span:
    """A region of source text; lines and columns are 1-based, `end_col` is exclusive."""

    line: int  # first line of the region
    col: int  # first column of the region
    end_line: int  # last line of the region
    end_col: int  # column just after the region's last character

    @staticmethod
    def point(line: int, col: int, width: int = 1) -> Span:
        """A one-line span of `width` characters starting at (line, col)."""
        return Span(line, col, line, col + max(width, 1))


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a spec file."""

    code: str  # stable code, e.g. "E010" (errors) or "W054" (warnings)
    severity: Severity  # "error" blocks a run, "warning" does not
    file: str  # path of the file as the user named it
    line: int  # 1-based line of the problem
    col: int  # 1-based column of the problem
    end_line: int  # last line of the underlined region
    end_col: int  # column after the underlined region (exclusive)
    message: str  # plain-words description
    hint: str | None = None  # suggestion such as "did you mean 'close'?"

    @property
    def is_error(self) -> bool:
        """Whether this diagnostic blocks running the spec."""
        return self.severity == "error"

    def sort_key(self) -> tuple[str, int, int, str, str]:
        """Order diagnostics by file, position, code and message, for stable output."""
        return (self.file, self.line, self.col, self.code, self.message)

    def render(self, source: str | None) -> str:
        """Render as `file:line:col: error E010: message`, the source line, a caret underline and a hint."""
        out = [f"{self.file}:{self.line}:{self.col}: {self.severity} {self.code}: {self.message}"]
        lines = source.splitlines() if source is not None else []
        if 1 <= self.line <= len(lines):
            text = lines[self.line - 1].replace("\t", " ")
            # Underline to the end of the span on its first line (at least one caret).
            end = self.end_col if self.end_line == self.line else len(text) + 1
            width = max(1, min(end, len(text) + 1) - self.col)
            gutter = f"{self.line:>5} | "
            out.append(gutter + text)
            out.append(" " * (len(gutter) - 2) + "| " + " " * (self.col - 1) + "^" * width)
        if self.hint:
            out.append(f"      = hint: {self.hint}")
        return "\n".join(out)


class Reporter:
    """Collects the diagnostics of one file, de-duplicated, in source order."""

    def __init__(self, file: str) -> None:
        """Start with no diagnostics for `file`."""
        self.file = file  # the file name every diagnostic is attributed to
        self._items: dict[tuple[str, int, int, str], Diagnostic] = {}  # unique diagnostics by position

    def add(
        self, code: str, span: Span, message: str, hint: str | None = None, *, file: str | None = None
    ) -> None:
        """Record a diagnostic; the severity follows the code's letter (W = warning)."""
        severity: Severity = "warning" if code.startswith("W") else "error"
        diag = Diagnostic(
            code, severity, file or self.file, span.line, span.col, span.end_line, span.end_col, message, hint
        )
        self._items.setdefault((diag.file, diag.line, diag.col, diag.message), diag)

    def extend(self, diagnostics: Iterable[Diagnostic]) -> None:
        """Add diagnostics produced elsewhere (an imported file's, for instance)."""
        for diag in diagnostics:
            self._items.setdefault((diag.file, diag.line, diag.col, diag.message), diag)

    @property
    def diagnostics(self) -> list[Diagnostic]:
        """All diagnostics so far, in stable source order."""
        return sorted(self._items.values(), key=Diagnostic.sort_key)

    def has_errors_within(self, span: Span) -> bool:
        """Whether an error was recorded on the lines of `span` (to silence follow-on diagnostics)."""
        return any(
            d.is_error
            and d.file == self.file
            and (span.line, span.col) <= (d.line, d.col) < (span.end_line, span.end_col)
            for d in self._items.values()
        )

    @property
    def has_errors(self) -> bool:
        """Whether any recorded diagnostic is an error."""
        return any(d.is_error for d in self._items.values())


# Names longer than this get no 'did you mean' (difflib's work grows with the product of the lengths).
_HINT_NAME_LIMIT = 64


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A 'did you mean' hint naming the closest candidate, or None when nothing is close.

    A candidate equal but for letter case (`RSI` for `rsi`) wins; otherwise difflib's closest match among
    candidates of a similar length.
    """
    if len(name) > _HINT_NAME_LIMIT:
        return None
    pool = sorted(set(candidates))
    folded = [c for c in pool if c.lower() == name.lower()]
    match = folded or difflib.get_close_matches(
        name, [c for c in pool if abs(len(c) - len(name)) <= max(3, len(name) // 2)], n=1, cutoff=0.6
    )
    return f"did you mean '{match[0]}'?" if match else None


def to_json(diagnostics: Iterable[Diagnostic]) -> str:
    """Diagnostics as a JSON list of objects with code, severity, file, line, col, end_line, end_col, ..."""
    return json.dumps([asdict(d) for d in diagnostics], indent=2)
