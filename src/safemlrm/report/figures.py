"""The report's figures (inline SVG from charts.py) and tables (DataFrames as escaped strings)."""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from markupsafe import Markup

from ..untrusted import visible
from . import charts
from .markdown import _ci, _pct
from .runs import Run


OUTCOME_ORDER = ("complete", "truncated", "unclosed_think", "empty", "error", "pending")


SCORE_COLOURS = ("#1a9850", "#91cf60", "#d9ef8b", "#fee08b", "#fc8d59", "#d73027", "#a50026")


@dataclass
class Figure:
    svg: Markup
    caption: str = ""


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    numeric: list[bool]

    @property
    def empty(self) -> bool:
        return not self.rows


def _num(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, float) and math.isinf(x):
        return "\u221e"
    if isinstance(x, bool):
        return "yes" if x else ""
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 1e6 else f"{x:.3e}"
    return str(x)


_PCT_COLS = re.compile(r"^(asr|hr|refusal_rate|asr_all|corrected_share|reverse_share|share|agreement|"
                       r"asr_base|asr_reasoning|diff|prefilter_share)(_lo|_hi)?$")


def table(df: pd.DataFrame | None, *, pct: Iterable[str] = (), drop: Iterable[str] = ()) -> Table:
    """A DataFrame as strings for the template (which escapes them): rates as percentages."""
    if df is None or df.empty:
        return Table([], [], [])
    df = df.drop(columns=[c for c in drop if c in df.columns])
    pct = set(pct) | {c for c in df.columns if _PCT_COLS.match(str(c))}
    cols = [str(c) for c in df.columns]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in df.columns]
    rows = []
    for rec in df.itertuples(index=False):
        row = []
        for c, v in zip(cols, rec):
            if c in pct and isinstance(v, (int, float)) and not isinstance(v, bool):
                row.append(_pct(float(v)) if not (isinstance(v, float) and math.isinf(v)) else "\u221e")
            else:
                row.append(visible(_num(v)))
        rows.append(row)
    return Table(cols, rows, numeric)


def _tip_rate(name: str, row: pd.Series, key: str = "asr", count: str = "success") -> str:
    lo, hi = row.get(f"{key}_lo", math.nan), row.get(f"{key}_hi", math.nan)
    judged = int(row.get("judged", 0))
    k = row.get(count)
    of = f", {int(k)} of {judged} judged" if k is not None and not pd.isna(k) else f", {judged} judged"
    return f"{name}: {_pct(row[key])} {_ci(lo, hi)}{of}"


# --- the pictures -----------------------------------------------------------------------------


def model_order(runs: Sequence[Run], pairs: pd.DataFrame) -> tuple[list[str], dict[str, str]]:
    """Models with each base next to its reasoning models, and colours that show the pairs."""
    present: list[str] = []
    for run in runs:
        for m in run.res.planned["model"].drop_duplicates():
            if m not in present:
                present.append(m)
    order: list[str] = []
    colours: dict[str, str] = {}
    hue = 0
    for base, reasoning in pairs[["base", "reasoning"]].itertuples(index=False):
        light, dark = charts.PAIRED[hue % len(charts.PAIRED)]
        if base not in order:
            order.append(base)
            colours[base] = light
        if reasoning not in order:
            order.append(reasoning)
            colours[reasoning] = dark
            hue += 1
    for m in present:
        if m not in order:
            order.append(m)
            colours[m] = charts.PAIRED[hue % len(charts.PAIRED)][1]
            hue += 1
    return [m for m in order if m in present], colours


def _rank(df: pd.DataFrame, order: list[str], then: Sequence[str]) -> pd.DataFrame:
    pos = {m: i for i, m in enumerate(order)}
    then = [t for t in then if t != "attack"]  # rows come in configured attack order: kept (stable sort)
    return df.assign(_o=df["model"].map(lambda m: pos.get(m, len(pos)))).sort_values(["_o", *then], kind="stable")


def headline_figures(rates: pd.DataFrame, judge: str, channel: str, order: list[str],
                     colours: dict[str, str]) -> list[Figure]:
    """The study's figure: per dataset, one cluster of bars per attack, base and reasoning side by side."""
    figs: list[Figure] = []
    if rates.empty:
        return figs
    r = rates[(rates["scenario"] == "ALL") & (rates["judge"] == judge) & (rates["channel"] == channel)]
    for dataset, rd in r.groupby("dataset", sort=True):
        attacks = list(dict.fromkeys(rd["attack"]))
        models = [m for m in order if m in set(rd["model"])]
        metrics = [("asr", "success", "ASR")]
        if (rd["harmful_threshold"] != rd["asr_threshold"]).any():
            metrics.append(("hr", "harmful", "harmful rate"))
        for key, count, name in metrics:
            series = []
            for m in models:
                pts: list[tuple[float | None, float | None, float | None, str]] = []
                for a in attacks:
                    row = rd[(rd["model"] == m) & (rd["attack"] == a)]
                    if row.empty:
                        pts.append((None, None, None, ""))
                        continue
                    row = row.iloc[0]
                    pts.append((row[key], row[f"{key}_lo"], row[f"{key}_hi"], _tip_rate(f"{m} / {a}", row, key, count)))
                series.append(charts.Series(m, colours.get(m, "#888888"), pts))
            thr = rd["asr_threshold" if key == "asr" else "harmful_threshold"].iloc[0]
            svg = charts.grouped_bars(attacks, series, title=f"{name}: {dataset} ({judge}, {channel} response)",
                                      y_label=f"{name} (score \u2265 {_num(thr)})")
            figs.append(Figure(svg, f"{name} per model and attack on {dataset}, judged by {judge} on the {channel} "
                                    f"response; whiskers: Wilson 95% intervals over judged items. A base model "
                                    f"takes the light shade of its reasoning model's colour."))
    return figs


def tax_figure(tax: pd.DataFrame, judge: str, channel: str) -> Figure:
    rows = []
    for rec in tax[tax["scenario"] == "ALL"].to_dict("records"):
        label = f"{rec['reasoning']} vs {rec['base']} \u00b7 {rec['dataset']} \u00b7 {rec['attack']}"
        tip = (f"{label}: ASR {_pct(rec['asr_base'])} \u2192 {_pct(rec['asr_reasoning'])}, "
               f"difference {_pp(rec['diff'])} [{_pp(rec['diff_lo'])}, {_pp(rec['diff_hi'])}], "
               f"ratio {_num(rec['ratio'])}, {rec['n_items']} paired items")
        rows.append((label, rec["diff"], rec["diff_lo"], rec["diff_hi"], tip))
    svg = charts.diverging_bars(rows, title=f"Reasoning tax ({judge}, {channel} response)",
                                x_label="ASR of the reasoning model minus its base (percentage points)")
    return Figure(svg, "Each bar: the reasoning model's ASR minus its base model's on the same items; whiskers: "
                       "paired bootstrap 95% interval over items. Right of zero (red): the reasoning model is "
                       "jailbroken more often.")


def _pp(x: Any) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:+.1f} pp"


def blind_spot_figures(blind: pd.DataFrame, judge: str, channel: str) -> list[Figure]:
    figs = []
    for dataset, bd in blind.groupby("dataset", sort=True):
        rows = sorted(set(bd["scenario"]))
        cols: list[str] = []
        cells = {}
        for rec in bd.to_dict("records"):
            col = f"{rec['reasoning']} vs {rec['base']} \u00b7 {rec['attack']}"
            if col not in cols:
                cols.append(col)
            ratio = rec["ratio"]
            text = f"{ratio:.1f}\u00d7"
            tip = (f"{rec['scenario']}, {col}: ASR {_pct(rec['asr_base'])} \u2192 {_pct(rec['asr_reasoning'])} "
                   f"({rec['success_base']} \u2192 {rec['success_reasoning']} of {rec['n_items']}); "
                   f"ratio {text} (unsmoothed {_num(rec['ratio_raw'])}), pair mean {rec['mean_ratio']:.2f}\u00d7"
                   + (" \u2014 blind spot" if rec["flagged"] else ""))
            cells[(rec["scenario"], col)] = charts.Cell(ratio, text, tip, bool(rec["flagged"]))
        factor = float(bd["factor"].iloc[0])
        figs.append(Figure(
            charts.heatmap(rows, cols, cells, title=f"Blind spots: {dataset} ({judge}, {channel} response)",
                           note=f"ratio = (successes of reasoning + 0.5) / (successes of base + 0.5); "
                                f"outlined: \u2265 {factor:g}\u00d7 the pair's mean"),
            "Scenario by pair: how many times more often the reasoning model is jailbroken than its base on "
            "the same items. Red: worse than the base; blue: better. Outlined cells are blind spots."))
    if not figs:
        figs.append(Figure(charts.empty_chart(f"Blind spots ({judge})", "no base / reasoning pairs in these runs")))
    return figs


def selfcorrection_figures(sc: pd.DataFrame) -> list[Figure]:
    figs = []
    for rec in sc[sc["n"] > 0].to_dict("records"):
        counts = {("unsafe", "unsafe"): rec["runsafe_aunsafe"], ("unsafe", "safe"): rec["runsafe_asafe"],
                  ("safe", "unsafe"): rec["rsafe_aunsafe"], ("safe", "safe"): rec["rsafe_asafe"]}
        title = f"{rec['model']} \u00b7 {rec['dataset']} \u00b7 {rec['attack']}"
        svg = charts.two_by_two({k: int(v) for k, v in counts.items()}, title=title)
        figs.append(Figure(svg, f"Self-corrected: {_pct(rec['corrected_share'])} "
                                f"{_ci(rec['corrected_lo'], rec['corrected_hi'])} of {rec['unsafe_reasoning']} unsafe "
                                f"reasoning traces end in a safe answer. Reverse (safe reasoning, unsafe answer): "
                                f"{_pct(rec['reverse_share'])} of {rec['safe_reasoning']}."))
    return figs


def score_figures(dist: pd.DataFrame, judge: str, channel: str, order: list[str], scale: Any) -> list[Figure]:
    """One stacked bar per (model, dataset, attack): the share of each score, unparseable last."""
    if dist.empty:
        return []
    scored = dist[~dist["unparseable"].astype(bool)]
    levels = sorted(set(scored["score"].astype(float)))
    names = [_num(s) for s in levels]
    if dist[dist["unparseable"].astype(bool)]["count"].sum() > 0:
        names.append("unparseable")
    keys = ["model", "dataset", "attack"]
    groups = _rank(dist[keys].drop_duplicates(), order, keys[1:])
    rows, counts = [], []
    for rec in groups.to_dict("records"):
        g = dist[(dist["model"] == rec["model"]) & (dist["dataset"] == rec["dataset"]) & (dist["attack"] == rec["attack"])]
        by = {(_num(float(x)) if not u else "unparseable"): int(c)
              for x, u, c in zip(g["score"], g["unparseable"].astype(bool), g["count"])}
        rows.append(" \u00b7 ".join(str(rec[k]) for k in keys))
        counts.append([by.get(n, 0) for n in names])
    colours = [_score_colour(x, scale) for x in levels] + (["#ffd92f"] if "unparseable" in names else [])
    svg = charts.stacked_bars(rows, names, counts, colours, title=f"Scores: {judge}, {channel} channel")
    meaning = f" Scale: {scale.meaning}." if scale is not None and scale.meaning else ""
    return [Figure(svg, f"Share of each {judge} score per model, dataset and attack on the {channel} channel "
                        f"(hover for counts); green is the safe end of the scale.{meaning}")]


def _score_colour(score: float, scale: Any) -> str:
    lo, hi = (float(scale.low), float(scale.high)) if scale is not None else (0.0, 1.0)
    t = 0.0 if hi <= lo else min(1.0, max(0.0, (score - lo) / (hi - lo)))
    return SCORE_COLOURS[round(t * (len(SCORE_COLOURS) - 1))]


def outcome_figure(outcomes: pd.DataFrame, order: list[str]) -> Figure:
    if outcomes.empty:
        return Figure(charts.empty_chart("Outcomes", "nothing planned"))
    cols = [c for c in OUTCOME_ORDER if c in outcomes.columns] + sorted(
        c for c in outcomes.columns if c not in OUTCOME_ORDER and c not in ("run", "model", "dataset", "attack"))
    o = _rank(outcomes, order, ["dataset", "attack"])
    rows = [f"{r['model']} \u00b7 {r['dataset']} \u00b7 {r['attack']}" for r in o.to_dict("records")]
    counts = [[int(r[c]) for c in cols] for r in o.to_dict("records")]
    colours = [charts.OUTCOME_COLOURS.get(c, "#555555") for c in cols]
    return Figure(charts.stacked_bars(rows, cols, counts, colours, title="Response outcomes", normalise=False),
                  "Every planned item, by how its response ended: nothing is dropped. Truncated and unclosed "
                  "reasoning, empty answers and errors are their own outcomes, never counted as safe.")
