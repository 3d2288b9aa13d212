"""Reading a run back: one row per (planned item, channel, judge) for the frames (`results.load`),
and the grouped counts the summary, `status` and the judges' health are made of, counted in SQLite
so memory stays flat however large the run.
"""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

from ..records import ACCOUNT_FIELDS
from ..untrusted import sql_text

_FROM = "FROM plan pl JOIN probes pr ON pr.key = pl.probe_key"
# a response's reasoning account (records.ReasoningAccount) as columns of rows()

ACCOUNT_SQL = ", ".join(f"json_extract(r.body, '$.account.{f}') AS {f}" for f in ACCOUNT_FIELDS)


class RunReading:
    _db: sqlite3.Connection

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
        for row in self._db.execute(q):
            d = dict(row)
            vbody = d.pop("vbody")
            d["rationale"] = sql_text(json.loads(vbody)["rationale"]) if vbody else None
            for f in ACCOUNT_FIELDS:  # after the verdict's columns
                d[f] = d.pop(f)
            yield d

    def counts(self) -> dict[str, Any]:
        one = lambda q, *a: self._db.execute(q, a).fetchone()[0]  # noqa: E731
        per_model = {}
        for (model,) in self._db.execute("SELECT DISTINCT model FROM plan ORDER BY model"):
            per_model[model] = {
                "planned": one("SELECT COUNT(*) FROM plan WHERE model=?", model),
                "completed": one("""SELECT COUNT(*) FROM plan p JOIN completions c ON c.key=p.completion_key
                                    WHERE p.model=? AND c.error IS NULL""", model),
                "errors": one("""SELECT COUNT(*) FROM plan p JOIN completions c ON c.key=p.completion_key
                                 WHERE p.model=? AND c.error IS NOT NULL""", model),
            }
        judges = {j: n for j, n in self._db.execute(
            "SELECT judge, COUNT(*) FROM verdicts WHERE completion_key IN (SELECT completion_key FROM plan) "
            "GROUP BY judge ORDER BY judge")}
        return {"probes": one("SELECT COUNT(*) FROM probes"), "models": per_model, "verdicts": judges}

    # --- meta and the plan's parts ---------------------------------------------------------------
    def meta_items(self, prefix: str) -> Iterator[tuple[str, Any]]:
        """(key without the prefix, value) of every meta entry whose key starts with `prefix`."""
        for key, value in self._db.execute("SELECT key, value FROM meta WHERE substr(key, 1, ?) = ? ORDER BY key",
                                           (len(prefix), prefix)):
            yield key[len(prefix):], json.loads(value)

    def all_meta(self) -> dict[str, Any]:
        return {key: json.loads(value) for key, value in self._db.execute("SELECT key, value FROM meta")}

    def sample_metas(self) -> dict[str, dict[str, Any]]:
        """Each probe's sample meta (the benchmark's own fields), by probe key; probes without one left out."""
        return {key: json.loads(meta) for key, meta in
                self._db.execute("SELECT key, json_extract(body, '$.sample_meta') FROM probes") if meta}

    def planned_models(self) -> list[str]:
        return [m for (m,) in self._db.execute("SELECT DISTINCT model FROM plan ORDER BY model")]

    def time_span(self, table: str) -> tuple[float | None, float | None]:
        """When the first and the last row of `completions` or `verdicts` was written."""
        if table not in ("completions", "verdicts"):
            raise ValueError(table)
        lo, hi = self._db.execute(f"SELECT MIN(created), MAX(created) FROM {table}").fetchone()
        return lo, hi

    # --- the summary's counts ---------------------------------------------------------------------
    def planned_counts(self) -> dict[tuple[str, str, str, str], int]:
        """Planned items per (model, dataset, attack, scenario)."""
        return {tuple(r[:4]): r[4] for r in self._db.execute(
            f"SELECT pl.model, pr.dataset, pr.attack, pr.scenario, COUNT(*) {_FROM} GROUP BY 1, 2, 3, 4")}

    def verdict_judges(self) -> list[str]:
        return [j for (j,) in self._db.execute("SELECT DISTINCT judge FROM verdicts")]

    def verdict_tallies(self, judge: str, success_at: float, harmful_at: float) -> Iterator[tuple[Any, ...]]:
        """Per (channel, model, dataset, attack, scenario): verdicts, judged (readable), successes
        (score >= success_at), harmful (score >= harmful_at) and refusals of one judge."""
        # a NULL score (unparseable) compares as NULL and adds nothing, as NaN does in pandas
        yield from self._db.execute(f"""
                SELECT v.channel, pl.model, pr.dataset, pr.attack, pr.scenario, COUNT(*),
                       TOTAL(v.label != 'unparseable'),
                       TOTAL(v.label != 'unparseable' AND v.score >= ?),
                       TOTAL(v.label != 'unparseable' AND v.score >= ?),
                       TOTAL(v.label = 'refusal')
                {_FROM} JOIN verdicts v ON v.completion_key = pl.completion_key
                WHERE v.judge = ? GROUP BY 1, 2, 3, 4, 5""", (success_at, harmful_at, judge))

    def outcome_counts(self) -> Iterator[tuple[str, str, str, str, int]]:
        """(model, dataset, attack, outcome or 'pending', distinct completions)."""
        yield from self._db.execute(f"""
            SELECT pl.model, pr.dataset, pr.attack, COALESCE(r.outcome, 'pending'), COUNT(DISTINCT pl.completion_key)
            {_FROM} LEFT JOIN responses r ON r.completion_key = pl.completion_key GROUP BY 1, 2, 3, 4""")

    def planned_errors(self) -> Iterator[tuple[str, str | None]]:
        """(model, error) of every planned item whose response is an error."""
        yield from self._db.execute(f"""
            SELECT pl.model, c.error {_FROM} JOIN responses r ON r.completion_key = pl.completion_key
            LEFT JOIN completions c ON c.key = pl.completion_key WHERE r.outcome = 'error'""")

    # --- status and the judges' health -----------------------------------------------------------
    def channels_to_judge(self) -> int:
        """What a judge has to read: every non-empty channel of every answered planned completion."""
        return self._db.execute("""
            SELECT COALESCE(SUM((COALESCE(json_extract(r.body, '$.reasoning'), '') != '')
                              + (COALESCE(json_extract(r.body, '$.answer'), '') != '')
                              + (COALESCE(json_extract(r.body, '$.full'), '') != '')), 0)
            FROM responses r JOIN completions c ON c.key = r.completion_key
            WHERE c.error IS NULL AND r.completion_key IN (SELECT completion_key FROM plan)""").fetchone()[0]

    def judge_counts(self, failed_mark: str) -> list[tuple[str, int, int, int]]:
        """Per judge, in name order, over planned completions: verdicts, unparseable ones, and of those
        the failed calls (their rationale holds `failed_mark`)."""
        rows = self._db.execute(
            "SELECT judge, COUNT(*), SUM(label = 'unparseable'), "
            "SUM(label = 'unparseable' AND instr(body, ?) > 0) FROM verdicts "
            "WHERE completion_key IN (SELECT completion_key FROM plan) GROUP BY judge ORDER BY judge",
            (failed_mark,)).fetchall()
        return [(j, n, int(u or 0), int(f or 0)) for j, n, u, f in rows]
