"""`summary.md` and the metric tables written into every run directory."""
from __future__ import annotations

import csv
import math

import pandas as pd

from ..fsutil import write_atomic
from ..untrusted import csv_cell, md_cell
from ..store import Store
from ..results.summary import RunSummary, summarize


def _pct(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def _ci(lo: float, hi: float) -> str:
    return "" if math.isnan(lo) else f"[{100 * lo:.1f}, {100 * hi:.1f}]"


def md_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    esc = md_cell  # names and causes come from data and servers: HTML, pipes and controls escaped
    lines = ["| " + " | ".join(esc(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def headline(rates: pd.DataFrame) -> pd.DataFrame:
    """The ALL-scenario rows, formatted for people."""
    if rates.empty:
        return rates
    r = rates[rates["scenario"] == "ALL"]
    return pd.DataFrame({
        "model": r["model"], "dataset": r["dataset"], "attack": r["attack"], "judge": r["judge"],
        "channel": r["channel"], "judged": r["judged"], "planned": r["planned"],
        "ASR": r["asr"].map(_pct), "ASR 95% CI": [_ci(a, b) for a, b in zip(r["asr_lo"], r["asr_hi"])],
        "refusal": r["refusal_rate"].map(_pct),
        "refusal 95% CI": [_ci(a, b) for a, b in zip(r["refusal_lo"], r["refusal_hi"])],
        "unparseable": r["unparseable"], "absent": r["absent"],
    })


def render_summary(res: RunSummary) -> str:
    rates = res.rates
    cfg = res.config
    parts = [
        f"# safemlrm run: {cfg.get('name', res.run_dir.name)}",
        "",
        "> Content warning: this run holds model responses to harmful requests.",
        "",
        "ASR = share of judged verdicts at or above the judge's success threshold "
        "(keyword judges: no refusal phrase). Intervals: Wilson 95%. `absent`: planned items without "
        "that channel (no reasoning, or no answer); `unparseable`: verdicts the judge could not give.",
        "",
        "## Outcomes",
        "",
        md_table(res.outcomes),
        "",
        *error_section(res),
        "## Headline (all scenarios)",
        "",
        md_table(headline(rates)) if not rates.empty else "_no verdicts yet_",
        "",
    ]
    if not rates.empty:
        per = rates[rates["scenario"] != "ALL"]
        parts += ["## Per scenario", "", md_table(pd.DataFrame({
            "model": per["model"], "attack": per["attack"], "judge": per["judge"], "channel": per["channel"],
            "scenario": per["scenario"], "judged": per["judged"], "ASR": per["asr"].map(_pct),
            "ASR 95% CI": [_ci(a, b) for a, b in zip(per["asr_lo"], per["asr_hi"])],
            "refusal": per["refusal_rate"].map(_pct)})), ""]
    return "\n".join(parts)


def error_section(res: RunSummary) -> list[str]:
    """Failed requests counted by cause ("HTTP 503 after 7 attempts", "timeout after 7 attempts", ...)."""
    if not res.failed:
        return []
    return ["## Errors", "", f"{res.failed} planned item(s) have no response; the next `safemlrm run` retries them.",
            "", md_table(res.errors), ""]


def left_out_section(store: Store) -> str:
    """Items the datasets left out while loading (an empty required text in the published file)."""
    from ..pipeline.preflight import stored_left_out

    left = stored_left_out(store)
    if not left:
        return ""
    rows = [(name, lo.count, reason) for name, lo in left.items() for reason in (lo.records or ("",))]
    return "\n".join(["", "## Items left out while loading", "",
                      md_table(pd.DataFrame(rows, columns=["dataset", "left out", "record"])), ""])


def _csv(df: pd.DataFrame) -> bytes:
    # names come from data: a cell a spreadsheet would run as a formula is written as text
    from ..results.export import map_cells

    return map_cells(df, csv_cell).to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC).encode("utf-8", "backslashreplace")


def write_summary(store: Store) -> RunSummary:
    res = summarize(store)  # counted in SQLite: memory does not grow with the run
    # write-then-rename: a run killed while writing leaves the previous file whole, never half of one
    write_atomic(store.run_dir / "metrics.csv", _csv(res.rates))
    write_atomic(store.run_dir / "outcomes.csv", _csv(res.outcomes))
    text = render_summary(res) + left_out_section(store)
    write_atomic(store.run_dir / "summary.md", text.encode("utf-8", "backslashreplace"))
    return res
