"""Backtest runs: metrics, outputs, report (the simulated broker is runtime.broker)."""
