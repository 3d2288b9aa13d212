"""The reasoning-safety analysis of `safemlrm analyze`: rates, score distributions, the keyword
pre-filter's share, self-correction and judge agreement, and `analyze`, every analysis at once
(the base -> reasoning comparisons are in `pairs`, the benchmarks' own metrics in `benchmarks`).
The conventions every analysis shares are in `runs`.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from .benchmarks import mssbench_accuracy, siuo_rates
from .load import RunResults
from .metrics import ALL, cohen_kappa, metric_settings, rate_table, self_correction_threshold
from .metrics_control import control_tables
from .pairs import blind_spots, model_pairs, reasoning_tax
from .reasoning_stats import asr_by_think_length, think_lengths
from .runs import UNPARSEABLE, AnalysisError, Results, check_judge, read_runs, share_ci, threshold_for, verdicts_of

__all__ = ["AnalysisError", "analyze", "asr_by_think", "blind_spots", "judge_agreement", "model_pairs",
           "mssbench_accuracy", "prefilter_share", "rates", "reasoning_tax", "score_distribution",
           "self_correction", "siuo_rates", "think_length_distribution"]

# --- rates and distributions ----------------------------------------------------------------------


def rates(results: Results, asr_threshold: float | None = None, harmful_threshold: float | None = None,
          confidence: float = 0.95) -> pd.DataFrame:
    """`metrics.rate_table` over the runs together: one row per (model, dataset, attack, scenario incl.
    ALL, judge, channel) with ASR, harmful rate, refusal rate and their Wilson intervals."""
    r = read_runs(results)
    return rate_table(r.verdicts, r.planned, r.scales, asr_threshold, harmful_threshold, confidence)


def score_distribution(results: Results, judge: str, channel: str = "full", confidence: float = 0.95,
                       by_scenario: bool = False) -> pd.DataFrame:
    """Counts per score per (model, dataset, attack), and per scenario too with `by_scenario` (then
    with a `scenario` column, ALL included). Every whole score of the judge's scale is listed (count 0
    included), plus any other score seen (0 from a keyword pre-filter); unparseable verdicts are a
    row of their own with `score` NaN and `unparseable` True.

    Columns: model, dataset, attack, [scenario,] judge, channel, score, unparseable, count, n, share,
    share_lo, share_hi (n: verdicts of the group; share: count / n with its Wilson interval)."""
    r = read_runs(results)
    scale = check_judge(r, judge)
    v = verdicts_of(r.verdicts, judge, channel)
    grid: set[float] = set()
    if float(scale.low).is_integer() and float(scale.high).is_integer():
        grid = {float(x) for x in range(int(scale.low), int(scale.high) + 1)}
    rows = []
    for (model, dataset, attack), g in v.groupby(["model", "dataset", "attack"], sort=True):
        groups = [(ALL, g), *g.groupby("scenario", sort=True)] if by_scenario else [(None, g)]
        for scenario, gs in groups:
            where = dict(model=model, dataset=dataset, attack=attack)
            if by_scenario:
                where["scenario"] = scenario
            n = len(gs)
            bad = gs["label"] == UNPARSEABLE
            counts = gs.loc[~bad, "score"].astype(float).value_counts()
            for score, k, unparseable in [*((s, int(counts.get(s, 0)), False) for s in sorted(grid | set(counts.index))),
                                          (math.nan, int(bad.sum()), True)]:
                share, lo, hi = share_ci(k, n, confidence)
                rows.append(dict(**where, judge=judge, channel=channel, score=score, unparseable=unparseable, count=k,
                                 n=n, share=share, share_lo=lo, share_hi=hi))
    keys = ["model", "dataset", "attack", *(["scenario"] if by_scenario else [])]
    return pd.DataFrame(rows, columns=[*keys, "judge", "channel", "score", "unparseable", "count", "n", "share",
                                       "share_lo", "share_hi"])


def prefilter_share(results: Results, judge: str, confidence: float = 0.95) -> pd.DataFrame:
    """How many of a judge's verdicts its keyword pre-filter made (no judge call), per (model, dataset,
    attack, channel). Columns: model, dataset, attack, channel, judge, verdicts, by_prefilter,
    by_judge, unparseable, share, share_lo, share_hi (share = by_prefilter / verdicts)."""
    r = read_runs(results)
    check_judge(r, judge)
    v = r.verdicts[r.verdicts["judge"] == judge]
    rows = []
    for (model, dataset, attack, channel), g in v.groupby(["model", "dataset", "attack", "channel"], sort=True):
        n = len(g)
        k = int(g["by_prefilter"].fillna(0).astype(int).sum())
        share, lo, hi = share_ci(k, n, confidence)
        rows.append(dict(model=model, dataset=dataset, attack=attack, channel=channel, judge=judge, verdicts=n,
                         by_prefilter=k, by_judge=n - k, unparseable=int((g["label"] == UNPARSEABLE).sum()),
                         share=share, share_lo=lo, share_hi=hi))
    return pd.DataFrame(rows, columns=["model", "dataset", "attack", "channel", "judge", "verdicts", "by_prefilter",
                                       "by_judge", "unparseable", "share", "share_lo", "share_hi"])


# --- self-correction ------------------------------------------------------------------------------

_SC_COLUMNS = ["model", "dataset", "attack", "judge", "threshold", "n", "rsafe_asafe", "rsafe_aunsafe",
               "runsafe_asafe", "runsafe_aunsafe", "unsafe_reasoning", "corrected_share", "corrected_lo",
               "corrected_hi", "safe_reasoning", "reverse_share", "reverse_lo", "reverse_hi", "no_reasoning",
               "no_answer", "unparseable"]


def self_correction(results: Results, judge: str, threshold: float | None = None,
                    confidence: float = 0.95) -> pd.DataFrame:
    """The 2x2 table of reasoning safe/unsafe against answer safe/unsafe per (model, dataset, attack),
    over items whose reasoning and answer were both judged (unsafe: score >= threshold).

    corrected_share = runsafe_asafe / unsafe_reasoning: unsafe reasoning that ends in a safe answer.
    reverse_share = rsafe_aunsafe / safe_reasoning: safe reasoning that ends in an unsafe answer.
    Also counted: no_reasoning (an answer verdict and no reasoning channel, as for base models),
    no_answer (reasoning but no answer, as after an unclosed think), unparseable (either verdict)."""
    r = read_runs(results)
    t = threshold_for(check_judge(r, judge), threshold)
    v = r.verdicts[r.verdicts["judge"] == judge]
    key = ["model", "dataset", "attack", "probe_key"]
    cols = [*key, "score", "label"]
    both = (v[v["channel"] == "reasoning"][cols]
            .merge(v[v["channel"] == "answer"][cols], on=key, how="outer", suffixes=("_r", "_a")))
    rows = []
    for (model, dataset, attack), _ in v.groupby(["model", "dataset", "attack"], sort=True):
        g = both[(both["model"] == model) & (both["dataset"] == dataset) & (both["attack"] == attack)]
        has_r, has_a = g["label_r"].notna(), g["label_a"].notna()
        bad = (g["label_r"] == UNPARSEABLE) | (g["label_a"] == UNPARSEABLE)
        ok = g[has_r & has_a & ~bad]
        ur, ua = ok["score_r"].astype(float) >= t, ok["score_a"].astype(float) >= t
        counts = {"rsafe_asafe": int((~ur & ~ua).sum()), "rsafe_aunsafe": int((~ur & ua).sum()),
                  "runsafe_asafe": int((ur & ~ua).sum()), "runsafe_aunsafe": int((ur & ua).sum())}
        unsafe_r = counts["runsafe_asafe"] + counts["runsafe_aunsafe"]
        safe_r = counts["rsafe_asafe"] + counts["rsafe_aunsafe"]
        cs, clo, chi = share_ci(counts["runsafe_asafe"], unsafe_r, confidence)
        rs, rlo, rhi = share_ci(counts["rsafe_aunsafe"], safe_r, confidence)
        rows.append(dict(model=model, dataset=dataset, attack=attack, judge=judge, threshold=t, n=len(ok), **counts,
                         unsafe_reasoning=unsafe_r, corrected_share=cs, corrected_lo=clo, corrected_hi=chi,
                         safe_reasoning=safe_r, reverse_share=rs, reverse_lo=rlo, reverse_hi=rhi,
                         no_reasoning=int((~has_r & has_a).sum()), no_answer=int((has_r & ~has_a).sum()),
                         unparseable=int(bad.sum())))
    return pd.DataFrame(rows, columns=_SC_COLUMNS)


# --- judges against each other --------------------------------------------------------------------


def judge_agreement(results: Results, judge_a: str, judge_b: str, channel: str = "full", on: str = "success",
                    threshold_a: float | None = None, threshold_b: float | None = None) -> dict[str, Any]:
    """Cohen's kappa and the confusion table of two judges over the verdicts both gave (same model,
    item and channel), neither unparseable.

    on: "success" (default) compares attack-success decisions, 1 when score >= the judge's threshold,
    which works across scales (keyword against rubric); "label" compares labels; "score" compares
    scores (for two judges on one scale). Returns a dict: judge_a, judge_b, channel, on, n,
    agreement (observed share of equal decisions), kappa (NaN when chance agreement is 1),
    confusion (DataFrame: rows judge_a's values, columns judge_b's), unparseable_a, unparseable_b,
    only_a, only_b (verdicts without a counterpart)."""
    if on not in ("success", "label", "score"):
        raise AnalysisError(f"judge_agreement: on must be success, label or score, not {on!r}")
    r = read_runs(results)
    ta = threshold_for(check_judge(r, judge_a), threshold_a)
    tb = threshold_for(check_judge(r, judge_b), threshold_b)
    key = ["model", "probe_key"]
    va = verdicts_of(r.verdicts, judge_a, channel)[[*key, "score", "label"]]
    vb = verdicts_of(r.verdicts, judge_b, channel)[[*key, "score", "label"]]
    m = va.merge(vb, on=key, how="outer", suffixes=("_a", "_b"), indicator=True)
    both = m[m["_merge"] == "both"]
    bad_a, bad_b = both["label_a"] == UNPARSEABLE, both["label_b"] == UNPARSEABLE
    ok = both[~bad_a & ~bad_b]
    if on == "success":
        a, b = (ok["score_a"].astype(float) >= ta).astype(int), (ok["score_b"].astype(float) >= tb).astype(int)
    elif on == "label":
        a, b = ok["label_a"], ok["label_b"]
    else:
        a, b = ok["score_a"].astype(float), ok["score_b"].astype(float)
    cats = sorted(set(a) | set(b), key=lambda x: (str(type(x)), x))
    confusion = (pd.crosstab(a.rename(judge_a), b.rename(judge_b)).reindex(index=cats, columns=cats, fill_value=0)
                 if len(ok) else pd.DataFrame())
    agreement = float((a.to_numpy() == b.to_numpy()).mean()) if len(ok) else math.nan
    return {"judge_a": judge_a, "judge_b": judge_b, "channel": channel, "on": on, "n": int(len(ok)),
            "agreement": agreement, "kappa": cohen_kappa(confusion) if len(ok) else math.nan,
            "confusion": confusion, "unparseable_a": int(bad_a.sum()), "unparseable_b": int(bad_b.sum()),
            "only_a": int((m["_merge"] == "left_only").sum()), "only_b": int((m["_merge"] == "right_only").sum())}


# --- everything at once (the `safemlrm analyze` command) -----------------------------------------


def think_length_distribution(results: Results) -> pd.DataFrame:
    """Reasoning tokens per model (reasoning_stats.think_lengths) over the runs together."""
    return think_lengths(read_runs(results).planned)


def asr_by_think(results: Results, judge: str, channel: str = "full", threshold: float | None = None) -> pd.DataFrame:
    """ASR per (model, think-length bin) (reasoning_stats.asr_by_think_length) over the runs together."""
    r = read_runs(results)
    return asr_by_think_length(r.verdicts, judge, channel, check_judge(r, judge), threshold)


def analyze(results: Results, judges: Sequence[str] | None = None, channel: str = "full", n_boot: int = 2000,
            seed: int = 0, factor: float = 2.0, threshold: float | None = None,
            unsafe_threshold: float | None = None) -> dict[str, Any]:
    """Every analysis for the given judges (default: every judge with verdicts), as a dict of
    DataFrames (`rates`, `score_distribution`, `self_correction`, `reasoning_tax`, `blind_spots`,
    `prefilter_share`, `mssbench_accuracy`) plus `judge_agreement`, a list of judge_agreement()
    dicts for each pair of judges. `threshold` applies to every judge; None: the first run's `metrics:`
    setting, else each judge's default (metrics.metric_settings, the rule every command follows).
    `unsafe_threshold`: self-correction's own cut-off (metrics.self_correction_threshold)."""
    r = read_runs(results)
    found = sorted(set(r.verdicts["judge"]))
    chosen = list(dict.fromkeys(judges)) if judges else found
    for j in chosen:
        check_judge(r, j)
    every = list(results) if not isinstance(results, RunResults) else [results]
    config = every[0].config if every else {}
    threshold, harmful_at, confidence = metric_settings(config, threshold, None, None)
    unsafe_at = self_correction_threshold(config, unsafe_threshold, threshold)
    rate = rates(every, threshold, harmful_at, confidence)
    out: dict[str, Any] = {"rates": rate[rate["judge"].isin(chosen)].reset_index(drop=True) if not rate.empty else rate}
    parts: dict[str, list[pd.DataFrame]] = {k: [] for k in ("score_distribution", "self_correction", "reasoning_tax",
                                                           "blind_spots", "prefilter_share", "mssbench_accuracy",
                                                           "asr_by_think_length")}
    for j in chosen:
        parts["score_distribution"].append(score_distribution(every, j, channel))
        parts["self_correction"].append(self_correction(every, j, unsafe_at))
        parts["reasoning_tax"].append(reasoning_tax(every, j, channel, n_boot=n_boot, seed=seed, threshold=threshold))
        parts["blind_spots"].append(blind_spots(every, j, channel, factor=factor, threshold=threshold))
        parts["prefilter_share"].append(prefilter_share(every, j))
        parts["asr_by_think_length"].append(asr_by_think(every, j, channel, threshold))
        if r.judges.get(j, {}).get("name") == "mssbench":
            parts["mssbench_accuracy"].append(mssbench_accuracy(every, j, channel))
    for k, frames in parts.items():
        frames = [f for f in frames if not f.empty]
        out[k] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    out.update(control_tables(r.verdicts, r.scales, r.cards, rate, chosen, channel, threshold))  # samples, sweeps
    out["think_lengths"] = think_length_distribution(every)
    out["judge_agreement"] = [judge_agreement(every, a, b, channel, threshold_a=threshold, threshold_b=threshold)
                              for a, b in itertools.combinations(chosen, 2)]
    from ..judges.correction import corrected_rates  # beside the raw rate, for judges citing a validation file

    out["corrected_rates"] = corrected_rates(out["rates"], r.judges, threshold, seed=seed)
    from .trace_findings import all_trace_findings  # beside self-correction: what the trace knew

    out["trace_findings"] = all_trace_findings(every, chosen, r.judges, threshold)
    return out
