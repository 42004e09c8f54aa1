"""Backtest engine: simulated broker, sizing, portfolio, risk rules, metrics and reports."""
