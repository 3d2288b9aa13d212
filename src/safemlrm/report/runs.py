"""The runs a report reads (each once: its store open, its items as frames, its meta), the
report's options, and each run's provenance."""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from ..errors import SafeMLRMError
from ..results import RunResults, load_store
from ..store import Store


CHANNELS = ("full", "answer", "reasoning")


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


def _format_name(fmt: Any) -> str:
    return fmt.get("name", "custom") if isinstance(fmt, dict) else str(fmt)  # a declared format: its name
