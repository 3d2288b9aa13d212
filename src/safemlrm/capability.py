"""Scoring general-ability answers against the gold answer a capability Sample carries
(`meta["answer"]`, `meta["scoring"]`; see datasets/capability.py), by each benchmark's published rule.

* `choice` (MMStar, MMMU multiple choice), MMMU's parsing: the response stripped of surrounding
  punctuation; a letter in parentheses "(B)" wins, else a letter standing alone "B", else (for a
  response over five words) an option's text; several candidates: the one mentioned last (by the
  position of "(B)" or " B "; a choice found by its text comes last of all, as in MMMU). MMMU
  picks a random letter when nothing parses; here an unparsed response is wrong (so a model that
  refuses scores 0, not chance).
* `open` (MMMU short answer), MMMU's exact-match rule: golds and the response's candidates (the
  numbers in it and the text itself) normalised (numbers rounded to 2 decimals, text lowercased; a
  one-character gold padded with a space so it does not match inside words); correct when a gold
  text is contained in the response text or a gold number equals a number of the response.
* `yes_no` (POPE), POPE's rule: the first sentence, commas dropped; "no" or "not" among its words is
  no, anything else yes. `pope_scores` gives accuracy, precision, recall and F1 of "yes", and the
  yes ratio.

* `mmvet` (MM-Vet): not scored by a rule: an LLM grades each answer 0.0-1.0 against the ground
  truth (`safemlrm.judges.mmvet`). `mmvet_scores` aggregates the grades as MM-Vet reports them: per
  capability (rec, ocr, know, gen, spat, math) the mean grade of the items that need it, and the
  total over all items; a grade that could not be read is counted apart, never as 0 or as correct.

`accuracy` gives the share correct with its Wilson interval (metrics.wilson, the one rule for
intervals of shares); a mean grade gets a seeded bootstrap percentile interval (items resampled,
metrics.paired_bootstrap), since a grade of 0.4 is not a success or a failure.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from .results.metrics import paired_bootstrap, wilson

MMVET_CAPABILITIES = ("rec", "ocr", "know", "gen", "spat", "math")  # MM-Vet's six, in its paper's order

_EDGE = ",.!?;:'\""
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def parse_choice(response: str, choices: Sequence[str], options: Sequence[str] = ()) -> str | None:
    text = " " + response.strip().strip(_EDGE) + " "
    found = [c for c in choices if f"({c})" in text]
    if not found:
        found = [c for c in choices if f" {c} " in text]
    if not found and len(text.split()) > 5 and options:
        low = text.lower()
        found = [c for c, o in zip(choices, options) if str(o).lower() in low]
    if not found:
        return None
    return max(found, key=lambda c: max(text.rfind(f"({c})"), text.rfind(f" {c} ")))


def _norm(value: Any) -> list[Any]:
    s = str(value).strip()
    try:
        return [round(float(s.replace(",", "")), 2)]
    except ValueError:
        s = s.lower()
        return [" " + s, s + " "] if len(s) == 1 else [s]


def score_open(response: str, golds: Iterable[Any]) -> bool:
    text = " " + response.strip().strip(_EDGE).lower() + " "
    numbers = {round(float(n), 2) for n in _NUMBER.findall(response.replace(",", ""))}
    for gold in golds:
        for g in _norm(gold):
            if isinstance(g, str) and g in text:
                return True
            if isinstance(g, float) and g in numbers:
                return True
    return False


def parse_yes_no(response: str) -> str:
    text = response.strip()
    if "." in text:
        text = text.split(".")[0]
    words = text.replace(",", "").split()
    return "no" if any(w in ("No", "no", "not", "NO") for w in words) else "yes"


def is_correct(response: str, meta: dict[str, Any]) -> bool:
    """Whether `response` (the final answer) is right for a capability Sample's meta."""
    kind = meta.get("scoring")
    if kind == "choice":
        return parse_choice(response, meta.get("choices") or [], meta.get("options") or ()) == meta["answer"]
    if kind == "open":
        return score_open(response, meta["answer"])
    if kind == "yes_no":
        return parse_yes_no(response) == meta["answer"]
    if kind == "mmvet":
        raise ValueError("MM-Vet answers are graded by an LLM (safemlrm.judges.mmvet), not by a rule")
    raise ValueError(f"no capability scoring {kind!r}")


def accuracy(correct: Sequence[bool], confidence: float = 0.95) -> dict[str, float]:
    n, k = len(correct), sum(bool(c) for c in correct)
    lo, hi = wilson(k, n, confidence)
    return {"n": n, "correct": k, "accuracy": k / n if n else float("nan"), "lo": lo, "hi": hi}


def pope_scores(preds: Sequence[str], golds: Sequence[str]) -> dict[str, float]:
    tp = sum(p == g == "yes" for p, g in zip(preds, golds))
    tn = sum(p == g == "no" for p, g in zip(preds, golds))
    fp = sum(p == "yes" and g == "no" for p, g in zip(preds, golds))
    fn = sum(p == "no" and g == "yes" for p, g in zip(preds, golds))
    n = len(golds)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"n": n, "accuracy": (tp + tn) / n if n else float("nan"), "precision": precision, "recall": recall,
            "f1": f1, "yes_ratio": sum(p == "yes" for p in preds) / n if n else float("nan")}


def mmvet_scores(graded: Sequence[tuple[float | None, Sequence[str]]], *, n_boot: int = 2000, seed: int = 0,
                 confidence: float = 0.95) -> dict[str, dict[str, float]]:
    """MM-Vet's figures from (grade or None, the item's capabilities) pairs: "total" over every item,
    then each capability that some item needs, over those items (an item with two counts in both).
    Per part: n graded, unparseable (None grades: left out of the mean), score (mean grade, 0-1;
    MM-Vet prints it times 100) and its bootstrap interval lo, hi."""
    out: dict[str, dict[str, float]] = {}
    for part in ("total", *MMVET_CAPABILITIES):
        grades = [g for g, caps in graded if part == "total" or part in caps]
        if not grades and part != "total":
            continue
        scores = [float(g) for g in grades if g is not None]
        lo, hi = paired_bootstrap(scores, n_boot, seed, confidence) if scores else (float("nan"), float("nan"))
        out[part] = {"n": len(scores), "unparseable": len(grades) - len(scores),
                     "score": sum(scores) / len(scores) if scores else float("nan"), "lo": lo, "hi": hi}
    return out
