"""The CLI's error boundary: every sub-command, given bad input, answers with one plain line, never a trace.

Known problems (`StratError`, a file the system refuses) exit 1 with `strat COMMAND: message`; usage
errors exit 2; anything else is an internal error (exit 3) whose trace goes to a log file named in the
one line printed. Read-only commands create nothing.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

from runtime import cli
from runtime.cli import main

ROOT = Path(__file__).resolve().parents[2]
MACD = str(ROOT / "library" / "macd.strat")


@pytest.fixture
def bad(tmp_path: Path) -> Path:
    """A folder of malformed inputs."""
    (tmp_path / "nonnum.csv").write_text("timestamp,open,high,low,close,volume\n1704067200000,abc,1,1,1,1\n")
    (tmp_path / "semi.csv").write_text("timestamp;open;high;low;close;volume\n1704067200000;1;1;1;1;1\n")
    (tmp_path / "header.csv").write_text("foo,bar\n1,2\n")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "afile").write_text("not a folder")
    return tmp_path


# (arguments, exit code, what the one line says); {bad} is the folder of malformed inputs.
CASES = [
    (["data", "check", "{bad}/nonnum.csv"], 1, "nonnum.csv, row 2: open is 'abc', not a number"),
    (["data", "import", "{bad}/nonnum.csv", "--db", "sqlite:///{bad}/s.db"], 1, "row 2: open is 'abc'"),
    (["data", "check", "{bad}/semi.csv"], 1, "(this file separates them by ';')"),
    (["data", "check", "{bad}/header.csv"], 1, "2 columns; expected 6"),
    (["data", "check", "{bad}/empty.csv"], 1, "empty.csv: empty file"),
    (["data", "check", "{bad}/missing.csv"], 1, "missing.csv"),
    (["data", "download", "BTC/USDT", "--exchange", "nonesuch", "--since", "2024-01-01"], 1, "nonesuch"),
    (
        ["data", "download", "BTC/USDT", "--timeframe", "7m", "--since", "2024-01-01"],
        2,
        "'7m' is not available",
    ),
    (["runs", "--db", "garbage://"], 1, "garbage:// is not a database URL"),
    (
        ["runs", "--db", "postgresql+psycopg://u:pw@127.0.0.1:1/x"],
        1,
        "u:***@127.0.0.1:1/x: connection failed",
    ),
    (["run", MACD, "--data", "{bad}/afile"], 1, "afile"),
    (
        ["run", MACD, "--data", "{bad}", "--out", "{bad}/afile"],
        2,
        "--out {bad}/afile: is a file, not a folder",
    ),
    (["run", MACD, "--data", "synthetic", "--db", "garbage://"], 2, "--db garbage:// is not a database URL"),
    (["run", MACD, "--capital", "0"], 2, "the capital must be a finite amount above 0"),
    (["run", MACD, "--capital", "-5"], 2, "the capital must be a finite amount above 0"),
    (["run", MACD, "--capital", "nan"], 2, "the capital must be a finite amount above 0"),
    (["run", MACD, "--capital", "inf"], 2, "the capital must be a finite amount above 0"),
    (["series", MACD, "--data", "{bad}/nonnum.csv", "--out", "{bad}/s.csv"], 1, "open is 'abc'"),
    (["check", "{bad}/missing.strat"], 2, "no such file"),
    (["run", str(ROOT / "library" / "risk.strat")], 1, "risk.strat defines no strategy or portfolio to run"),
]


@pytest.mark.parametrize(
    ("argv", "code", "says"), CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else None
)
def test_bad_input_gets_one_plain_line(
    argv: list[str], code: int, says: str, bad: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [a.replace("{bad}", str(bad)) for a in argv]
    try:
        got = main(args)
    except SystemExit as exit_:  # argparse's usage errors
        got = int(exit_.code or 0)
    out, err = capsys.readouterr()
    assert got == code, err
    assert "Traceback" not in out + err
    assert says.replace("{bad}", str(bad)) in err


def test_read_only_commands_create_nothing(tmp_path: Path) -> None:
    store = tmp_path / "new" / "x.db"
    assert main(["runs", "--db", f"sqlite:///{store}"]) == 0
    assert main(["runs", "show", "1", "--db", f"sqlite:///{store}"]) == 1
    assert main(["data", "list", "--db", f"sqlite:///{store}"]) == 0
    assert not (tmp_path / "new").exists()


def test_a_bug_is_an_internal_error_with_its_trace_logged(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR

    def broken(_args: object) -> int:
        """A handler with a bug."""
        raise KeyError("boom")

    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_handler(parser(), "check", broken))
    assert main(["check", "--json", MACD]) == cli.EXIT_CODES["internal"]
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert err.startswith("strat check: internal error (KeyError: 'boom'); the full trace is in ")
    detail = json.loads(out)["internal_error"]
    assert detail["type"] == "KeyError"
    log = Path(detail["log"])
    assert log.parent == tmp_path and "Traceback" in log.read_text() and "broken" in log.read_text()


def _with_handler(parser: object, command: str, handler: object) -> object:
    """`parser` with the handler of one sub-command replaced."""
    for action in parser._subparsers._group_actions:  # type: ignore[attr-defined]
        action.choices[command].set_defaults(handler=handler)
    return parser


def test_exit_codes_are_distinct() -> None:
    assert len(set(cli.EXIT_CODES.values())) == len(cli.EXIT_CODES)
    assert cli.EXIT_CODES["ok"] == os.EX_OK


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"strat {version('strat')}\n"
    assert version("strat") == "0.1.0"
