"""The .strat language: grammar loading, parser, typed IR, checker, diagnostics and built-in signatures."""
