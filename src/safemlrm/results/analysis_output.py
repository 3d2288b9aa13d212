"""`safemlrm analyze` output: the analysis bundle (`safemlrm.results.analysis.analyze`) as terminal tables,
CSV files or one JSON document.

Every cell shown in the terminal is a plain `rich.text.Text`: names that came from data (models,
scenarios, judge aliases) are never read as markup.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.text import Text

from ..cli_output import render_table

FORMATS = ("table", "csv", "json")


def _pct(x: Any) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def _ci(lo: Any, hi: Any) -> str:
    if lo is None or (isinstance(lo, float) and math.isnan(lo)):
        return ""
    return f"[{100 * lo:.1f}, {100 * hi:.1f}]"


def _num(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _table(console: Console, title: str, columns: list[str], rows: list[list[Any]], note: str = "") -> None:
    render_table(console, title, columns, rows, note)


def print_tables(console: Console, out: dict[str, Any], channel: str) -> None:
    rates = out["rates"]
    if not rates.empty:
        r = rates[rates["scenario"] == "ALL"]
        _table(console, "rates (all scenarios)",
               ["model", "dataset", "attack", "judge", "channel", "judged", "unparseable", "absent", "ASR", "ASR 95% CI",
                "refusal"],
               [[x.model, x.dataset, x.attack, x.judge, x.channel, x.judged, x.unparseable, x.absent, _pct(x.asr),
                 _ci(x.asr_lo, x.asr_hi), _pct(x.refusal_rate)] for x in r.itertuples()])
    cor = out.get("corrected_rates", pd.DataFrame())
    if not cor.empty:
        _table(console, "ASR corrected for judge error (Rogan-Gladen, all scenarios)",
               ["model", "dataset", "attack", "judge", "channel", "ASR", "95% CI", "corrected", "95% CI",
                "sensitivity", "specificity", "validation"],
               [[x.model, x.dataset, x.attack, x.judge, x.channel, _pct(x.asr), _ci(x.asr_lo, x.asr_hi),
                 _pct(x.asr_corrected), _ci(x.corrected_lo, x.corrected_hi), _pct(x.sensitivity),
                 _pct(x.specificity), f"{x.validation} ({x.validation_channel}, {x.validation_items} items)"]
                for x in cor.itertuples()],
               note="corrected = (ASR + specificity - 1) / (sensitivity + specificity - 1), clipped to [0, 1]; "
                    "interval: parametric bootstrap over the run's and the validation's counts.")
    dist = out["score_distribution"]
    if not dist.empty:
        d = dist.assign(score=[("unparseable" if u else _num(s, 0)) for s, u in zip(dist["score"], dist["unparseable"])])
        pivot = d.pivot_table(index=["model", "dataset", "attack", "judge"], columns="score", values="count",
                              aggfunc="sum", sort=False)
        order = sorted(set(dist.loc[~dist["unparseable"], "score"]))
        cols = [_num(s, 0) for s in order] + ["unparseable"]
        pivot = pivot.reindex(columns=cols)  # a score outside a judge's scale stays blank, not 0
        _table(console, f"score distribution ({channel} channel)", ["model", "dataset", "attack", "judge", *cols],
               [[*idx, *("" if v != v else int(v) for v in vals)] for idx, vals in zip(pivot.index, pivot.to_numpy().tolist())])
    sc = out["self_correction"]
    if not sc.empty:
        shown = sc[sc["n"] > 0]
        _table(console, "self-correction (reasoning x answer)",
               ["model", "dataset", "attack", "judge", "n", "R safe/A safe", "R safe/A unsafe", "R unsafe/A safe",
                "R unsafe/A unsafe", "corrected", "95% CI", "reverse", "95% CI", "no answer", "unparseable"],
               [[x.model, x.dataset, x.attack, x.judge, x.n, x.rsafe_asafe, x.rsafe_aunsafe, x.runsafe_asafe,
                 x.runsafe_aunsafe, _pct(x.corrected_share), _ci(x.corrected_lo, x.corrected_hi),
                 _pct(x.reverse_share), _ci(x.reverse_lo, x.reverse_hi), x.no_answer, x.unparseable]
                for x in shown.itertuples()],
               note="corrected: unsafe reasoning ending in a safe answer; reverse: safe reasoning ending in an unsafe "
                    "answer. Models without reasoning are left out here (n = 0).")
    tf = out.get("trace_findings", pd.DataFrame())
    if not tf.empty:
        _table(console, "what the trace knew (trace-rubric on the reasoning x another judge on the answer)",
               ["model", "dataset", "attack", "trace judge", "answer judge", "n", "superficially safe", "95% CI",
                "recognised, then complied", "95% CI", "unparseable"],
               [[x.model, x.dataset, x.attack, x.trace_judge, x.answer_judge, x.n,
                 f"{x.superficially_safe} of {x.safe_answers} ({_pct(x.superficial_share)})",
                 _ci(x.superficial_lo, x.superficial_hi),
                 f"{x.recognised_complied} of {x.recognised} ({_pct(x.complied_share)})",
                 _ci(x.complied_lo, x.complied_hi), x.unparseable] for x in tf.itertuples()],
               note="superficially safe: a safe answer whose trace never recognised the risk (share of safe answers); "
                    "recognised, then complied: the trace names the risk, the answer is an attack success anyway "
                    "(share of traces that recognised it).")
    tax = out["reasoning_tax"]
    if not tax.empty:
        _table(console, f"reasoning tax ({channel} channel)",
               ["base", "reasoning", "dataset", "attack", "scenario", "judge", "items", "ASR base", "ASR reasoning",
                "diff", "95% CI (paired bootstrap)", "ratio", "unparseable"],
               [[x.base, x.reasoning, x.dataset, x.attack, x.scenario, x.judge, x.n_items, _pct(x.asr_base),
                 _pct(x.asr_reasoning), _pct(x.diff), _ci(x.diff_lo, x.diff_hi), _num(x.ratio), x.unparseable]
                for x in tax.itertuples()])
    bs = out["blind_spots"]
    if not bs.empty:
        _table(console, f"blind spots ({channel} channel)",
               ["base", "reasoning", "dataset", "attack", "scenario", "judge", "items", "ASR base", "ASR reasoning",
                "ratio", "mean ratio", "flagged"],
               [[x.base, x.reasoning, x.dataset, x.attack, x.scenario, x.judge, x.n_items, _pct(x.asr_base),
                 _pct(x.asr_reasoning), _num(x.ratio), _num(x.mean_ratio), "FLAGGED" if x.flagged else ""]
                for x in bs.itertuples()],
               note=f"ratio = (successes reasoning + 0.5) / (successes base + 0.5); flagged when ratio >= "
                    f"{_num(float(bs['factor'].iloc[0]), 1)} x the mean ratio over scenarios.")
    tl = out.get("think_lengths", pd.DataFrame())
    if not tl.empty:
        _table(console, "think length (reasoning tokens per sample)",
               ["model", "thinking", "samples", "counted", "mean", "median", "p90", "max", "closed", "cut by length"],
               [[x.model, x.thinking or "-", x.n, x.counted, _num(x.mean, 1), _num(x.p50, 1), _num(x.p90, 1),
                 _num(x.max, 0), _pct(x.closed_share), _pct(x.length_share)] for x in tl.itertuples()])
    ab = out.get("asr_by_think_length", pd.DataFrame())
    if not ab.empty:
        _table(console, f"ASR by think length ({channel} channel)",
               ["model", "judge", "reasoning tokens", "n", "ASR", "95% CI"],
               [[x.model, x.judge, x.bin, x.n, _pct(x.asr), _ci(x.asr_lo, x.asr_hi)] for x in ab.itertuples()])
    pre = out["prefilter_share"]
    if not pre.empty and pre["by_prefilter"].sum() > 0:
        _table(console, "pre-filter share (decisions made by the keyword pre-filter)",
               ["model", "dataset", "attack", "channel", "judge", "verdicts", "by pre-filter", "share", "95% CI"],
               [[x.model, x.dataset, x.attack, x.channel, x.judge, x.verdicts, x.by_prefilter, _pct(x.share),
                 _ci(x.share_lo, x.share_hi)] for x in pre.itertuples()])
    elif not pre.empty:
        console.print(Text("pre-filter share: no verdict was made by a keyword pre-filter", style="dim"))
    mss = out.get("mssbench_accuracy", pd.DataFrame())
    if not mss.empty:
        _table(console, "MSSBench accuracy", ["model", "attack", "scenario", "judge", "safe side", "unsafe side",
                                              "accuracy", "pairs", "unparseable"],
               [[x.model, x.attack, x.scenario, x.judge, f"{_pct(x.safe_acc)} of {x.n_safe}",
                 f"{_pct(x.unsafe_acc)} of {x.n_unsafe}", _pct(x.accuracy), x.n_pairs, x.unparseable]
                for x in mss.itertuples()])
    for a in out["judge_agreement"]:
        _table(console, f"judge agreement: {a['judge_a']} vs {a['judge_b']} ({a['channel']} channel, on {a['on']})",
               ["n", "agreement", "Cohen's kappa", f"unparseable {a['judge_a']}", f"unparseable {a['judge_b']}",
                f"only {a['judge_a']}", f"only {a['judge_b']}"],
               [[a["n"], _pct(a["agreement"]), _num(a["kappa"], 3), a["unparseable_a"], a["unparseable_b"],
                 a["only_a"], a["only_b"]]])
        conf = a["confusion"]
        if not conf.empty:
            console.print(Text(f"confusion: rows {a['judge_a']}, columns {a['judge_b']}"))
            _table(console, "", [""] + [str(c) for c in conf.columns],
                   [[str(i), *row] for i, row in zip(conf.index, conf.to_numpy().tolist())])


def _plain(v: Any) -> Any:
    """JSON-safe: NaN -> null, infinities -> "inf" / "-inf", numpy scalars -> Python."""
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        v = v.item()
    if isinstance(v, float):
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
    return v


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in rec.items()} for rec in df.to_dict(orient="records")]


def to_json(out: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {k: _records(v) for k, v in out.items() if isinstance(v, pd.DataFrame)}
    doc["judge_agreement"] = [
        {**{k: _plain(v) for k, v in a.items() if k != "confusion"},
         "confusion": {str(i): {str(c): int(n) for c, n in row.items()}
                       for i, row in a["confusion"].to_dict(orient="index").items()}}
        for a in out["judge_agreement"]]
    return doc


def write_json(out: dict[str, Any], path: Path | None) -> str:
    text = json.dumps(to_json(out), indent=1, ensure_ascii=False)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
    return text


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def write_csv(out: dict[str, Any], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, df in out.items():
        if isinstance(df, pd.DataFrame):
            if df.columns.empty:  # nothing of this kind in these runs: no header to write, so no file
                continue
            p = folder / f"{name}.csv"
            df.to_csv(p, index=False)
            paths.append(p)
    if out["judge_agreement"]:
        p = folder / "judge_agreement.csv"
        pd.DataFrame([{k: v for k, v in a.items() if k != "confusion"} for a in out["judge_agreement"]]).to_csv(p, index=False)
        paths.append(p)
        for a in out["judge_agreement"]:
            c = folder / f"confusion_{_safe_name(a['judge_a'])}_vs_{_safe_name(a['judge_b'])}.csv"
            a["confusion"].to_csv(c)
            paths.append(c)
    return paths
