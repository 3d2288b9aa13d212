"""Raw SQL over a run's store file, read-only: the tests check what was committed, byte for byte,
without going through the Store they are testing."""
from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any


def run_sql(run_dir: str | Path, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(f"file:{Path(run_dir) / 'store.sqlite'}?mode=ro", uri=True)) as db:
        return db.execute(query, args).fetchall()
