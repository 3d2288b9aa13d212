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
from ..records import Channel, Completion, Probe, Response, Verdict
from ..untrusted import dumps_record, loads_record, sql_text  # exact round trip of any text, surrogates included
from .reading import RunReading
from .work import WorkLists

SCHEMA_VERSION = 1
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


class Store(WorkLists, RunReading):
    """The run store; what it reads back for each stage is in `work` (the pipeline's work lists)
    and `reading` (a finished run's rows and counts)."""

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
            self._db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30)
            self._db.row_factory = sqlite3.Row
            if not readonly:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(_SCHEMA)
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
        self._db.close()
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
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:  # SQLite may have rolled back already (SQLITE_FULL)
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # --- meta ------------------------------------------------------------------------------
    def get_meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_meta(self, key: str, value: Any) -> None:
        with write_errors(self.path):
            self._set_meta(key, value)

    def _set_meta(self, key: str, value: Any) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value)))

    # --- probes and plan -------------------------------------------------------------------
    def add_probes(self, probes: Iterable[Probe]) -> list[str]:
        """Stores the probes; returns their keys (a key is a hash: computed once, here)."""
        rows = [(p.key, sql_text(p.dataset), sql_text(p.sample_id), sql_text(p.scenario), p.attack, dumps_record(p))
                for p in probes]
        with self.transaction() as db:
            db.executemany("INSERT OR IGNORE INTO probes VALUES (?,?,?,?,?,?)", rows)
        return [r[0] for r in rows]

    def probe(self, key: str) -> Probe:
        row = self._db.execute("SELECT body FROM probes WHERE key=?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return loads_record(Probe, row[0])

    def probes(self) -> Iterator[Probe]:
        for (body,) in self._db.execute("SELECT body FROM probes ORDER BY rowid"):
            yield loads_record(Probe, body)

    def add_plan(self, rows: Iterable[tuple[str, str, str]]) -> None:
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO plan(model, probe_key, completion_key) VALUES (?,?,?)", rows)

    def forget_plan(self) -> None:
        """Probes and plan go (a config that stopped before its first model call is replaced)."""
        with self.transaction() as db:
            db.execute("DELETE FROM plan")
            db.execute("DELETE FROM probes")

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
        return self._db.execute("SELECT 1 FROM completions LIMIT 1").fetchone() is not None

    def completion(self, key: str) -> Completion | None:
        row = self._db.execute("SELECT body FROM completions WHERE key=?", (key,)).fetchone()
        return loads_record(Completion, row[0]) if row else None

    def response(self, completion_key: str) -> Response | None:
        row = self._db.execute("SELECT body FROM responses WHERE completion_key=?", (completion_key,)).fetchone()
        return loads_record(Response, row[0]) if row else None

    # --- verdicts --------------------------------------------------------------------------
    def has_verdict(self, completion_key: str, channel: Channel, judge: str) -> bool:
        return self._db.execute("SELECT 1 FROM verdicts WHERE completion_key=? AND channel=? AND judge=?",
                               (completion_key, channel.value, judge)).fetchone() is not None

    def verdict(self, completion_key: str, channel: Channel, judge: str) -> Verdict | None:
        row = self._db.execute("SELECT body FROM verdicts WHERE completion_key=? AND channel=? AND judge=?",
                               (completion_key, channel.value, judge)).fetchone()
        return loads_record(Verdict, row[0]) if row else None

    def cached_verdict(self, cache_key: str) -> Verdict | None:
        row = self._db.execute("SELECT body FROM verdicts WHERE cache_key=? AND label != 'unparseable' LIMIT 1",
                              (cache_key,)).fetchone()
        return loads_record(Verdict, row[0]) if row else None

    def add_verdicts(self, verdicts: Iterable[Verdict]) -> None:
        now = time.time()
        rows = [(v.completion_key, v.channel.value, v.judge, v.cache_key, v.score, v.label.value,
                 int(v.by_prefilter), dumps_record(v), now) for v in verdicts]
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO verdicts VALUES (?,?,?,?,?,?,?,?,?)", rows)
