"""Market data: candle value objects, CSV files, the synthetic market, validation and resampling.

This package reads no store and no exchange (those sit above it: `runtime.exchange` fetches candles,
`runtime.store` caches them); commands pick the source through `runtime.commands.source.Source`.
"""
