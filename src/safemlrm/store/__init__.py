"""The run store: one SQLite file per run directory, and the only code that writes SQL."""
from .core import PAGE, Store

__all__ = ["PAGE", "Store"]
