"""Limits: huge number literals, `use` of paths outside the allowed folders, exponential def expansion.

Every number of a spec goes through one literal reader that refuses what cannot be a finite, exact
value (E025 at the literal), so no later conversion (params, domains, sleeves, risk rules, warm-up, the
version line) can overflow. `use` resolves only inside the root spec's folder tree, library/ and the
folders listed in $STRAT_USE_PATH, reads only `.strat` files, and never quotes a file that is not a spec.
A def called twice with the same arguments is checked once (shared nodes), and an expansion that would be
exponential written out is E014 at the call.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from dsl_helpers import HEAD, diags

from dsl.checker import check_file

# A 400-digit integer and a float literal that overflows to inf.
HUGE_INT = "9" * 400
HUGE_FLOAT = "9" * 400 + ".5"


@pytest.mark.parametrize(
    ("line", "text"),
    [
        (f"    param n = {HUGE_INT} in 1..10\n", HUGE_INT),
        (f"    param n = 5 in 1..{HUGE_INT}\n", HUGE_INT),
        (f"    x = sma(close, {HUGE_INT})\n", HUGE_INT),
        (f"    stop_loss: {HUGE_FLOAT}%\n", HUGE_FLOAT + "%"),
        (f"    x = close > {HUGE_FLOAT}\n", HUGE_FLOAT),
        (f"    cooldown: {HUGE_INT}h\n", HUGE_INT + "h"),
    ],
)
def test_huge_number_literals_are_a_located_error(line: str, text: str) -> None:
    found = [d for d in diags(HEAD + line) if d[0] == "E025"]
    assert found, diags(HEAD + line)
    _, row, col, message, _ = found[0]
    assert (row, message) == (5, f"the number {text[:12]}… is too large")
    assert col == line.index(text[:12]) + 1


def test_huge_capital_and_risk_limits_are_located_errors() -> None:
    spec = f'strat 1\nuse "ma_cross.strat"\nportfolio p:\n    capital: {HUGE_INT} USDT\n'
    spec += "    sleeve a: ma_cross\n    risk:\n        cap gross_exposure at " + HUGE_INT + "%\n"
    rows = sorted((d[1], d[0]) for d in diags(spec) if d[0] == "E025")
    assert rows == [(4, "E025"), (7, "E025")]


@pytest.mark.parametrize("number", [HUGE_INT, "9" * 5000, "1_" * 30 + "1"])
def test_a_huge_version_number_is_unsupported_not_a_crash(number: str) -> None:
    found = diags(f"strat {number}\n")
    assert [d[0] for d in found] == ["E004"]
    assert found[0][3].startswith("unsupported language version")
    assert len(found[0][3]) < 200  # the number is shortened, not printed whole


# --------------------------------------------------------------------------------------------- use


def _spec(folder: Path, use: str) -> Path:
    """Write a spec using `use` into `folder` and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "main.strat"
    path.write_text(f'strat 1\nuse "{use}"\n')
    return path


def _codes(path: Path) -> list[tuple[str, int, str]]:
    """(code, line, message) of every diagnostic of checking `path`."""
    return [(d.code, d.line, d.message) for d in check_file(path).diagnostics]


def test_use_of_a_system_file_is_refused_without_quoting_it(tmp_path: Path) -> None:
    result = check_file(_spec(tmp_path / "specs", "/etc/passwd"))
    assert [(d.code, d.line) for d in result.diagnostics] == [("E015", 2)]
    assert "only .strat files can be used" in result.diagnostics[0].message
    assert all("root:" not in text for text in result.sources.values())


def test_use_outside_the_spec_folder_tree_is_refused(tmp_path: Path) -> None:
    (tmp_path / "outside.strat").write_text("strat 1\nconst k = 1\n")
    found = _codes(_spec(tmp_path / "specs", "../outside.strat"))
    assert found == [("E015", 2, "'../outside.strat' is outside the folders a spec may use")]


def test_use_inside_the_tree_and_the_library_still_works(tmp_path: Path) -> None:
    (tmp_path / "specs" / "lib").mkdir(parents=True)
    (tmp_path / "specs" / "lib" / "k.strat").write_text("strat 1\nconst k = 1\n")
    assert _codes(_spec(tmp_path / "specs", "lib/k.strat")) == []
    assert _codes(_spec(tmp_path / "other", "ma_cross.strat")) == []


def test_use_path_lists_extra_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "k.strat").write_text("strat 1\nconst k = 1\n")
    spec = _spec(tmp_path / "specs", str(shared / "k.strat"))
    assert [c[0] for c in _codes(spec)] == ["E015"]
    monkeypatch.setenv("STRAT_USE_PATH", str(shared))
    assert _codes(spec) == []


def test_a_symlink_out_of_the_tree_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.strat").write_text("strat 1\nconst k = 1\n")
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "link.strat").symlink_to(tmp_path / "secret.strat")
    found = _codes(_spec(tmp_path / "specs", "link.strat"))
    assert found == [("E015", 2, "'link.strat' is outside the folders a spec may use")]


def test_odd_use_paths_are_clear_errors(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    (specs / "dir.strat").mkdir(parents=True)
    (specs / "bad.strat").write_bytes(b"strat 1\n\xff\xfe\n")
    cases = {
        "x" * 5000 + ".strat": "cannot find",
        "dir.strat": "is a folder, not a file",
        "bad.strat": "not UTF-8",
    }
    for use, expected in cases.items():
        found = _codes(_spec(specs, use))
        assert found and found[0][0] in ("E015", "E001"), (use[:20], found)
        assert any(expected in message for _, _, message in found), (use[:20], found)


# ------------------------------------------------------------------------------------------ nested defs


def _nested_defs(levels: int) -> str:
    """A spec whose def f{n} calls f{n-1} twice, `levels` deep: 2**levels operations written out."""
    lines = ["strat 1", "def f0(x) = x + 1"]
    lines += [f"def f{i}(x) = f{i - 1}(x) + f{i - 1}(x)" for i in range(1, levels + 1)]
    lines += [
        "strategy s:",
        '    symbol: "BINANCE:BTC/USDT"',
        "    timeframe: 1h",
        f"    y = f{levels}(close)",
        "    entry long when y > 0",
        "    exit long when y < 0",
    ]
    return "\n".join(lines) + "\n"


def test_nested_defs_are_checked_in_linear_time_with_shared_nodes() -> None:
    assert diags(_nested_defs(10)) == []  # 2,047 operations: fine


def test_an_exponential_def_expansion_is_a_located_error() -> None:
    found = diags(_nested_defs(20))
    assert [(d[0], d[1], d[2]) for d in found] == [("E014", 18, 14)]
    assert found[0][3] == "f15() expands to more than 100,000 operations"


# ------------------------------------------------------------------------------------------ sizes


def test_a_file_past_two_million_characters_is_refused_up_front() -> None:
    text = HEAD + "".join(f"    x{i} = sma(close, 20)\n" for i in range(120_000))
    assert diags(text) == [
        (
            "E001",
            1,
            1,
            f"the file has {len(text) / 1e6:.1f} million characters; a spec may have at most 2 million",
            None,
        )
    ]


def test_a_line_past_ten_thousand_characters_is_refused_where_it_stands() -> None:
    text = HEAD + "    x = " + " + ".join(["close"] * 3_000) + "\n    y = clsoe\n"
    found = [(d[0], d[1], d[3]) for d in diags(text)]
    assert found[0] == (
        "E001",
        5,
        f"line of {len(text.splitlines()[4]):,} characters; a line may have at most 10,000",
    )
    assert ("E010", 6) in [(d[0], d[1]) for d in diags(text)]  # the lines after it are still checked


# A fixed value past a float's range: 23 factors of 1e15.
_HUGE = "const a = 1000000000000000\nconst big = " + " * ".join(["a"] * 23) + "\n"


@pytest.mark.parametrize(
    "use",
    [
        "    param p = big\n",
        "    x = close[big]\n",
        "    max_hold: big * 1h\n",
        "    stop_loss: big * atr(14)\n",
    ],
)
def test_fixed_arithmetic_past_a_floats_range_is_e025_where_it_overflows(use: str) -> None:
    text = "strat 1\n" + _HUGE + HEAD.removeprefix("strat 1\n") + use + "    entry long when close > open\n"
    assert [d[:4] for d in diags(text + "    exit long when close < open\n")] == [
        ("E025", 3, 13, "this fixed value is out of range (inf)")
    ]


def test_fixed_values_built_on_shared_consts_are_evaluated_in_linear_time() -> None:
    # c40 = 2**40 written as a tree: evaluated node by node it would never finish.
    consts = "const c0 = 1\n" + "".join(f"const c{i} = c{i - 1} + c{i - 1}\n" for i in range(1, 41))
    text = (
        "strat 1\n"
        + consts
        + HEAD.removeprefix("strat 1\n")
        + "    x = valuewhen(close > open, close, c40)\n"
    )
    started = time.perf_counter()
    found = diags(text + "    entry long when close > x\n    exit long when close < open\n")
    assert time.perf_counter() - started < 2.0
    assert found == []
