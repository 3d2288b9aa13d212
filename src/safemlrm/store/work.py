"""The pipeline's work lists, read a page at a time: what a model has still to generate, what a
judge has still to read. Keyset pages: no cursor stays open while completions are written, and no
list of the whole run is built.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterator

PAGE = 512  # rows read at a time

# plan rows of a model still to generate: one per distinct request
_PENDING = """
    FROM plan p LEFT JOIN completions c ON c.key = p.completion_key
    WHERE p.model = ? AND (c.key IS NULL OR c.error IS NOT NULL)
      AND NOT EXISTS (SELECT 1 FROM plan q WHERE q.completion_key = p.completion_key
                      AND q.model = p.model AND q.rowid < p.rowid)"""

# completions with a non-empty channel a judge has not read
_JUDGEABLE = """
    SELECT p.rowid, c.key, c.probe_key FROM plan p JOIN completions c ON c.key = p.completion_key
    JOIN responses r ON r.completion_key = c.key
    WHERE c.error IS NULL AND p.rowid > ?
      AND (SELECT COUNT(*) FROM verdicts v WHERE v.completion_key = c.key AND v.judge = ?)
          < (COALESCE(json_extract(r.body, '$.reasoning'), '') != '')
            + (COALESCE(json_extract(r.body, '$.answer'), '') != '')
            + (COALESCE(json_extract(r.body, '$.full'), '') != '')
    ORDER BY p.rowid LIMIT ?"""


class WorkLists:
    _db: sqlite3.Connection

    def count_pending(self, model: str) -> int:
        return self._db.execute("SELECT COUNT(*)" + _PENDING, (model,)).fetchone()[0]

    def pending(self, model: str) -> Iterator[tuple[str, str]]:
        """(probe_key, completion_key) still to generate, in plan order. Keyset pages: no cursor stays
        open while completions are written, and no list of the whole run is built."""
        last = 0
        while True:
            rows = self._db.execute("SELECT p.rowid, p.probe_key, p.completion_key" + _PENDING +
                                   " AND p.rowid > ? ORDER BY p.rowid LIMIT ?", (model, last, PAGE)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            for _, probe_key, ckey in rows:
                yield probe_key, ckey

    def judgeable(self, judge: str, completion_keys: list[str] | None = None) -> Iterator[tuple[str, str]]:
        """(completion_key, probe_key) worth a judge's look: of the given keys those without an error,
        or (None) a sweep of the whole plan for completions with a channel it has not read."""
        if completion_keys is not None:
            marks = ",".join("?" * len(completion_keys))
            yield from self._db.execute(f"SELECT key, probe_key FROM completions WHERE error IS NULL "
                                       f"AND key IN ({marks})", completion_keys).fetchall()
            return
        last, seen = 0, set()
        while True:
            rows = self._db.execute(_JUDGEABLE, (last, judge, PAGE)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            for _, ckey, probe_key in rows:
                if ckey not in seen:  # one completion may answer several plan rows
                    yield ckey, probe_key
            seen = {r[1] for r in rows}
