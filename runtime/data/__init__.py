"""Market data: candles from the exchange, CSV files or a synthetic market, validated and resampled.

The exchange adapter (`exchange.py`) is the only module that imports ccxt; the store it caches into lives
in `runtime.store`. Commands read candles through `commands.load_for`, which picks the source.
"""
