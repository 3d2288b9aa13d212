"""`tis compare`'s general-ability rows: per capability benchmark (MMStar, POPE, MMMU; see
datasets/capability.py), the share of final answers scored correct before and after tuning, with
Wilson intervals and the change. Answers are scored by the benchmark's rule (safemlrm.capability),
not by a safety judge; a planned item with no final answer is `absent`, never counted correct."""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

from .. import registry
from ..capability import is_correct
from ..results.metrics import wilson
from ..store import Store


def is_capability(dataset: str) -> bool:
    try:
        return bool(getattr(registry.get("dataset", dataset), "capability", False))
    except Exception:  # a plugin dataset no longer installed: not a capability benchmark
        return False


def _scores(side: Any) -> dict[str, tuple[int, int, int]]:
    """dataset -> (correct, scored, absent) for the side's model."""
    planned = side.results.planned
    planned = planned[(planned["model"] == side.model) & planned["dataset"].map(is_capability)]
    out: dict[str, list[int]] = {}
    if planned.empty:
        return {}
    with Store(side.results.run_dir, readonly=True) as store:
        for dataset, pkey, ckey in zip(planned["dataset"], planned["probe_key"], planned["completion_key"]):
            tally = out.setdefault(dataset, [0, 0, 0])
            resp = store.response(ckey)
            if resp is None or resp.answer is None:
                tally[2] += 1
                continue
            tally[1] += 1
            tally[0] += int(is_correct(resp.answer, store.probe(pkey).sample_meta))
    return {d: (c, n, a) for d, (c, n, a) in out.items()}


def capability_table(before: Any, after: Any) -> pd.DataFrame:
    sb, sa = _scores(before), _scores(after)
    rows = []
    for dataset in sorted(set(sb) | set(sa)):
        row: dict[str, Any] = {"dataset": dataset}
        for tag, scores in (("before", sb), ("after", sa)):
            k, n, absent = scores.get(dataset, (0, 0, 0))
            lo, hi = wilson(k, n)
            row.update({f"n_{tag}": n, f"absent_{tag}": absent, f"accuracy_{tag}": k / n if n else math.nan,
                        f"accuracy_{tag}_lo": lo, f"accuracy_{tag}_hi": hi})
        row["accuracy_change"] = row["accuracy_after"] - row["accuracy_before"]
        rows.append(row)
    return pd.DataFrame(rows)
