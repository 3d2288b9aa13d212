"""A run's summary figures counted inside SQLite.

`summary.md`, `metrics.csv` and `outcomes.csv` are written at the end of every run; they need
grouped counts, not rows. Counting in SQL keeps the run's memory flat as it grows (a 100k-probe run
needs no more than a 1k one), where reading every row into pandas (`results.load_run`, for analysis)
grows with it. `metrics.rate_rows` turns the counts into the same table `RunResults.rates()` gives.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..judges.base import registered_scales
from ..store import Store
from .attack_order import configured_attacks, in_configured_order
from .load import RunResults
from .metrics import GROUP, Tally, metric_settings, rate_rows, thresholds

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


def error_table(failed: Iterable[tuple[str, str | None]]) -> pd.DataFrame:
    """(model, error) of failed planned items -> model, cause, count."""
    causes = Counter((model, error_cause(error)) for model, error in failed)
    return pd.DataFrame([(m, c, n) for (m, c), n in sorted(causes.items())], columns=["model", "cause", "count"])


def summary_of(res: RunResults) -> RunSummary:
    """The same summary from a run already read into frames (the report reads each run once)."""
    order = configured_attacks([res.config])
    planned = res.planned
    failed = planned[planned["outcome"] == "error"]
    outcomes = res.outcomes().rename_axis(columns=None) if not planned.empty else pd.DataFrame()
    return RunSummary(run_dir=res.run_dir, config=res.config, rates=in_configured_order(res.rates(), order),
                      outcomes=in_configured_order(outcomes, order),
                      errors=error_table(zip(failed["model"], failed["error"])))


def summarize(store: Store, asr_threshold: float | None = None, harmful_threshold: float | None = None,
              confidence: float | None = None) -> RunSummary:
    """Thresholds and confidence left as None come from the run's `metrics:` settings."""
    config = store.get_meta("config") or {}
    asr_threshold, harmful_threshold, confidence = metric_settings(config, asr_threshold, harmful_threshold,
                                                                   confidence)
    scales = registered_scales(store.get_meta("judges"))
    planned = store.planned_counts()
    tallies: dict[tuple, Tally] = {}
    for judge in store.verdict_judges():
        succ_at, harm_at = thresholds(scales.get(judge), asr_threshold, harmful_threshold)
        for row in store.verdict_tallies(judge, succ_at, harm_at):
            group = (judge, *row[:5])
            tallies[group] = Tally(*(int(x) for x in row[5:]))
    rates = rate_rows(tallies, planned, scales, asr_threshold, harmful_threshold, confidence)

    outcome_counts = [dict(zip([*GROUP, "outcome", "n"], r)) for r in store.outcome_counts()]
    outcomes = (pd.DataFrame(outcome_counts).pivot_table(index=list(GROUP), columns="outcome", values="n",
                                                         aggfunc="sum", fill_value=0)
                .rename_axis(columns=None).reset_index() if outcome_counts else pd.DataFrame())

    errors = error_table(store.planned_errors())
    order = configured_attacks([config])  # summary.md, metrics.csv, outcomes.csv: the baseline first
    return RunSummary(run_dir=store.run_dir, config=config, rates=in_configured_order(rates, order),
                      outcomes=in_configured_order(outcomes, order), errors=errors)
