"""A run's summary figures counted inside SQLite.

`summary.md`, `metrics.csv` and `outcomes.csv` are written at the end of every run; they need
grouped counts, not rows. Counting in SQL keeps the run's memory flat as it grows (a 100k-probe run
needs no more than a 1k one), where reading every row into pandas (`results.load_run`, for analysis)
grows with it. `metrics.rate_rows` turns the counts into the same table `RunResults.rates()` gives.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .attack_order import configured_attacks, in_configured_order
from ..judges.base import registered_scales
from .metrics import GROUP, Tally, metric_settings, rate_rows, thresholds
from ..store import Store

_FROM = "FROM plan pl JOIN probes pr ON pr.key = pl.probe_key"


@dataclass
class RunSummary:
    run_dir: Path
    config: dict[str, Any]
    rates: pd.DataFrame  # as metrics.rate_table
    outcomes: pd.DataFrame  # as metrics.outcome_table
    errors: pd.DataFrame  # model, cause, count: failed planned items by the cause's first words

    @property
    def failed(self) -> int:
        """Planned items whose response is an error."""
        return int(self.errors["count"].sum())


def error_cause(error: str | None) -> str:
    """"HTTP 503 after 7 attempts: <body>" -> "HTTP 503 after 7 attempts": a cause, without the details."""
    return str(error if error is not None else "unknown").split(":", 1)[0]


def summarize(store: Store, asr_threshold: float | None = None, harmful_threshold: float | None = None,
              confidence: float | None = None) -> RunSummary:
    """Thresholds and confidence left as None come from the run's `metrics:` settings."""
    config = store.get_meta("config") or {}
    asr_threshold, harmful_threshold, confidence = metric_settings(config, asr_threshold, harmful_threshold,
                                                                   confidence)
    scales = registered_scales(store.get_meta("judges"))
    db = store.db

    planned = {tuple(r[:4]): r[4] for r in db.execute(
        f"SELECT pl.model, pr.dataset, pr.attack, pr.scenario, COUNT(*) {_FROM} GROUP BY 1, 2, 3, 4")}
    tallies: dict[tuple, Tally] = {}
    for (judge,) in db.execute("SELECT DISTINCT judge FROM verdicts"):
        succ_at, harm_at = thresholds(scales.get(judge), asr_threshold, harmful_threshold)
        # a NULL score (unparseable) compares as NULL and adds nothing, as NaN does in pandas
        for row in db.execute(f"""
                SELECT v.channel, pl.model, pr.dataset, pr.attack, pr.scenario, COUNT(*),
                       TOTAL(v.label != 'unparseable'),
                       TOTAL(v.label != 'unparseable' AND v.score >= ?),
                       TOTAL(v.label != 'unparseable' AND v.score >= ?),
                       TOTAL(v.label = 'refusal')
                {_FROM} JOIN verdicts v ON v.completion_key = pl.completion_key
                WHERE v.judge = ? GROUP BY 1, 2, 3, 4, 5""", (succ_at, harm_at, judge)):
            tallies[(judge, *row[:5])] = Tally(*(int(x) for x in row[5:]))
    rates = rate_rows(tallies, planned, scales, asr_threshold, harmful_threshold, confidence)

    outcome_counts = [dict(zip([*GROUP, "outcome", "n"], r)) for r in db.execute(f"""
        SELECT pl.model, pr.dataset, pr.attack, COALESCE(r.outcome, 'pending'), COUNT(DISTINCT pl.completion_key)
        {_FROM} LEFT JOIN responses r ON r.completion_key = pl.completion_key GROUP BY 1, 2, 3, 4""")]
    outcomes = (pd.DataFrame(outcome_counts).pivot_table(index=list(GROUP), columns="outcome", values="n",
                                                         aggfunc="sum", fill_value=0)
                .rename_axis(columns=None).reset_index() if outcome_counts else pd.DataFrame())

    causes: Counter[tuple[str, str]] = Counter()
    for model, error in db.execute(f"""
            SELECT pl.model, c.error {_FROM} JOIN responses r ON r.completion_key = pl.completion_key
            LEFT JOIN completions c ON c.key = pl.completion_key WHERE r.outcome = 'error'"""):
        causes[(model, error_cause(error))] += 1
    errors = pd.DataFrame([(m, c, n) for (m, c), n in sorted(causes.items())], columns=["model", "cause", "count"])
    order = configured_attacks([config])  # summary.md, metrics.csv, outcomes.csv: the baseline first
    return RunSummary(run_dir=store.run_dir, config=config, rates=in_configured_order(rates, order),
                      outcomes=in_configured_order(outcomes, order), errors=errors)

