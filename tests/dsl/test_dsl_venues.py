"""E080: short entries on a spot market are refused for paper and live trading, never for a backtest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dsl_helpers import HEAD, ROOT, SPEC_PATH

from dsl.checker import check_source, check_venues
from dsl.units import is_spot
from runtime.cli import main
from runtime.plan.select import select

# A strategy that goes both ways on BTC (spot): the short entry is line 7.
BOTH_WAYS = HEAD + (
    "    fast = ema(close, 10)\n"
    "    entry long  when fast crosses above sma(close, 30)\n"
    "    entry short when fast crosses below sma(close, 30)\n"
    "    stop_loss: 2%\n"
)
# A portfolio of the library's supertrend_trend (long and short, line 17 of its file) on two coins.
PORTFOLIO = (
    'strat 1\nuse "supertrend_trend.strat"\nuse "ma_cross.strat"\nportfolio p:\n'
    '    sleeve sol = supertrend_trend(symbol="BINANCE:SOL/USDT") weight 40%\n'
    '    sleeve btc = ma_cross(symbol="BINANCE:BTC/USDT") weight 40%\n'
)
HINT = "a spot account sells only what it holds; backtests may still short"
LIBRARY_RULE = ROOT / "library" / "supertrend_trend.strat"


def _located(text: str, mode: str) -> list[tuple[str, str, int, int, str, str | None]]:
    """The diagnostics of `text` checked for `mode`: (code, resolved file, line, col, message, hint)."""
    result = check_source(text, SPEC_PATH, mode=mode)  # type: ignore[arg-type]
    return [
        (d.code, str(Path(d.file).resolve()), d.line, d.col, d.message, d.hint) for d in result.diagnostics
    ]


def test_every_valid_symbol_is_spot() -> None:
    assert is_spot("BINANCE:SOL/USDT") and is_spot("KRAKEN:ETH/EUR")
    assert not is_spot("BINANCE:BTC/USDT:USDT")  # ccxt's linear perpetual form, not in the language yet


@pytest.mark.parametrize(("mode", "where"), [("live", "live"), ("paper", "in paper trading")])
def test_a_short_entry_on_spot_is_refused_where_it_is_written(mode: str, where: str) -> None:
    assert _located(BOTH_WAYS, mode) == [
        ("E080", SPEC_PATH, 7, 5, f"BINANCE:BTC/USDT is spot: short entries are not allowed {where}", HINT)
    ]
    result = check_source(BOTH_WAYS, SPEC_PATH, mode=mode)  # type: ignore[arg-type]
    assert not result.ok and result.program is None
    assert result.render() == (
        f"{SPEC_PATH}:7:5: error E080: BINANCE:BTC/USDT is spot: short entries are not allowed {where}\n"
        "    7 |     entry short when fast crosses below sma(close, 30)\n"
        "      |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
        f"      = hint: {HINT}"
    )


def test_backtests_may_short_and_long_only_strategies_trade_live() -> None:
    assert _located(BOTH_WAYS, "backtest") == []
    assert check_source(BOTH_WAYS, SPEC_PATH).ok
    assert _located(BOTH_WAYS.replace("entry short", "exit  long "), "live") == []
    assert _located(PORTFOLIO, "backtest") == []


def test_a_sleeve_of_a_library_strategy_is_named() -> None:
    # The rule is in the library's file; the message names the sleeve (only the shorting one).
    assert _located(PORTFOLIO, "live") == [
        (
            "E080",
            str(LIBRARY_RULE),
            17,
            5,
            "BINANCE:SOL/USDT is spot: short entries are not allowed live (sleeve 'sol' of portfolio 'p')",
            HINT,
        )
    ]
    rendered = check_source(PORTFOLIO, SPEC_PATH, mode="live").render().splitlines()
    assert rendered[0].endswith(
        "supertrend_trend.strat:17:5: error E080: BINANCE:SOL/USDT is spot: short entries are not allowed "
        "live (sleeve 'sol' of portfolio 'p')"
    )
    assert rendered[1:3] == ["   17 |     entry short when flip_dn", "      |     ^^^^^^^^^^^^^^^^^^^^^^^^"]


def test_what_runs_is_judged() -> None:
    # A file with a portfolio runs the portfolio: a shorting template it does not use is not refused.
    text = 'strat 1\nuse "ma_cross.strat"\n' + BOTH_WAYS.split("\n", 1)[1]
    text += 'portfolio q:\n    sleeve btc = ma_cross(symbol="BINANCE:BTC/USDT") weight 40%\n'
    assert _located(text, "live") == []
    # ... unless that template is what is about to run (`strat run --strategy s --live`): then without sleeve.
    checked = check_source(text, SPEC_PATH)
    assert checked.program is not None
    alone = check_venues(checked, "live", select(checked.program, "s", None))
    assert [(d.code, d.line, d.message) for d in alone.diagnostics] == [
        ("E080", 8, "BINANCE:BTC/USDT is spot: short entries are not allowed live")
    ]
    assert check_venues(checked, "live", select(checked.program, "q", None)).ok
    assert check_venues(checked, "backtest", select(checked.program, "s", None)) is checked


def test_strat_check_live_and_paper(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "both.strat"
    spec.write_text(BOTH_WAYS)
    assert main(["check", str(spec)]) == 0
    assert capsys.readouterr().out == f"{spec}: ok\n"
    assert main(["check", str(spec), "--live"]) == 1
    out = capsys.readouterr().out
    assert out.startswith(
        f"{spec}:7:5: error E080: BINANCE:BTC/USDT is spot: short entries are not allowed live\n"
    )
    assert out.endswith(f"{spec}: 1 error(s), 0 warning(s)\n")
    assert main(["check", "--paper", "--json", str(spec)]) == 1
    [found] = json.loads(capsys.readouterr().out)
    assert (found["code"], found["line"], found["col"], found["end_line"]) == ("E080", 7, 5, 7)
    assert found["message"] == "BINANCE:BTC/USDT is spot: short entries are not allowed in paper trading"
    with pytest.raises(SystemExit):
        main(["check", str(spec), "--paper", "--live"])
