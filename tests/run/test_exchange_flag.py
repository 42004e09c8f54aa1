"""`--exchange` and a symbol that names its exchange: they must agree, or the command says so."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from runtime.cli import main
from runtime.commands.source import Source, add_data_arguments
from runtime.data.candles import DataError

ROOT = Path(__file__).resolve().parents[2]


def _source(*argv: str) -> Source:
    """The Source a command reading candles builds from `argv`."""
    parser = argparse.ArgumentParser()
    add_data_arguments(parser)
    parser.add_argument("--from", dest="start")
    parser.add_argument("--to", dest="end")
    return Source.from_args(parser.parse_args(list(argv)))


def test_a_symbol_naming_its_exchange_wins_over_the_default_and_a_bare_one_takes_the_flag() -> None:
    assert _source().market("KRAKEN:BTC/USD") == ("kraken", "BTC/USD")
    assert _source().market("BTC/USDT") == ("binance", "BTC/USDT")
    assert _source("--exchange", "kraken").market("BTC/USD") == ("kraken", "BTC/USD")
    assert _source("--exchange", "Binance").market("BINANCE:BTC/USDT") == ("binance", "BTC/USDT")


def test_an_exchange_flag_disagreeing_with_the_symbol_is_an_error() -> None:
    with pytest.raises(DataError, match="--exchange kraken disagrees with the symbol BINANCE:BTC/USDT"):
        _source("--exchange", "kraken").market("BINANCE:BTC/USDT")


def test_run_refuses_the_disagreement_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = ROOT / "library" / "macd.strat"
    span = ["--from", "2024-01-01", "--to", "2024-02-01", "--no-save", "--out", str(tmp_path)]
    assert main(["run", str(spec), "--data", "synthetic", "--exchange", "kraken", *span]) == 1
    err = capsys.readouterr().err
    assert err.startswith("strat run: --exchange kraken disagrees with the symbol BINANCE:BTC/USDT")
    assert "Traceback" not in err
