"""The strat runtime: graph compiler, operators, data, backtest, brokers, store and the `strat` command."""
