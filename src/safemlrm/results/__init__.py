"""Reading a run: a run's store as frames (`load_run`), its rates, summary, analysis and export.

Every module here reads what the pipeline committed and writes nothing to the store.
"""
from .load import RunResults, load_run, load_store

__all__ = ["RunResults", "load_run", "load_store"]
