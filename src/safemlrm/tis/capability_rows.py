"""`tis compare`'s general-ability rows: per capability benchmark (MMStar, POPE, MMMU, MM-Vet; see
datasets/capability.py), the score of the final answers before and after tuning, with intervals and
the change. A planned item with no final answer is `absent`, never counted correct.

* MMStar, POPE, MMMU: the share correct by the benchmark's rule (safemlrm.capability), with Wilson
  intervals; one row each (`part` empty).
* MM-Vet: every answer graded 0-1 by the LLM grader (`judges/mmvet.py`, given with
  `tis compare --grader KEY=VALUE`), one row for the total and one per capability as MM-Vet reports
  them (`part`: total, rec, ocr, ...), the mean grade with a bootstrap interval. A grade that could
  not be read is `unparseable`: counted, not in the mean. Without a grader the MM-Vet rows say
  `not graded` (`note`) and the comparison's verdict says that MM-Vet needs one.
"""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

from .. import registry
from ..capability import MMVET_CAPABILITIES, is_correct, mmvet_scores
from ..errors import ConfigError
from ..records import Channel
from ..results.metrics import wilson
from ..store import Store

NO_GRADER = ("not graded: MM-Vet's answers need an LLM grader; give one with `--grader base_url=URL "
             "--grader model=NAME` (an OpenAI-compatible server; MM-Vet used gpt-4-0613) or "
             "`--grader backend=hf --grader path=DIR`")


def is_capability(dataset: str) -> bool:
    try:
        return bool(getattr(registry.get("dataset", dataset), "capability", False))
    except Exception:  # a plugin dataset no longer installed: not a capability benchmark
        return False


def build_grader(params: dict[str, Any] | None):
    """The MM-Vet grader of `--grader` params (None when none were given), its server checked."""
    if not params:
        return None
    from ..judges.mmvet import MMVetGrader

    try:
        grader = MMVetGrader(**params)
    except ConfigError as e:
        raise ConfigError(f"--grader: {e}") from None
    grader.preflight()
    return grader


EMPTY = {"n": 0, "unparseable": 0, "score": math.nan, "lo": math.nan, "hi": math.nan}
# an MM-Vet item of a side: (dataset, its capabilities, the answer to grade or None when it has none)
Graded = tuple[str, list[str], Any]


def _items(side: Any) -> tuple[dict[str, tuple[int, int, int]], list[Graded]]:
    """dataset -> (correct, scored, absent) of the rule-scored benchmarks, and the MM-Vet items."""
    from ..judges.base import JudgeItem

    planned = side.results.planned
    planned = planned[(planned["model"] == side.model) & planned["dataset"].map(is_capability)]
    out: dict[str, list[int]] = {}
    graded: list[Graded] = []
    if planned.empty:
        return {}, []
    with Store(side.results.run_dir, readonly=True) as store:
        for dataset, pkey, ckey in zip(planned["dataset"], planned["probe_key"], planned["completion_key"]):
            resp = store.response(ckey)
            probe = store.probe(pkey)
            answer = resp.answer if resp is not None else None
            meta = probe.sample_meta
            if meta.get("scoring") == "mmvet":
                item = None if resp is None or resp.answer is None else JudgeItem(
                    channel=Channel.ANSWER, text=resp.answer, query=probe.judge_query, response=resp,
                    dataset=dataset, scenario=probe.scenario, meta=meta)
                graded.append((dataset, list(meta.get("capabilities", [])), item))
                continue
            tally = out.setdefault(dataset, [0, 0, 0])
            if answer is None:
                tally[2] += 1
                continue
            tally[1] += 1
            tally[0] += int(is_correct(answer, meta))
    return {d: (c, n, a) for d, (c, n, a) in out.items()}, graded


def grade(grader: Any, items: list[Any]) -> list[float | None]:
    """Each JudgeItem's grade (None: unparseable); an answer graded once however often it recurs."""
    keys = [grader.cache_key(it) for it in items]
    todo = {k: it for k, it in zip(keys, items)}
    try:
        results = dict(zip(todo, grader.judge(list(todo.values())))) if todo else {}
    finally:
        grader.close()  # a local grader's weights go once everything is graded
    return [results[k].score for k in keys]


def mmvet_parts(graded: list[Graded], grades: list[float | None]) -> dict[tuple[str, str], dict[str, Any]]:
    """(dataset, part) -> n, unparseable, absent, score, lo, hi; `grades` in the order of the
    answered items of `graded`."""
    it = iter(grades)
    with_grades = [(d, caps, next(it) if item is not None else None, item is None) for d, caps, item in graded]
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for dataset in dict.fromkeys(d for d, *_ in with_grades):
        mine = [(caps, g, absent) for d, caps, g, absent in with_grades if d == dataset]
        scores = mmvet_scores([(g, caps) for caps, g, absent in mine if not absent])
        needed = {"total"} | {c for caps, _, _ in mine for c in caps}  # a part only unanswered items need too
        for part in needed:
            out[(dataset, part)] = {**scores.get(part, EMPTY), "absent": sum(
                absent and (part == "total" or part in caps) for caps, _, absent in mine)}
    return out


def _cells(tag: str, n: int, absent: int, unparseable: int, score: float, lo: float, hi: float) -> dict[str, Any]:
    return {f"n_{tag}": n, f"absent_{tag}": absent, f"unparseable_{tag}": unparseable, f"accuracy_{tag}": score,
            f"accuracy_{tag}_lo": lo, f"accuracy_{tag}_hi": hi}


def capability_table(before: Any, after: Any, grader: Any = None) -> pd.DataFrame:
    """One row per rule-scored benchmark, and MM-Vet's total and capability rows (graded when a
    grader is given, else one `not graded` row per side's MM-Vet dataset)."""
    (sb, gb), (sa, ga) = _items(before), _items(after)
    rows = []
    for dataset in sorted(set(sb) | set(sa)):
        row: dict[str, Any] = {"dataset": dataset, "part": "", "metric": "accuracy", "note": ""}
        for tag, scores in (("before", sb), ("after", sa)):
            k, n, absent = scores.get(dataset, (0, 0, 0))
            row.update(_cells(tag, n, absent, 0, k / n if n else math.nan, *wilson(k, n)))
        rows.append(row)
    if gb or ga:
        if grader is None:
            for dataset in sorted({d for d, *_ in gb + ga}):
                row = {"dataset": dataset, "part": "total", "metric": "mm-vet score", "note": NO_GRADER}
                for tag, graded in (("before", gb), ("after", ga)):
                    row.update(_cells(tag, 0, sum(d == dataset for d, *_ in graded), 0, math.nan, math.nan, math.nan))
                rows.append(row)
        else:
            answered = [item for _, _, item in gb + ga if item is not None]
            grades = grade(grader, answered)
            k = sum(item is not None for _, _, item in gb)
            parts = {"before": mmvet_parts(gb, grades[:k]), "after": mmvet_parts(ga, grades[k:])}
            order = ("total", *MMVET_CAPABILITIES)
            keys = sorted(set(parts["before"]) | set(parts["after"]), key=lambda dp: (dp[0], order.index(dp[1])))
            for dataset, part in keys:
                row = {"dataset": dataset, "part": part, "metric": "mm-vet score", "note": ""}
                for tag in ("before", "after"):
                    s = parts[tag].get((dataset, part), {**EMPTY, "absent": 0})
                    row.update(_cells(tag, s["n"], s["absent"], s["unparseable"], s["score"], s["lo"], s["hi"]))
                rows.append(row)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["accuracy_change"] = frame["accuracy_after"] - frame["accuracy_before"]
    return frame
