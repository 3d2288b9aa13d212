"""The report's safety-helpfulness figure: each model's attack success on harmful requests against its
over-refusal on requests it should help with (MOSSBench, XSTest's safe prompts, VLGuard safe_safes,
SPA-VL help, MSSBench's safe halves: the allowed-request rule of `tis compare`), a base model and its
reasoning model in the light and dark shades of one colour, joined by a line. Capability benchmarks
(MMStar, POPE, MMMU) are in neither count. Intervals: Wilson 95% over judged items."""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from . import charts
from ..results.metrics import wilson
from ..results import RunResults


def frontier_rows(results: Sequence[RunResults], judge: str, channel: str, threshold: float) -> pd.DataFrame:
    from ..tis.capability_rows import is_capability
    from ..tis.compare import allowed_rules, flag_allowed

    frames = [r.verdicts for r in results if not r.items.empty]
    if not frames:
        return pd.DataFrame()
    v = pd.concat(frames, ignore_index=True)
    v = v[(v["judge"] == judge) & (v["channel"] == channel) & (v["label"] != "unparseable")]
    v = v[~v["dataset"].map(is_capability)]
    if v.empty:
        return pd.DataFrame()
    v = flag_allowed(v, allowed_rules())
    rows = []
    for model, g in v.groupby("model", sort=False):
        harm, benign = g[~g["allowed"]], g[g["allowed"]]
        k, n = int((harm["score"] >= threshold).sum()), len(harm)
        r, m = int((benign["label"] == "refusal").sum()), len(benign)
        (alo, ahi), (olo, ohi) = wilson(k, n), wilson(r, m)
        rows.append({"model": model, "harmful_n": n, "asr": k / n if n else float("nan"), "asr_lo": alo,
                     "asr_hi": ahi, "benign_n": m, "over_refusal": r / m if m else float("nan"),
                     "over_refusal_lo": olo, "over_refusal_hi": ohi})
    return pd.DataFrame(rows)


def frontier_svg(rows: pd.DataFrame, pairs: pd.DataFrame, order: list[str], colours: dict[str, str],
                 judge: str, channel: str):
    pos = {m: i for i, m in enumerate(order)}
    points = []
    if not rows.empty:
        for rec in sorted(rows.to_dict("records"), key=lambda r: pos.get(r["model"], len(pos))):
            tip = (f"{rec['model']}: ASR {100 * rec['asr']:.1f}% of {rec['harmful_n']} harmful, over-refusal "
                   f"{100 * rec['over_refusal']:.1f}% of {rec['benign_n']} benign")
            points.append(charts.Point(rec["model"], colours.get(rec["model"], "#888888"), rec["over_refusal"],
                                       rec["over_refusal_lo"], rec["over_refusal_hi"], rec["asr"], rec["asr_lo"],
                                       rec["asr_hi"], tip))
    links = list(pairs[["base", "reasoning"]].itertuples(index=False, name=None)) if not pairs.empty else []
    return charts.frontier(points, links, title=f"Attack success against over-refusal ({judge}, {channel} response)",
                           x_label="over-refusal on benign requests", y_label="ASR on harmful requests")
