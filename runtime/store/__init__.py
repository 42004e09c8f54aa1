"""Persistence: the SQLAlchemy engine, the shared declarative base and the candle tables.

SQLAlchemy is imported only inside this package; the rest of the runtime passes plain URLs and value
objects in and gets value objects back.
"""
