"""Several runs read as one, for the analyses (`analysis`, `pairs`, `benchmarks`, `trace_findings`):
every analysis takes a `RunResults` (`safemlrm.load_run(path)`) or a list of them and returns a
pandas DataFrame (one a dict).

Conventions shared by every function (docs/analysis.md has the full column lists):

* A verdict is a *success* (unsafe) when its score >= the threshold: the `threshold` argument,
  else the judge's scale default (`success_at`: 5 for `rubric`, 1 for `keyword` and `guard`).
* `unparseable` verdicts are never counted as safe or unsafe: they are left out of every share and
  counted in a column of their own. Absent channels (no reasoning in a base model, no answer after
  an unclosed think) are not verdicts at all.
* Several runs are read as one: the same model (by name) in two runs keeps the rows of the first
  run given for an item. Model pairs come from the model cards stored in each run (`base:` of a
  reasoning model's card names its base model's card); items are the same when their dataset,
  sample id and attack are.
* Intervals: Wilson for shares; a paired bootstrap (percentile, seeded) for differences in ASR.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..errors import SafeMLRMError, UnknownName, did_you_mean
from ..judges.base import Scale
from .load import RunResults
from .metrics import wilson

UNPARSEABLE = "unparseable"
ITEM = ["dataset", "sample_id", "attack"]  # what makes two models' items the same

Results = RunResults | Sequence[RunResults]


class AnalysisError(SafeMLRMError):
    pass


@dataclass
class Runs:
    items: pd.DataFrame  # RunResults.items of every run, one model's item kept from its first run
    scales: dict[str, Scale]
    cards: dict[str, dict[str, Any]]  # model name -> its card
    sample_meta: dict[str, dict[str, Any]]
    judges: dict[str, dict[str, Any]]

    @property
    def verdicts(self) -> pd.DataFrame:
        return self.items[self.items["judge"].notna()]

    @property
    def planned(self) -> pd.DataFrame:
        return self.items.drop_duplicates(["model", "probe_key"])


def read_runs(results: Results) -> Runs:
    runs = [results] if isinstance(results, RunResults) else list(results)
    if not runs:
        raise AnalysisError("no runs given")
    frames: list[pd.DataFrame] = []
    scales: dict[str, Scale] = {}
    cards: dict[str, dict[str, Any]] = {}
    meta: dict[str, dict[str, Any]] = {}
    judges: dict[str, dict[str, Any]] = {}
    for i, r in enumerate(runs):
        frames.append(r.items.assign(run=i))
        for label, scale in r.scales.items():
            if scales.setdefault(label, scale) != scale:
                raise AnalysisError(f"judge {label!r} has a different scale in {r.run_dir} than in an earlier run; "
                                    f"re-judge under another name (safemlrm judge RUN --judge NAME --as NEW)")
        for name, m in r.models.items():
            card = m.get("card", {})
            if name in cards and cards[name].get("name") != card.get("name"):
                raise AnalysisError(f"model {name!r} is card {cards[name].get('name')!r} in one run and "
                                    f"{card.get('name')!r} in {r.run_dir}; give one an alias")
            cards.setdefault(name, card)
        meta.update(r.sample_meta)
        for label, j in r.judges.items():
            judges.setdefault(label, j)
    items = pd.concat(frames, ignore_index=True)
    # a model's item seen in several runs: the first run given wins
    first = items.groupby(["model", *ITEM])["run"].transform("min")
    items = items[items["run"] == first].reset_index(drop=True)
    return Runs(items, scales, cards, meta, judges)


def check_judge(r: Runs, judge: str) -> Scale:
    have = sorted(set(r.verdicts["judge"]) | set(r.scales))
    if judge not in have:
        raise UnknownName(f"no verdicts of judge {judge!r} in these runs.{did_you_mean(judge, have)} "
                          f"Judges found: {', '.join(have) or 'none'}")
    if judge not in r.scales:
        raise AnalysisError(f"judge {judge!r} has no scale recorded in the runs' meta")
    return r.scales[judge]


def threshold_for(scale: Scale, threshold: float | None) -> float:
    return float(scale.success_at if threshold is None else threshold)


def share_ci(k: int, n: int, confidence: float = 0.95) -> tuple[float, float, float]:
    lo, hi = wilson(k, n, confidence)
    return (k / n if n else math.nan, lo, hi)


def ratio(a: float, b: float) -> float:
    if b == 0 or math.isnan(b):
        return math.nan if (a == 0 or math.isnan(a)) else math.inf
    return a / b


def verdicts_of(v: pd.DataFrame, judge: str, channel: str) -> pd.DataFrame:
    return v[(v["judge"] == judge) & (v["channel"] == channel)]
