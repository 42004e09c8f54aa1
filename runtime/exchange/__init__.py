"""The exchange adapter: the one place that talks to exchanges through ccxt.

`client` is the only module that imports ccxt (client set-up, retries, error mapping, market data);
`feed` downloads and streams closed candles through it.
"""
