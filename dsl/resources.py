"""Locating the grammar and the standard library, from a checkout and from an installed wheel.

In a checkout `grammar.lark` and `library/` sit at the repository root, next to the `dsl` package; a built
wheel carries them inside the package (see pyproject's force-include). Both places are tried in order.
"""

from __future__ import annotations

from pathlib import Path

# The dsl package folder.
_PACKAGE = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    """Return the first existing `name` inside the package, then beside it; raise if neither exists."""
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{name} not found next to {_PACKAGE}; the installation is incomplete")


def grammar_path() -> Path:
    """The grammar file."""
    return _find("grammar.lark")


def library_dir() -> Path:
    """The folder of reusable .strat strategies that `use` falls back to."""
    return _find("library")
