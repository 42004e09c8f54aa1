"""Live and paper trading: feeds of closed candles, the order manager, the engine (see engine.py)."""
