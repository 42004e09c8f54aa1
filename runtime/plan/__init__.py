"""From a checked spec to the typed inputs of an engine run.

`select` picks the portfolio (or one strategy) to run, `plan` compiles each sleeve's graph and loads its
candles, `inputs` maps the language's settings onto the typed engine inputs of `model`.
"""
