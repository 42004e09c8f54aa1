"""The broker shared by backtest and live: sizing, fills, brackets, risk, accounting, the per-point step."""
