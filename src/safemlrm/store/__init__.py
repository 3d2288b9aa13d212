"""The run store: one SQLite file per run directory, and the only code that writes SQL."""
from .core import Store
from .work import PAGE

__all__ = ["PAGE", "Store"]
