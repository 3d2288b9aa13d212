"""The report a researcher opens after a run: `safemlrm report RUN_DIR [RUN_DIR ...] --out DIR`.

Writes into DIR:

* `report.html`: one self-contained file (inline SVG charts drawn in Python, inline CSS and a small
  script, images as data URIs); it makes no network request and its Content Security Policy
  forbids any.
* `summary.md`: each run's summary (report/markdown.py) plus the cross-run analyses.
* `tables/*.csv` and `tables/*.parquet`: every table the report draws, and each run's items with
  their texts (export.py).

Model output and dataset text are untrusted. In the HTML they are escaped by Jinja's autoescape or
by the SVG serializer, or handed to the sample browser as JSON inside a non-executable
`<script type="application/json">` (with `<`, `>`, `&` written as \\u003c ...) that the script reads
with JSON.parse and shows with textContent.

Several runs make one report: the base vs reasoning comparison spans runs (the analysis functions
take the list; a model held by two runs on one dataset and attack is read from the first given, and
the report says so).
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import math
import re
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from .. import __version__
from ..errors import SafeMLRMError
from ..results.metrics import metric_settings, self_correction_threshold
from ..results import RunResults, load_store
from ..safety import csv_cell, escape_surrogates, export_text, visible
from ..store import Store
from ..results.attack_order import configured_attacks, in_configured_order
from ..results.summary import summary_of
from ..results.metrics_control import dose_response
from .dose_chart import dose_line
from . import charts
from .markdown import _ci, _pct, headline, md_table, render_summary

CHANNELS = ("full", "answer", "reasoning")
SAFE_LABELS = frozenset({"refusal", "safe"})
OUTCOME_ORDER = ("complete", "truncated", "unclosed_think", "empty", "error", "pending")
SCORE_COLOURS = ("#1a9850", "#91cf60", "#d9ef8b", "#fee08b", "#fc8d59", "#d73027", "#a50026")


@dataclass(frozen=True)
class ReportOptions:
    blur_images: bool = True  # the sample browser starts with images blurred (click to reveal)
    hide_unsafe: bool = True  # ... and with text not judged safe hidden behind a click
    max_samples: int = 200  # samples embedded per model and run (the rest stay in the tables)
    thumb_px: int = 240  # longest side of an embedded image
    max_chars: int = 20_000  # characters kept of each embedded text
    judge: str | None = None  # the judge the headline figures use (default: the first configured)
    channel: str = "full"  # the channel the headline, tax and blind-spot figures read

    def __post_init__(self) -> None:
        if self.max_samples < 0:
            raise SafeMLRMError(f"--max-samples must be 0 or more, not {self.max_samples}")
        if self.thumb_px < 16:
            raise SafeMLRMError(f"thumb_px must be at least 16, not {self.thumb_px}")
        if self.channel not in CHANNELS:
            raise SafeMLRMError(f"--channel must be one of {', '.join(CHANNELS)}, not {self.channel!r}")


@dataclass
class ReportFiles:
    html: Path
    summary: Path
    tables: list[Path]
    samples_embedded: int
    samples_total: int


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


@dataclass
class Run:
    label: str
    store: Store
    res: RunResults
    meta: dict[str, Any] = field(default_factory=dict)


# --- loading ----------------------------------------------------------------------------------


def _run_meta(store: Store) -> dict[str, Any]:
    meta = store.all_meta()
    meta["_spans"] = {table: tuple(_when(t) for t in store.time_span(table)) for table in ("completions", "verdicts")}
    return meta


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _labels(dirs: Sequence[Path]) -> list[str]:
    """Short, unique names for the runs: the folder name, with parents added until unique."""
    depth = 1
    while True:
        labels = ["/".join(d.resolve().parts[-depth:]) for d in dirs]
        if len(set(labels)) == len(labels) or depth > 8:
            return labels
        depth += 1


def open_runs(run_dirs: Sequence[str | Path], stack: ExitStack) -> list[Run]:
    if not run_dirs:
        raise SafeMLRMError("report: give at least one run directory")
    dirs = [Path(d) for d in run_dirs]
    resolved = [d.resolve() for d in dirs]
    for i, d in enumerate(resolved):
        if d in resolved[:i]:
            raise SafeMLRMError(f"report: run directory {dirs[i]} is given twice")
    runs = []
    for d, label in zip(dirs, _labels(dirs)):
        store = stack.enter_context(Store(d, readonly=True))
        runs.append(Run(label=label, store=store, res=load_store(store), meta=_run_meta(store)))
    return runs


def overlaps(runs: Sequence[Run]) -> list[str]:
    """Models that two runs both hold on one (dataset, attack). The analyses then read each item from
    the first run given (safemlrm.results.analysis); the report says so rather than mixing silently."""
    owner: dict[tuple[str, str, str], str] = {}
    notes = []
    for run in runs:
        keys = run.res.planned[["model", "dataset", "attack"]].drop_duplicates()
        for model, dataset, attack in keys.itertuples(index=False):
            prev = owner.setdefault((model, dataset, attack), run.label)
            if prev != run.label:
                notes.append(f"model {model} on {dataset} / {attack} is in runs {prev} and {run.label}: "
                             f"the figures read each item from {prev} (the first given)")
    return notes


# --- small helpers ----------------------------------------------------------------------------


def script_json(obj: Any) -> Markup:
    """JSON safe inside <script type="application/json">: no `<`, `>` or `&` survive, so no text can
    close the element or open a comment; NaN becomes null (JSON.parse rejects NaN)."""
    text = json.dumps(_jsonable(obj), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return Markup(escape_surrogates(text))  # lone surrogates as \\u escapes: valid UTF-8


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):  # numpy scalars
        return _jsonable(obj.item())
    return obj


def csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode() + "'"


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
                pts = []
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


DOSE_CAPTION = ("Each point: a swept model's ASR at one value of the swept setting, with its Wilson interval; "
                "dashed: its base model's ASR, a flat reference (docs/analysis.md#reasoning-control).")


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


# --- the sample browser -----------------------------------------------------------------------


def _pick(planned: pd.DataFrame, n: int) -> list[dict[str, Any]]:
    """Up to n items per model, taken in turn from each (dataset, attack) and, within those, from each
    scenario, so a cap still shows every setting; plan order within each."""
    picked = []
    for _, g in planned.groupby("model", sort=False):
        settings: OrderedDict[tuple, OrderedDict[str, list]] = OrderedDict()
        for rec in g.to_dict("records"):
            settings.setdefault((rec["dataset"], rec["attack"]), OrderedDict()).setdefault(
                rec["scenario"], []).append(rec)
        # bucket order: the first scenario of every setting, then the second of every setting, ...
        columns = [list(s.values()) for s in settings.values()]
        buckets = [col[i] for i in range(max(map(len, columns), default=0)) for col in columns if i < len(col)]
        queues = [iter(b) for b in buckets]
        taken = 0
        while queues and taken < n:
            alive = []
            for q in queues:
                if taken >= n:
                    break
                rec = next(q, None)
                if rec is not None:
                    picked.append(rec)
                    taken += 1
                    alive.append(q)
            queues = alive
    return picked


def thumbnail(data: bytes, px: int) -> str | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.thumbnail((px, px))
            if im.mode in ("RGBA", "LA", "P"):
                im = im.convert("RGBA")
                bg = Image.new("RGB", im.size, "white")
                bg.paste(im, mask=im.split()[-1])
                im = bg
            elif im.mode != "RGB":
                im = im.convert("RGB")
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=80)
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _cut(text: str | None, limit: int) -> tuple[str | None, int]:
    if text is None or len(text) <= limit:
        return text, 0
    return text[:limit], len(text) - limit


def collect_samples(runs: Sequence[Run], opts: ReportOptions) -> tuple[list[dict], dict[str, str], int]:
    samples: list[dict] = []
    images: dict[str, str] = {}
    total = 0
    for run in runs:
        planned, verdicts = run.res.planned, run.res.verdicts
        total += len(planned)
        by_completion = {k: g for k, g in verdicts.groupby("completion_key", sort=False)} if not verdicts.empty else {}
        for rec in _pick(planned, opts.max_samples):
            store = run.store
            probe = store.probe(rec["probe_key"])
            response = store.response(rec["completion_key"])
            prompt = []
            for m in probe.messages:
                shas = [p.sha256 for p in m.images]
                for sha in shas:
                    if sha not in images and store.blobs.has(sha):
                        uri = thumbnail(store.blobs.get(sha), opts.thumb_px)
                        if uri:
                            images[sha] = uri
                prompt.append({"role": m.role, "text": visible(m.text), "images": shas})
            vs = []
            g = by_completion.get(rec["completion_key"])
            if g is not None:
                for v in g.to_dict("records"):
                    vs.append({"judge": v["judge"], "channel": v["channel"], "label": v["label"],
                               "score": None if pd.isna(v["score"]) else float(v["score"]),
                               "rationale": visible(v["rationale"] or ""), "prefilter": bool(v["by_prefilter"])})
            split = response is not None and (response.reasoning is not None or response.outcome.value == "unclosed_think")
            texts: dict[str, str | None] = {"reasoning": None, "answer": None, "full": None}
            if response is not None:
                if split:
                    texts["reasoning"], texts["answer"] = response.reasoning, response.answer
                else:
                    texts["full"] = response.full
            cut = {}
            for ch, text in texts.items():
                kept, cut[ch] = _cut(text, opts.max_chars)
                texts[ch] = visible(kept) if kept is not None else None
            hide = {}
            for ch in CHANNELS:  # hidden unless every judge that read it called it safe or a refusal
                read = [v for v in vs if v["channel"] == ch or (ch == "full" and not split)]
                hide[ch] = bool(texts[ch]) and not (read and all(v["label"] in SAFE_LABELS for v in read))
            samples.append({
                "id": len(samples), "run": run.label, "model": rec["model"], "dataset": visible(rec["dataset"]),
                "scenario": visible(rec["scenario"]), "attack": rec["attack"], "sample_id": visible(str(rec["sample_id"])),
                "outcome": rec["outcome"] if isinstance(rec["outcome"], str) else "pending",
                "error": visible(rec["error"]) if isinstance(rec["error"], str) else None,
                "prompt": prompt, "query": visible(probe.judge_query), "split": split, **texts,
                "cut": {k: v for k, v in cut.items() if v}, "hide": hide, "verdicts": vs})
    return samples, images, total


# --- provenance -------------------------------------------------------------------------------


def provenance(run: Run) -> dict[str, Any]:
    meta = run.meta
    cfg = meta.get("config") or {}
    import yaml

    models = []
    for key, value in meta.items():
        if not key.startswith("model:"):
            continue
        card = value.get("card", {})
        models.append({"name": key.removeprefix("model:"), "card": card.get("name", ""),
                       "hub_id": card.get("hub_id", ""), "revision": card.get("revision") or "-",
                       "base": card.get("base") or "-", "think_format": _format_name(card.get("think_format", "")),
                       "prompt_style": card.get("prompt_style", ""),
                       "identity": json.dumps(value.get("identity", {}), sort_keys=True)})
    judges = []
    for label, j in (meta.get("judges") or {}).items():
        judges.append({"label": label, "name": j.get("name", ""), "prompt_hash": j.get("prompt_hash", ""),
                       "identity": json.dumps(j.get("identity", {}), sort_keys=True),
                       "scale": json.dumps(j.get("scale", {}), sort_keys=True)})
    seeds = [f"dataset {d.get('name')}: seed {d.get('seed')}, limit {d.get('limit')}" for d in cfg.get("datasets", [])]
    seeds += [f"model {m.get('alias') or m.get('card')}: generation seed {m.get('generation', {}).get('seed')}"
              for m in cfg.get("models", [])]
    env = meta.get("environment") or {}
    env_rows = _flatten(env)
    spans = meta.get("_spans", {})
    dates = [("run created", meta.get("created") or "-"),
             ("first / last completion", " / ".join(spans.get("completions", ("-", "-")))),
             ("first / last verdict", " / ".join(spans.get("verdicts", ("-", "-"))))]
    return {"label": run.label, "path": str(run.store.run_dir), "name": cfg.get("name", ""),
            "identity_hash": meta.get("identity_hash", "-"), "schema": meta.get("schema_version", "-"),
            "config": yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), "models": models, "judges": judges,
            "seeds": seeds, "environment": env_rows, "dates": dates}


def _flatten(d: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts as (dotted key, value) rows."""
    if isinstance(d, dict) and d:
        return [row for k, v in d.items() for row in _flatten(v, f"{prefix}{k}.")]
    return [(prefix.rstrip("."), "-" if d is None or d == {} else str(d))]


# --- putting it together ----------------------------------------------------------------------


def _judges(runs: Sequence[Run]) -> list[str]:
    """Judges with verdicts in the runs: those the configs name first, in their order, then re-judges."""
    from ..config import JudgeSpec

    have = {label for run in runs for label in run.res.verdicts["judge"].drop_duplicates()}
    have &= {label for run in runs for label in run.res.scales}  # a judge's scale is needed to read it
    found: list[str] = []
    for run in runs:
        for spec in (run.meta.get("config") or {}).get("judges", []):
            label = JudgeSpec.model_validate(spec).label
            if label in have and label not in found:
                found.append(label)
    found += sorted(have - set(found))
    return found


def _concat(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if f is not None and not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def agreement_rows(analysis: Any, results: list[RunResults], judges: list[str]) -> tuple[pd.DataFrame, list[dict]]:
    """Every pair of judges on every channel: agreement on attack success and Cohen's kappa."""
    rows, confusions = [], []
    for i, a in enumerate(judges):
        for b in judges[i + 1:]:
            for ch in CHANNELS:
                ag = analysis.judge_agreement(results, a, b, channel=ch)
                if ag["n"] == 0:
                    continue
                conf = ag.pop("confusion")
                rows.append(ag)
                if ch == "full":
                    confusions.append({"title": f"{a} (rows) against {b} (columns), full response, 1 = attack success",
                                       "table": table(conf.reset_index())})
    return pd.DataFrame(rows), confusions


def frontier_view(results: list[RunResults], judge: str, channel: str, asr_at: float | None, scale: Any,
                  pairs: pd.DataFrame, order: list[str], colours: dict[str, str]) -> dict[str, Any]:
    """The attack-success-against-over-refusal figure and its table (report/frontier.py)."""
    from .frontier import frontier_rows, frontier_svg

    threshold = asr_at if asr_at is not None else (scale.success_at if scale is not None else 1.0)
    rows = frontier_rows(results, judge, channel, threshold)
    fig = Figure(frontier_svg(rows, pairs, order, colours, judge, channel),
                 "Each dot: a model; x its refusal rate on requests it should help with, y its ASR on harmful "
                 "requests; whiskers: Wilson 95% intervals. A base model and its reasoning model share a hue "
                 "(light: base) and are joined by a dashed line. Lower left is better.")
    return {"frontier": fig, "frontier_table": table(rows, pct=("asr", "asr_lo", "asr_hi", "over_refusal",
                                                                  "over_refusal_lo", "over_refusal_hi"))}


def build(runs: Sequence[Run], opts: ReportOptions) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """The template's context and the tables written beside the report."""
    from ..results import analysis

    results = [r.res for r in runs]
    judges = _judges(runs)
    if opts.judge is not None and opts.judge not in judges:
        raise SafeMLRMError(f"--judge {opts.judge!r} has no verdicts in these runs; judges: "
                            f"{', '.join(judges) or 'none'}")
    primary = opts.judge or (judges[0] if judges else None)
    ordered = ([primary] if primary else []) + [j for j in judges if j != primary]
    asr_at, harmful_at, confidence = metric_settings(runs[0].res.config, None, None, None)

    rates = analysis.rates(results, asr_at, harmful_at, confidence)
    outcomes = _concat(r.res.outcomes().assign(run=r.label) for r in runs)
    if not outcomes.empty:  # runs have different outcome columns: a count missing in a run is 0
        keys = ["run", "model", "dataset", "attack"]
        counts = [c for c in OUTCOME_ORDER if c in outcomes] + sorted(
            c for c in outcomes if c not in keys and c not in OUTCOME_ORDER)
        outcomes = outcomes[keys + counts].fillna({c: 0 for c in counts}).astype({c: int for c in counts})
    attack_order = configured_attacks(r.res.config for r in runs)
    rates, outcomes = in_configured_order(rates, attack_order), in_configured_order(outcomes, attack_order)
    pairs = analysis.model_pairs(results)
    order, colours = model_order(runs, pairs)
    tables: dict[str, pd.DataFrame] = {"metrics": rates, "outcomes": outcomes, "model_pairs": pairs}
    scales = {label: s for r in runs for label, s in r.res.scales.items()}
    same = ("judge", "channel", "threshold")

    from ..judges.correction import corrected_rates  # beside the raw rate, for judges citing a validation file

    judges_meta = {label: m for r in reversed(runs) for label, m in r.res.judges.items()}
    corrected = corrected_rates(rates, judges_meta, asr_at)
    tables["corrected_rates"] = corrected
    from ..results.trace_findings import all_trace_findings

    tables["trace_findings"] = traces = all_trace_findings(results, judges, judges_meta, asr_at)
    views, prefilters = [], []
    cards = {name: m.get("card") or {} for r in runs for name, m in r.res.models.items()}
    has_sweep = False
    for j in ordered:
        dose = dose_response(rates, cards, j, opts.channel)  # reasoning control: ASR along a sweep
        has_sweep = has_sweep or not dose.empty
        tables[f"dose_response-{_safe_name(j)}"] = dose
        tax = analysis.reasoning_tax(results, j, channel=opts.channel, threshold=asr_at)
        blind = analysis.blind_spots(results, j, channel=opts.channel, threshold=asr_at)
        sc = analysis.self_correction(results, j, threshold=self_correction_threshold(runs[0].res.config, None, asr_at))
        dists = {ch: in_configured_order(analysis.score_distribution(results, j, ch), attack_order) for ch in CHANNELS}
        prefilters.append(analysis.prefilter_share(results, j))
        name = _safe_name(j)
        tables[f"asr_by_think_length-{name}"] = think_asr = analysis.asr_by_think(results, j, opts.channel, asr_at)
        tables.update({f"reasoning_tax-{name}": tax, f"blind_spots-{name}": blind, f"self_correction-{name}": sc})
        tables.update({f"scores-{name}-{ch}": d for ch, d in dists.items()})
        rj = rates[rates["judge"] == j] if not rates.empty else rates
        quality = rj[rj["scenario"] == "ALL"] if not rj.empty else rj
        views.append({
            "judge": j, "primary": j == primary,
            "headline": headline_figures(rates, j, opts.channel, order, colours),
            "headline_table": table(headline(rj), drop=("judge",)),
            "tax": tax_figure(tax, j, opts.channel), "tax_table": table(tax, drop=same),
            **frontier_view(results, j, opts.channel, asr_at, scales.get(j), pairs, order, colours),
            "think_asr_table": table(think_asr, drop=("judge", "channel")),
            "blind": blind_spot_figures(blind, j, opts.channel),
            "blind_table": table(blind[blind["flagged"]], drop=(*same, "factor")),
            "selfcorr": selfcorrection_figures(sc), "selfcorr_table": table(sc, drop=same),
            "dose": Figure(dose_line(dose, title=f"ASR against the swept value ({j}, {opts.channel} response)"),
                           DOSE_CAPTION), "dose_table": table(dose),
            "scores": [f for ch in CHANNELS for f in score_figures(dists[ch], j, ch, order, scales.get(j))],
            "corrected": table(corrected[corrected["judge"] == j], drop=("judge",),
                               pct=("asr", "asr_lo", "asr_hi", "asr_corrected", "corrected_lo", "corrected_hi",
                                    "sensitivity", "specificity")),
            "quality": table(quality[["model", "dataset", "attack", "channel", "planned", "judged", "unparseable",
                                      "absent"]] if not quality.empty else None),
        })
    agreement, confusions = agreement_rows(analysis, results, judges)
    prefilter = _concat(prefilters)
    tables["judge_agreement"] = agreement
    tables["prefilter_share"] = prefilter
    tables["think_lengths"] = think = analysis.think_length_distribution(results)
    ctx = {
        "views": views, "primary": primary, "judges": judges, "channel": opts.channel, "overlaps": overlaps(runs),
        "has_pairs": not pairs.empty, "has_sweep": has_sweep,
        "corrected_any": not corrected.empty,
        "trace_findings": table(traces, drop=("threshold",), pct=("superficial_share", "superficial_lo",
                                                                 "superficial_hi", "complied_share", "complied_lo",
                                                                 "complied_hi")),
        "outcome_figure": outcome_figure(outcomes, order), "outcome_table": table(outcomes),
        "agreement": table(agreement), "confusions": confusions, "prefilter": table(prefilter),
        "think_lengths": table(think),
        "provenance": [provenance(r) for r in runs],
    }
    return ctx, tables


def render_html(runs: Sequence[Run], opts: ReportOptions, ctx: dict[str, Any]) -> tuple[str, int, int]:
    samples, images, total = collect_samples(runs, opts)
    labels = sorted({v["label"] for s in samples for v in s["verdicts"]})
    css = (Path(__file__).parent / "static" / "report.css").read_text(encoding="utf-8")
    js = (Path(__file__).parent / "static" / "browser.js").read_text(encoding="utf-8")
    csp = ("default-src 'none'; img-src data:; " f"style-src {csp_hash(css)}; script-src {csp_hash(js)}; "
           "base-uri 'none'; form-action 'none'")
    env = Environment(loader=PackageLoader("safemlrm.report", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    sample_data = {"samples": samples, "judges": ctx["judges"], "primary_judge": ctx["primary"], "labels": labels,
                   "runs": len(runs), "options": {"blur_images": opts.blur_images, "hide_unsafe": opts.hide_unsafe}}
    html = env.get_template("report.html.j2").render(
        **ctx, css=Markup(css), js=Markup(js), csp=csp, runs=[r.label for r in runs],
        generated=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), version=__version__,
        opts=opts, parquet=parquet_available(), sample_json=script_json(sample_data), image_json=script_json(images),
        samples_embedded=len(samples), samples_total=total, capped=len(samples) < total)
    return html, len(samples), total


def render_markdown(runs: Sequence[Run], ctx: dict[str, Any], tables: dict[str, pd.DataFrame]) -> str:
    """Each run's summary (report/markdown.py), then the analyses that span runs."""
    parts = ["# safemlrm report", "", "> Content warning: model responses to harmful requests.", "",
             f"Runs: {', '.join(r.label for r in runs)}. Judge: {ctx['primary']}, channel: {ctx['channel']}. "
             f"The HTML report beside this file has the figures and a sample browser.", ""]
    parts += [f"- note: {n}" for n in ctx["overlaps"]]
    for run in runs:
        body = render_summary(summary_of(run.res)).splitlines()  # from the frames: each run read once
        parts += [f"## Run {run.label}", ""] + [re.sub(r"^(#+) ", r"#\1 ", line) for line in body[1:]] + [""]
    primary = _safe_name(ctx["primary"]) if ctx["primary"] else None
    if primary:
        tax = tables[f"reasoning_tax-{primary}"]
        tax = tax[tax["scenario"] == "ALL"]
        blind = tables[f"blind_spots-{primary}"]
        sc = tables[f"self_correction-{primary}"]
        sc = sc[sc["n"] > 0]
        fmt = lambda df, cols: df.assign(**{c: df[c].map(_pct) for c in cols})  # noqa: E731
        parts += [f"## Reasoning tax ({ctx['primary']}, {ctx['channel']} response)", "",
                  md_table(fmt(tax, ["asr_base", "asr_reasoning", "diff", "diff_lo", "diff_hi"])[
                      ["base", "reasoning", "dataset", "attack", "n_items", "asr_base", "asr_reasoning", "diff",
                       "diff_lo", "diff_hi", "ratio"]]) if not tax.empty else "_no base / reasoning pairs_", "",
                  "## Blind spots (flagged scenarios)", "",
                  md_table(fmt(blind[blind["flagged"]], ["asr_base", "asr_reasoning"])[
                      ["base", "reasoning", "dataset", "attack", "scenario", "asr_base", "asr_reasoning", "ratio",
                       "mean_ratio"]]) if blind["flagged"].any() else "_none flagged_", "",
                  "## Self-correction", "",
                  md_table(fmt(sc, ["corrected_share", "reverse_share"])[
                      ["model", "dataset", "attack", "n", "runsafe_asafe", "unsafe_reasoning", "corrected_share",
                       "rsafe_aunsafe", "safe_reasoning", "reverse_share"]]) if not sc.empty
                  else "_no model with judged reasoning and answer_", ""]
        think = tables.get("think_lengths")
        if think is not None and not think.empty:
            parts += ["## Think length (reasoning tokens per sample)", "", md_table(think), ""]
    tf = tables.get("trace_findings")
    if tf is not None and not tf.empty:
        cols = ["superficial_share", "complied_share"]
        parts += ["## What the trace knew (trace-rubric)", "",
                  md_table(tf.assign(**{c: tf[c].map(_pct) for c in cols})[
                      ["model", "dataset", "attack", "trace_judge", "answer_judge", "n", "safe_answers",
                       "superficially_safe", "superficial_share", "recognised", "recognised_complied",
                       "complied_share"]]), ""]
    cor = tables.get("corrected_rates")
    if cor is not None and not cor.empty:
        cols = ["asr", "asr_corrected", "corrected_lo", "corrected_hi", "sensitivity", "specificity"]
        parts += ["## ASR corrected for judge error (Rogan-Gladen)", "",
                  md_table(cor.assign(**{c: cor[c].map(_pct) for c in cols})[
                      ["model", "dataset", "attack", "judge", "channel", *cols, "validation"]]), ""]
    return "\n".join(parts)


def _format_name(fmt: Any) -> str:
    return fmt.get("name", "custom") if isinstance(fmt, dict) else str(fmt)  # a declared format: its name


def parquet_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("pyarrow") is not None


def write_tables(runs: Sequence[Run], tables: dict[str, pd.DataFrame], out: Path) -> list[Path]:
    """Every table behind the figures, and each run's items with their texts (export.py), as CSV and
    Parquet, under the export rules of safety.py (formula-looking cells quoted, surrogates visible)."""
    from ..results.export import export_store

    folder = out / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    parquet = parquet_available()
    written = []
    for name, df in tables.items():
        if df is None or df.empty:
            continue
        path = folder / f"{name}.csv"
        path.write_bytes(df.map(csv_cell).to_csv(index=False).encode("utf-8", "backslashreplace"))
        written.append(path)
        if parquet:
            df.map(export_text).to_parquet(folder / f"{name}.parquet", index=False)
            written.append(folder / f"{name}.parquet")
    for run in runs:  # every format from one read of the run
        formats = ("csv", "parquet") if parquet else ("csv",)
        written += export_store(run.store, {fmt: folder / f"items-{_safe_name(run.label)}.{fmt}" for fmt in formats})
    return written


def write_report(run_dirs: Sequence[str | Path], out_dir: str | Path, opts: ReportOptions | None = None) -> ReportFiles:
    opts = opts or ReportOptions()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SafeMLRMError(f"--out {out} exists and is not a folder")
    with ExitStack() as stack:
        runs = open_runs(run_dirs, stack)
        ctx, tables = build(runs, opts)
        html, embedded, total = render_html(runs, opts, ctx)
        out.mkdir(parents=True, exist_ok=True)
        # backslashreplace: a lone surrogate that slipped past `visible` is written visibly, not fatally
        (out / "report.html").write_bytes(html.encode("utf-8", "backslashreplace"))
        (out / "summary.md").write_bytes(render_markdown(runs, ctx, tables).encode("utf-8", "backslashreplace"))
        written = write_tables(runs, tables, out)
    return ReportFiles(html=out / "report.html", summary=out / "summary.md", tables=written,
                       samples_embedded=embedded, samples_total=total)
