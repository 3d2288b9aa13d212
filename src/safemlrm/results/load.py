"""A finished (or half-finished) run as pandas DataFrames: `safemlrm.load_run(path)`."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..judges.base import Scale, registered_scales
from .metrics import metric_settings, outcome_table, rate_table
from ..records import ACCOUNT_FIELDS
from ..store import Store


@dataclass
class RunResults:
    run_dir: Path
    config: dict[str, Any]
    items: pd.DataFrame  # one row per (planned item, channel, judge); items without verdicts once
    scales: dict[str, Scale]
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # model name -> {"card": {...}, "identity": {...}}
    judges: dict[str, dict[str, Any]] = field(default_factory=dict)  # judge label -> {"name", "identity", ...}
    sample_meta: dict[str, dict[str, Any]] = field(default_factory=dict)  # probe key -> the sample's meta

    @property
    def planned(self) -> pd.DataFrame:
        return self.items.drop_duplicates(["model", "probe_key"])

    @property
    def verdicts(self) -> pd.DataFrame:
        return self.items[self.items["judge"].notna()]

    def scores(self, judge: str, channel: str | None = None) -> pd.DataFrame:
        """One judge's verdicts (one channel's, if given): score, label, by_prefilter and the item's keys."""
        v = self.verdicts
        v = v[v["judge"] == judge]
        return v[v["channel"] == channel] if channel is not None else v

    def outcomes(self) -> pd.DataFrame:
        return outcome_table(self.planned)

    def rates(self, asr_threshold: float | None = None, harmful_threshold: float | None = None,
              confidence: float | None = None) -> pd.DataFrame:
        return rate_table(self.verdicts, self.planned, self.scales,
                          *metric_settings(self.config, asr_threshold, harmful_threshold, confidence))


_COLUMNS = ["model", "dataset", "sample_id", "scenario", "attack", "probe_key", "completion_key", "outcome",
            "error", "channel", "judge", "score", "label", "by_prefilter", "rationale", *ACCOUNT_FIELDS]


def load_store(store: Store) -> RunResults:
    items = pd.DataFrame(list(store.rows()), columns=_COLUMNS)
    judges = store.get_meta("judges") or {}
    scales = registered_scales(judges)
    return RunResults(run_dir=store.run_dir, config=store.get_meta("config") or {}, items=items, scales=scales,
                      models=dict(store.meta_items("model:")), judges=judges, sample_meta=store.sample_metas())


def load_run(path: str | Path) -> RunResults:
    store = Store(path, readonly=True)
    try:
        return load_store(store)
    finally:
        store.close()
