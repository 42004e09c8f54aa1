"""`strat optimize`: search a strategy's params (grid, random, Bayesian), walk forward, judge overfitting.

Modules: `members` (the search space and its members), `search` (the three methods), `executor` (where the
members' backtests run: here, a process pool or a Dask cluster), `walkforward` (train/test windows),
`overfit` (deflated Sharpe ratio, probability of backtest overfitting), `runner` (the whole optimisation),
`results` (results.csv, best.json) and `report` (report.html).
"""
