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
import json
import math
import re
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from .. import __version__
from ..errors import SafeMLRMError
from ..results.summary import summary_of
from ..untrusted import csv_cell, escape_surrogates, export_text
from .markdown import _pct, md_table, render_summary
from .context import build, safe_name
from .runs import ReportOptions, Run, open_runs
from .samples import collect_samples

__all__ = ["ReportFiles", "ReportOptions", "script_json", "write_report"]

@dataclass
class ReportFiles:
    html: Path
    summary: Path
    tables: list[Path]
    samples_embedded: int
    samples_total: int


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
    primary = safe_name(ctx["primary"]) if ctx["primary"] else None
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


def parquet_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("pyarrow") is not None


def _one_type_per_column(df: pd.DataFrame) -> pd.DataFrame:
    """Parquet columns hold one type: a column mixing text and numbers (a sweep's values, such as
    think_budget 0, 64, more, or budgets beside prefixes) is written as text."""
    mixed = [c for c in df.columns if df[c].dtype == object
             and len({type(v) for v in df[c] if v is not None and not (isinstance(v, float) and v != v)}) > 1]
    return df.assign(**{c: df[c].map(lambda v: v if v is None or (isinstance(v, float) and v != v) else str(v))
                        for c in mixed}) if mixed else df


def write_tables(runs: Sequence[Run], tables: dict[str, pd.DataFrame], out: Path) -> list[Path]:
    """Every table behind the figures, and each run's items with their texts (export.py), as CSV and
    Parquet, under the export rules of untrusted.py (formula-looking cells quoted, surrogates visible)."""
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
            _one_type_per_column(df.map(export_text)).to_parquet(folder / f"{name}.parquet", index=False)
            written.append(folder / f"{name}.parquet")
    for run in runs:  # every format from one read of the run
        formats = ("csv", "parquet") if parquet else ("csv",)
        written += export_store(run.store, {fmt: folder / f"items-{safe_name(run.label)}.{fmt}" for fmt in formats})
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
