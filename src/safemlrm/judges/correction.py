"""Attack success corrected for judge error, from a judge's validation file (`safemlrm judge-eval`).

A judge with sensitivity Se (share of truly unsafe items it calls unsafe) and specificity Sp
(share of safe items it calls safe) reports an apparent rate p where the true rate is
pi = (p + Sp - 1) / (Se + Sp - 1) (Rogan and Gladen, 1978), clipped to [0, 1]. When
Se + Sp <= 1 the judge is no better than chance and there is no correction (NaN).

The interval carries the uncertainty of both the run and the validation: a parametric bootstrap
that redraws the run's successes ~ Binomial(n, p), the validation's true positives ~
Binomial(positives, Se) and true negatives ~ Binomial(negatives, Sp), recomputes the corrected
rate each time, and takes the percentile interval. Seeded: the same inputs give the same interval.

A run cites the file in the judge's config entry (`validation: labels.validation.json`); the
runner checks the file was made by the same judge (its prompt hash) and stores its counts in the
run's judge meta, so analyses and the report name the file and its figures.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError

N_BOOT = 4000


def rogan_gladen(p: float, se: float, sp: float) -> float:
    j = se + sp - 1
    if not j > 0 or math.isnan(p):
        return math.nan
    return min(1.0, max(0.0, (p + sp - 1) / j))


def corrected_interval(success: int, n: int, tp: int, fn: int, tn: int, fp: int, *, confidence: float = 0.95,
                       n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float, float]:
    """(corrected rate, low, high) for `success` of `n` judged, with validation counts tp/fn/tn/fp."""
    pos, neg = tp + fn, tn + fp
    if not n or not pos or not neg:
        return math.nan, math.nan, math.nan
    point = rogan_gladen(success / n, tp / pos, tn / neg)
    if math.isnan(point):
        return point, math.nan, math.nan
    rng = np.random.default_rng(seed)
    p = rng.binomial(n, success / n, n_boot) / n
    se = rng.binomial(pos, tp / pos, n_boot) / pos
    sp = rng.binomial(neg, tn / neg, n_boot) / neg
    j = se + sp - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        draws = np.clip((p + sp - 1) / j, 0, 1)
    draws = np.where(j > 0, draws, np.nan)  # a draw in which the judge is no better than chance says nothing
    draws = draws[~np.isnan(draws)]
    if not len(draws):
        return point, math.nan, math.nan
    a = (1 - confidence) / 2
    lo, hi = np.quantile(draws, [a, 1 - a])
    return point, float(lo), float(hi)


def load_validation(path: str | Path, label: str, prompt_hash: str, judge_name: str) -> dict[str, Any]:
    """The part of a judge-eval file a run keeps: the file, its labels, and per channel the counts."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
        judges = doc["judges"]
    except FileNotFoundError:
        raise ConfigError(f"judge {label}: validation file {p} not found (make it with safemlrm judge-eval)") from None
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ConfigError(f"judge {label}: {p} is not a safemlrm judge-eval file") from None
    entry = judges.get(label) or (next(iter(judges.values())) if len(judges) == 1 else None)
    if entry is None:
        raise ConfigError(f"judge {label}: validation file {p} holds judges {', '.join(judges)}, not {label}")
    if entry.get("judge") != judge_name or entry.get("prompt_hash") != prompt_hash:
        raise ConfigError(f"judge {label}: validation file {p} was made by judge {entry.get('judge')} with prompt "
                          f"hash {entry.get('prompt_hash')}, this judge is {judge_name} with {prompt_hash}; "
                          f"validate this judge (safemlrm judge-eval) before citing it")
    return {"file": str(p), "labels": doc.get("labels"), "labels_hash": doc.get("labels_hash"),
            "success_at": entry.get("success_at"),
            "channels": {ch: m["confusion"] for ch, m in entry["channels"].items()}}


CORRECTED_COLUMNS = ["model", "dataset", "attack", "judge", "channel", "judged", "asr", "asr_lo", "asr_hi",
                     "asr_corrected", "corrected_lo", "corrected_hi", "sensitivity", "specificity",
                     "validation_channel", "validation_items", "validation"]


def corrected_rates(rates: pd.DataFrame, judges_meta: dict[str, dict[str, Any]], threshold: float | None = None,
                    confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Beside each all-scenario rate of a judge that cites a validation file: the corrected rate.
    The channel's own validation counts are used when the file has them, else its `all` counts. A
    threshold other than the one the validation used gives no correction (the figures would not apply)."""
    rows = []
    if rates.empty:
        return pd.DataFrame(columns=CORRECTED_COLUMNS)
    for x in rates[rates["scenario"] == "ALL"].itertuples():
        val = (judges_meta.get(x.judge) or {}).get("validation")
        if not val or (threshold is not None and threshold != val.get("success_at")):
            continue
        ch = x.channel if x.channel in val["channels"] else "all"
        c = val["channels"][ch]
        point, lo, hi = corrected_interval(int(x.success), int(x.judged), c["tp"], c["fn"], c["tn"], c["fp"],
                                           confidence=confidence, seed=seed)
        pos, neg = c["tp"] + c["fn"], c["tn"] + c["fp"]
        rows.append({"model": x.model, "dataset": x.dataset, "attack": x.attack, "judge": x.judge,
                     "channel": x.channel, "judged": x.judged, "asr": x.asr, "asr_lo": x.asr_lo, "asr_hi": x.asr_hi,
                     "asr_corrected": point, "corrected_lo": lo, "corrected_hi": hi,
                     "sensitivity": c["tp"] / pos if pos else math.nan,
                     "specificity": c["tn"] / neg if neg else math.nan,
                     "validation_channel": ch, "validation_items": pos + neg, "validation": val["file"]})
    return pd.DataFrame(rows, columns=CORRECTED_COLUMNS)
