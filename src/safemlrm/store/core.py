"""The run store: one SQLite file per run directory.

WAL mode and small transactions: every completion is committed with its split response, every
verdict on its own, so a run killed at any instant loses at most the item in flight, and a
resumed run skips every key already stored. A lock file keeps a second process out.
"""
from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..blobs import BlobStore
from ..errors import RunLocked, SafeMLRMError
from ..fsutil import write_errors
from ..records import ACCOUNT_FIELDS, Channel, Completion, Probe, Response, Verdict
from ..safety import dumps_record, loads_record, sql_text  # exact round trip of any text, surrogates included

# a response's reasoning account (records.ReasoningAccount) as columns of rows()
ACCOUNT_SQL = ", ".join(f"json_extract(r.body, '$.account.{f}') AS {f}" for f in ACCOUNT_FIELDS)

SCHEMA_VERSION = 1
PAGE = 512  # rows read at a time by the work lists (keyset pages: no cursor stays open while writing)

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

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS probes (
    key TEXT PRIMARY KEY, dataset TEXT NOT NULL, sample_id TEXT NOT NULL, scenario TEXT NOT NULL,
    attack TEXT NOT NULL, body TEXT NOT NULL);
-- the run's work list: which completion answers which (model, probe)
CREATE TABLE IF NOT EXISTS plan (
    model TEXT NOT NULL, probe_key TEXT NOT NULL, completion_key TEXT NOT NULL,
    PRIMARY KEY (model, probe_key));
CREATE INDEX IF NOT EXISTS plan_completion ON plan(completion_key);
CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY, probe_key TEXT NOT NULL, model TEXT NOT NULL, error TEXT,
    body TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS responses (
    completion_key TEXT PRIMARY KEY, outcome TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS verdicts (
    completion_key TEXT NOT NULL, channel TEXT NOT NULL, judge TEXT NOT NULL, cache_key TEXT NOT NULL,
    score REAL, label TEXT NOT NULL, by_prefilter INTEGER NOT NULL, body TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (completion_key, channel, judge));
CREATE INDEX IF NOT EXISTS verdicts_cache ON verdicts(cache_key);
"""


class Store:
    def __init__(self, run_dir: str | Path, *, lock: bool = True, readonly: bool = False, create: bool = True):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "store.sqlite"
        if readonly or not create:
            if not self.path.exists():
                raise SafeMLRMError(f"{self.run_dir} is not a safemlrm run directory (no store.sqlite)")
        else:
            with write_errors(self.run_dir):
                self.run_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = None
        if lock and not readonly:
            with write_errors(self.run_dir / ".lock"):
                self._acquire_lock()
        uri = f"file:{self.path}?mode=ro" if readonly else f"file:{self.path}"
        with write_errors(self.path):
            self.db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30)
            self.db.row_factory = sqlite3.Row
            if not readonly:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.executescript(_SCHEMA)
                if self.get_meta("schema_version") is None:
                    self.set_meta("schema_version", SCHEMA_VERSION)
        self.blobs = BlobStore(self.run_dir / "blobs")

    # --- locking ---------------------------------------------------------------------------
    def _acquire_lock(self) -> None:
        fd = os.open(self.run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLocked(f"{self.run_dir} is in use by another safemlrm process; wait for it to finish "
                            f"or stop it (a killed run releases the lock and resumes cleanly)") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def close(self) -> None:
        self.db.close()
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with write_errors(self.path):  # a full disk or a read-only folder: named, the store intact
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                if self.db.in_transaction:  # SQLite may have rolled back already (SQLITE_FULL)
                    self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    # --- meta ------------------------------------------------------------------------------
    def get_meta(self, key: str) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_meta(self, key: str, value: Any) -> None:
        with write_errors(self.path):
            self._set_meta(key, value)

    def _set_meta(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value)))

    # --- probes and plan -------------------------------------------------------------------
    def add_probes(self, probes: Iterable[Probe]) -> list[str]:
        """Stores the probes; returns their keys (a key is a hash: computed once, here)."""
        rows = [(p.key, sql_text(p.dataset), sql_text(p.sample_id), sql_text(p.scenario), p.attack, dumps_record(p))
                for p in probes]
        with self.transaction() as db:
            db.executemany("INSERT OR IGNORE INTO probes VALUES (?,?,?,?,?,?)", rows)
        return [r[0] for r in rows]

    def probe(self, key: str) -> Probe:
        row = self.db.execute("SELECT body FROM probes WHERE key=?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return loads_record(Probe, row[0])

    def probes(self) -> Iterator[Probe]:
        for (body,) in self.db.execute("SELECT body FROM probes ORDER BY rowid"):
            yield loads_record(Probe, body)

    def add_plan(self, rows: Iterable[tuple[str, str, str]]) -> None:
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO plan(model, probe_key, completion_key) VALUES (?,?,?)", rows)

    def forget_plan(self) -> None:
        """Probes and plan go (a config that stopped before its first model call is replaced)."""
        with self.transaction() as db:
            db.execute("DELETE FROM plan")
            db.execute("DELETE FROM probes")

    # --- the work lists, a page at a time ------------------------------------------------------
    def count_pending(self, model: str) -> int:
        return self.db.execute("SELECT COUNT(*)" + _PENDING, (model,)).fetchone()[0]

    def pending(self, model: str) -> Iterator[tuple[str, str]]:
        """(probe_key, completion_key) still to generate, in plan order. Keyset pages: no cursor stays
        open while completions are written, and no list of the whole run is built."""
        last = 0
        while True:
            rows = self.db.execute("SELECT p.rowid, p.probe_key, p.completion_key" + _PENDING +
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
            yield from self.db.execute(f"SELECT key, probe_key FROM completions WHERE error IS NULL "
                                       f"AND key IN ({marks})", completion_keys).fetchall()
            return
        last, seen = 0, set()
        while True:
            rows = self.db.execute(_JUDGEABLE, (last, judge, PAGE)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            for _, ckey, probe_key in rows:
                if ckey not in seen:  # one completion may answer several plan rows
                    yield ckey, probe_key
            seen = {r[1] for r in rows}

    # --- completions and responses -----------------------------------------------------------
    def add_completion(self, completion: Completion, response: Response) -> None:
        self.add_completions([(completion, response)])

    def add_completions(self, pairs: list[tuple[Completion, Response]]) -> None:
        """Completions with their split responses, in one transaction (a local engine's batch
        arrives at once; committing it at once loses nothing a kill would not have lost)."""
        now = time.time()
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO completions VALUES (?,?,?,?,?,?)",
                           [(c.key, c.probe_key, c.model, sql_text(c.error), dumps_record(c), now) for c, _ in pairs])
            db.executemany("INSERT OR REPLACE INTO responses VALUES (?,?,?)",
                           [(r.completion_key, r.outcome.value, dumps_record(r)) for _, r in pairs])

    def has_completions(self) -> bool:
        return self.db.execute("SELECT 1 FROM completions LIMIT 1").fetchone() is not None

    def completion(self, key: str) -> Completion | None:
        row = self.db.execute("SELECT body FROM completions WHERE key=?", (key,)).fetchone()
        return loads_record(Completion, row[0]) if row else None

    def response(self, completion_key: str) -> Response | None:
        row = self.db.execute("SELECT body FROM responses WHERE completion_key=?", (completion_key,)).fetchone()
        return loads_record(Response, row[0]) if row else None

    # --- verdicts --------------------------------------------------------------------------
    def has_verdict(self, completion_key: str, channel: Channel, judge: str) -> bool:
        return self.db.execute("SELECT 1 FROM verdicts WHERE completion_key=? AND channel=? AND judge=?",
                               (completion_key, channel.value, judge)).fetchone() is not None

    def cached_verdict(self, cache_key: str) -> Verdict | None:
        row = self.db.execute("SELECT body FROM verdicts WHERE cache_key=? AND label != 'unparseable' LIMIT 1",
                              (cache_key,)).fetchone()
        return loads_record(Verdict, row[0]) if row else None

    def add_verdicts(self, verdicts: Iterable[Verdict]) -> None:
        now = time.time()
        rows = [(v.completion_key, v.channel.value, v.judge, v.cache_key, v.score, v.label.value,
                 int(v.by_prefilter), dumps_record(v), now) for v in verdicts]
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO verdicts VALUES (?,?,?,?,?,?,?,?,?)", rows)

    # --- reading a run -------------------------------------------------------------------------
    def rows(self) -> Iterator[dict[str, Any]]:
        """One dict per (planned item, channel, judge), verdict-less items included once with judge None."""
        q = """
        SELECT pl.model, pr.dataset, pr.sample_id, pr.scenario, pr.attack, pl.probe_key, pl.completion_key,
               r.outcome, c.error, v.channel, v.judge, v.score, v.label, v.by_prefilter, v.body AS vbody,
               """ + ACCOUNT_SQL + """
        FROM plan pl JOIN probes pr ON pr.key = pl.probe_key
        LEFT JOIN completions c ON c.key = pl.completion_key
        LEFT JOIN responses r ON r.completion_key = pl.completion_key
        LEFT JOIN verdicts v ON v.completion_key = pl.completion_key
        ORDER BY pl.rowid, v.judge, v.channel"""
        for row in self.db.execute(q):
            d = dict(row)
            vbody = d.pop("vbody")
            d["rationale"] = sql_text(json.loads(vbody)["rationale"]) if vbody else None
            for f in ACCOUNT_FIELDS:  # after the verdict's columns
                d[f] = d.pop(f)
            yield d

    def counts(self) -> dict[str, Any]:
        one = lambda q, *a: self.db.execute(q, a).fetchone()[0]  # noqa: E731
        per_model = {}
        for (model,) in self.db.execute("SELECT DISTINCT model FROM plan ORDER BY model"):
            per_model[model] = {
                "planned": one("SELECT COUNT(*) FROM plan WHERE model=?", model),
                "completed": one("""SELECT COUNT(*) FROM plan p JOIN completions c ON c.key=p.completion_key
                                    WHERE p.model=? AND c.error IS NULL""", model),
                "errors": one("""SELECT COUNT(*) FROM plan p JOIN completions c ON c.key=p.completion_key
                                 WHERE p.model=? AND c.error IS NOT NULL""", model),
            }
        judges = {j: n for j, n in self.db.execute(
            "SELECT judge, COUNT(*) FROM verdicts WHERE completion_key IN (SELECT completion_key FROM plan) "
            "GROUP BY judge ORDER BY judge")}
        return {"probes": one("SELECT COUNT(*) FROM probes"), "models": per_model, "verdicts": judges}
