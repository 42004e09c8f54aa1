"""The exchange adapter: the one place that talks to exchanges through ccxt.

`client` sets up ccxt (options, sandbox, URL rewrite, credentials), retries and maps errors; `feed`
downloads and streams closed candles through it; `trading` places orders and reads fills and balances of
an account with API credentials.
"""
