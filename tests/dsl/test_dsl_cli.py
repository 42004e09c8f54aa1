"""`strat check` as a user runs it: exit codes, rendered diagnostics, --json fields and --explain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dsl_helpers import HEAD

from runtime.cli import main


def _write(folder: Path, name: str, text: str) -> str:
    """Write a spec and return its path as a string."""
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_clean_files_exit_0_and_say_ok(at_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The demo specs check clean."""
    assert main(["check", "specs/portfolio.strat", "specs/mtf.strat"]) == 0
    assert capsys.readouterr().out == "specs/portfolio.strat: ok\nspecs/mtf.strat: ok\n"


def test_warnings_alone_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A warning is printed but does not fail the check."""
    path = _write(tmp_path, "w.strat", HEAD + "    entry long when close > 1\n")
    assert main(["check", path]) == 0
    out = capsys.readouterr().out
    assert out.endswith(f"{path}: 0 error(s), 1 warning(s)\n")
    assert f"{path}:2:10: warning W054: entry long has no exit" in out


def test_errors_exit_1_with_rendered_diagnostics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every error is printed with its location, source line, caret and hint, then a count."""
    path = _write(tmp_path, "e.strat", HEAD + "    x = clsoe > 1\n    y = smaa(close, 3)\n")
    assert main(["check", path]) == 1
    assert capsys.readouterr().out == (
        f"{path}:5:9: error E010: undefined name 'clsoe'\n"
        "    5 |     x = clsoe > 1\n"
        "      |         ^^^^^\n"
        "      = hint: did you mean 'close'?\n"
        "\n"
        f"{path}:6:9: error E011: unknown function 'smaa'\n"
        "    6 |     y = smaa(close, 3)\n"
        "      |         ^^^^\n"
        "      = hint: did you mean 'sma'?\n"
        f"{path}: 2 error(s), 0 warning(s)\n"
    )


def test_one_bad_file_among_good_ones_exits_1(at_root: Path, tmp_path: Path) -> None:
    """The exit code is 1 when any of the files has an error."""
    bad = _write(tmp_path, "b.strat", "strat 2\n")
    assert main(["check", "specs/mtf.strat", bad]) == 1


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """No file, an unknown option or a file that does not exist are usage errors."""
    with pytest.raises(SystemExit) as no_file:
        main(["check"])
    assert no_file.value.code == 2
    with pytest.raises(SystemExit) as bad_option:
        main(["check", "--jsn", "x.strat"])
    assert bad_option.value.code == 2
    capsys.readouterr()
    missing = str(tmp_path / "nope.strat")
    assert main(["check", missing]) == 2
    assert capsys.readouterr().err == f"strat check: no such file: {missing}\n"


def test_json_lists_every_field_editors_need(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints a list of objects: code, severity, file, line, col, end_line, end_col, message, hint."""
    path = _write(tmp_path, "j.strat", HEAD + "    entry long when close > 1\nconst k = clsoe\n")
    assert main(["check", "--json", path]) == 1
    assert json.loads(capsys.readouterr().out) == [
        {
            "code": "W054",
            "severity": "warning",
            "file": path,
            "line": 2,
            "col": 10,
            "end_line": 2,
            "end_col": 11,
            "message": "entry long has no exit: no exit rule, stop, target "
            "or max_hold ever closes the position",
            "hint": None,
        },
        {
            "code": "E010",
            "severity": "error",
            "file": path,
            "line": 6,
            "col": 11,
            "end_line": 6,
            "end_col": 16,
            "message": "undefined name 'clsoe'",
            "hint": "did you mean 'close'?",
        },
    ]


def test_json_of_clean_files_is_an_empty_list(at_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing to report: `[]`, exit 0."""
    assert main(["check", "--json", "specs/portfolio.strat", "specs/mtf.strat"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_explain_prints_params_settings_timeframes_and_warmup(
    at_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--explain adds a per-strategy summary after the verdict."""
    assert main(["check", "--explain", "specs/mtf.strat"]) == 0
    assert capsys.readouterr().out == (
        "specs/mtf.strat: ok\n"
        "strategy eth_mtf_pullback  (specs/mtf.strat)\n"
        "  symbol     BINANCE:ETH/USDT\n"
        "  timeframes 5m, 1h  (base 5m)\n"
        "  warm-up    2159 bars, 4319 at the domain maxima\n"
        "  param      trend_fast = 20 in 10..50 step 10\n"
        "  param      trend_slow = 60 in 40..120 step 20\n"
        "  param      btc_len = 100 in 50..200 step 50\n"
        "  param      rsi_len = 7 in {5, 7, 9, 14}\n"
        "  param      rsi_buy = 30 in 20..40 step 5\n"
        "  setting    stop_loss: (2 * atr(14))\n"
        "  setting    take_profit: 2R\n"
        "  setting    max_hold: 1d\n"
        "  setting    cooldown: 1h\n"
        "  setting    size: risk_per_trade(1%)\n"
        "  setting    execution.fee: 0.1%\n"
        "  setting    execution.slippage: 2bps\n"
    )


def test_explain_shows_each_sleeve_with_its_overrides(
    at_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--explain on a portfolio ends with the portfolio: account, every sleeve and its overrides, risk."""
    assert main(["check", "--explain", "specs/portfolio.strat"]) == 0
    out = capsys.readouterr().out
    assert out.endswith(
        "portfolio demo  (specs/portfolio.strat)\n"
        "  capital    10,000 USDT\n"
        "  rebalance  every 1w\n"
        "  sleeve     btc_trend = ma_cross on BINANCE:BTC/USDT 4h, weight 40%; overrides fast=10, slow=40\n"
        "  sleeve     eth_revert = rsi_reversion on BINANCE:ETH/USDT 1h, weight 30%; overrides trend=150\n"
        "  sleeve     sol_break = donchian_breakout on BINANCE:SOL/USDT 4h, weight 30%; "
        "overrides entry_len=40\n"
        "  risk       halt when drawdown > 25%\n"
        "  risk       pause 24h when day_pnl < -5%\n"
        "  risk       cap gross_exposure at 100%\n"
        "  risk       cap position at 40%\n"
        "  risk       cap open_positions at 3\n"
        "  risk       per sleeve: pause 12h when consecutive_losses >= 3\n"
        "  risk       per sleeve: flatten when drawdown > 12%\n"
    )


def test_explain_lists_alerts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Alerts appear in the strategy's summary with their condition."""
    spec = _write(
        tmp_path,
        "a.strat",
        HEAD + '    entry long when close > open\n    alert "up bar" when close > open * 1.01\n',
    )
    assert main(["check", "--explain", spec]) == 0
    assert '  alert      "up bar" when (close > (open * 1.01))\n' in capsys.readouterr().out


def test_binary_and_non_utf8_files_are_diagnostics_not_tracebacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Garbage bytes give one E001 at 1:1."""
    binary = tmp_path / "bin.strat"
    binary.write_bytes(b"\x7fELF\x00\x01\x02")
    latin = tmp_path / "latin.strat"
    latin.write_bytes("strat 1\n# caf\xe9\n".encode("latin-1"))
    assert main(["check", "--json", str(binary), str(latin)]) == 1
    found = [(d["file"], d["line"], d["col"], d["message"]) for d in json.loads(capsys.readouterr().out)]
    assert found == [
        (str(binary), 1, 1, "this is a binary file, not .strat text"),
        (str(latin), 1, 1, "the file is not UTF-8 text (byte 13)"),
    ]
