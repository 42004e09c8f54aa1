"""The broker shared by backtest and live: sizing, fills, brackets, risk, accounting and the per-point step."""
