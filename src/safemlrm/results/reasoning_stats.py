"""Reasoning accounting across a run: how long each model thinks, and ASR by how long it thought.

Reads the per-sample account (records.ReasoningAccount) that the split stores with every response.
Think-length bins are fixed token edges (THINK_BINS), the same for every model and every command,
so two models' rows compare directly.
"""
from __future__ import annotations

import math

import pandas as pd

from .metrics import thresholds, wilson

THINK_BINS = (0, 1, 64, 256, 1024, 4096, math.inf)  # reasoning tokens: [lo, hi)


def _label(lo: float, hi: float) -> str:
    return "0" if hi == 1 else f"{lo}+" if hi == math.inf else f"{lo}-{int(hi) - 1}"


BIN_LABELS = tuple(_label(lo, hi) for lo, hi in zip(THINK_BINS, THINK_BINS[1:]))


def _bin(tokens: float) -> str:
    for (lo, hi), label in zip(zip(THINK_BINS, THINK_BINS[1:]), BIN_LABELS):
        if lo <= tokens < hi:
            return label
    return "unknown"  # NaN: no token count


def think_lengths(planned: pd.DataFrame) -> pd.DataFrame:
    """Per model (and thinking mode): how many samples, reasoning-token quantiles, the share whose
    reasoning closed, and the share cut by the length limit. Columns: model, thinking, n, counted,
    mean, p50, p90, max, closed_share, length_share."""
    rows = []
    p = planned[planned["outcome"].notna() & (planned["outcome"] != "error")]
    for model, g in p.groupby("model", sort=True):
        tok = pd.to_numeric(g["reasoning_tokens"], errors="coerce").dropna()
        thinking = g["thinking"].dropna()
        rows.append(dict(model=model, thinking=thinking.iloc[0] if len(thinking) else None, n=len(g),
                         counted=len(tok), mean=tok.mean() if len(tok) else math.nan,
                         p50=tok.quantile(0.5) if len(tok) else math.nan,
                         p90=tok.quantile(0.9) if len(tok) else math.nan,
                         max=tok.max() if len(tok) else math.nan,
                         closed_share=g["close_seen"].fillna(0).astype(bool).mean(),
                         length_share=(g["finish_reason"] == "length").mean()))
    return pd.DataFrame(rows, columns=["model", "thinking", "n", "counted", "mean", "p50", "p90", "max",
                                       "closed_share", "length_share"])


def asr_by_think_length(verdicts: pd.DataFrame, judge: str, channel: str, scale, threshold: float | None,
                        confidence: float = 0.95) -> pd.DataFrame:
    """ASR of one judge's verdicts on one channel per (model, think-length bin). Unparseable verdicts
    are left out. Columns: model, judge, channel, bin, n, success, asr, asr_lo, asr_hi."""
    t, _ = thresholds(scale, threshold, None)
    v = verdicts[(verdicts["judge"] == judge) & (verdicts["channel"] == channel) & (verdicts["label"] != "unparseable")]
    rows = []
    if not v.empty:
        v = v.assign(bin=pd.to_numeric(v["reasoning_tokens"], errors="coerce").map(_bin))
        order = {b: i for i, b in enumerate(BIN_LABELS)}
        for (model, b), g in sorted(v.groupby(["model", "bin"]), key=lambda x: (x[0][0], order.get(x[0][1], 99))):
            n, k = len(g), int((g["score"].astype(float) >= t).sum())
            lo, hi = wilson(k, n, confidence)
            rows.append(dict(model=model, judge=judge, channel=channel, bin=b, n=n, success=k, asr=k / n,
                             asr_lo=lo, asr_hi=hi))
    return pd.DataFrame(rows, columns=["model", "judge", "channel", "bin", "n", "success", "asr", "asr_lo", "asr_hi"])
