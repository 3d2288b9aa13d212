"""The checks a run makes before its first model call, made without calling a model: the dry run.

`preflight(cfg)` loads every dataset (counting its items and the ones left out), builds every
attack, sends each attack's first probes of each dataset past every model it applies to (the same
modality rule `plan.make_probes` enforces, `modality_problems`), resolves cards and judges, and
asks every judge and target server whether it answers. It returns the plan (one row per model,
dataset and attack that applies) and the problems, each naming what it is about; `safemlrm run
--dry-run` prints both and exits 2 when there is a problem.

Which pairs exist is one rule too (`applies`): a dataset or attack entry with `models: [...]` goes
only to those models, so one config audits text-only and vision models together.
"""
from __future__ import annotations

import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from .. import registry
from ..config import AttackSpec, DatasetSpec, RunConfig
from ..datasets.base import Dataset, select
from ..errors import SafeMLRMError
from ..records import Modality, Sample
from .build import build_attack, build_backend, build_dataset, build_judge, catalog_for

PROBE_SAMPLES = 4  # the first items of each dataset each attack is built on to learn what it sends
SERVER_TIMEOUT = 5.0


class PlanRow(BaseModel):
    model_config = ConfigDict(frozen=True)
    model: str
    dataset: str
    attack: str
    probes: int
    problem: str = ""  # what stops this pair, "" when nothing does


class LeftOut(BaseModel):
    """Items of a dataset left out while loading (an empty required text, or `on_error: skip`)."""
    model_config = ConfigDict(frozen=True)
    count: int
    records: tuple[str, ...]  # the first reasons, each naming the file and the record


class Preflight(BaseModel):
    model_config = ConfigDict(frozen=True)
    rows: tuple[PlanRow, ...]
    problems: tuple[str, ...]
    left_out: dict[str, LeftOut]

    @property
    def ok(self) -> bool:
        return not self.problems


def applies(dspec: DatasetSpec, aspec: AttackSpec, model: str) -> bool:
    """Whether `model` gets this dataset's probes built with this attack."""
    return all(not spec.models or model in spec.models for spec in (dspec, aspec))


def left_out(ds: Dataset) -> LeftOut | None:
    n = int(getattr(ds, "skipped", 0) or 0)
    return LeftOut(count=n, records=tuple(getattr(ds, "skip_reasons", ()))) if n else None


def modality_problems(dataset: str, attack: str, mods: frozenset[Modality], backends: dict[str, Any]) -> list[str]:
    """One message per model that cannot take what this dataset and attack send."""
    out = []
    for model, backend in backends.items():
        accepts = accepted(backend)
        if mods - accepts:
            out.append(
                f"dataset {dataset!r} with attack {attack!r} sends {', '.join(sorted(m.value for m in mods))}, "
                f"but model {model!r} (backend {backend.registered_name!r}) accepts only "
                f"{', '.join(sorted(m.value for m in accepts))}. Use a text-only attack such as 'vanilla' "
                f"for this model (an attack's `models:` list says which models it goes to), or a vision-language model.")
    return out


def accepted(backend: Any) -> frozenset[Modality]:
    """What a backend takes; its card's modalities when finding out needs files not here yet (a Hub
    model not downloaded: the run downloads it and checks again)."""
    try:
        return frozenset(backend.accepts)
    except (SafeMLRMError, OSError, ValueError):
        return frozenset(backend.card.modalities)


def server_problem(what: str, backend: Any) -> str | None:
    """None when the OpenAI-compatible server behind `backend` answers HTTP (any status), else why not.
    The address shown leaves credentials out."""
    url = getattr(backend, "_url", None)
    if not url:
        return None
    probe = url.rsplit("/chat/completions", 1)[0] + "/models"
    try:
        with urllib.request.urlopen(probe, timeout=SERVER_TIMEOUT):
            return None
    except urllib.error.HTTPError:
        return None  # it answered (401, 404, ...): reachable
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        return f"{what}: the server at {backend.base_url} does not answer ({reason})"


def judge_problems(label: str, judge: Any) -> list[str]:
    """A judge's own preflight when it has one, else whether its server answers."""
    check = getattr(judge, "preflight", None)
    if callable(check):
        try:
            found = check()
        except SafeMLRMError as e:
            return [f"judge {label}: {e}"]
        if isinstance(found, str):
            return [f"judge {label}: {found}"] if found else []
        if isinstance(found, Iterable):
            return [f"judge {label}: {p}" for p in found if p]
        return []
    backend = getattr(judge, "backend", None)
    if backend is not None and getattr(backend, "registered_name", None) == "openai":
        p = server_problem(f"judge {label}", backend)
        return [p] if p else []
    return []


def preflight(cfg: RunConfig) -> Preflight:
    from ..attacks.base import AttackContext
    from ..blobs import BlobStore
    from ..validate import check_names

    registry.load_plugins()
    catalog = catalog_for(cfg)
    check_names(cfg, catalog)
    problems: list[str] = []
    backends: dict[str, Any] = {}
    model_problem: dict[str, str] = {}
    for m in cfg.models:
        try:
            backends[m.name] = build_backend(m, catalog.get(m.card))
        except SafeMLRMError as e:
            model_problem[m.name] = f"model {m.name}: {e}"
            continue
        path = m.options.get("path")
        if path and not Path(path).exists():
            model_problem[m.name] = f"model path {path} not found"
        elif backends[m.name].registered_name == "openai":
            model_problem[m.name] = server_problem(f"model {m.name}", backends[m.name]) or ""
    problems.extend(p for p in model_problem.values() if p)
    attacks: dict[int, Any] = {}
    attack_problem: dict[int, str] = {}
    for i, aspec in enumerate(cfg.attacks):
        try:
            attacks[i] = build_attack(aspec)
        except SafeMLRMError as e:
            attack_problem[i] = f"attack {aspec.name}: {e}"
            problems.append(attack_problem[i])
    rows: list[PlanRow] = []
    gone: dict[str, LeftOut] = {}
    with tempfile.TemporaryDirectory(prefix="safemlrm-preflight-") as tmp:
        ctx = AttackContext(blobs=BlobStore(Path(tmp) / "blobs"), cache_dir=Path(tmp) / "cache")
        for dspec in cfg.datasets:
            first: list[Sample] = []
            n, dproblem = 0, ""
            try:
                ds = build_dataset(dspec)
                for s in select(ds, dspec.scenarios, dspec.limit, dspec.seed):
                    if len(first) < PROBE_SAMPLES:
                        first.append(s)
                    n += 1
                if (lo := left_out(ds)) is not None:
                    gone[dspec.name] = lo
            except SafeMLRMError as e:
                dproblem = f"dataset {dspec.name}: {e}"
                problems.append(dproblem)
                n = 0
            for i, aspec in enumerate(cfg.attacks):
                targets = [m.name for m in cfg.models if applies(dspec, aspec, m.name)]
                found: dict[str, str] = {}
                if first and i in attacks and targets:
                    try:
                        probes = [attacks[i].build(s, ctx) for s in first]
                        mods = frozenset().union(*(p.modalities for p in probes))
                        for model in targets:
                            if model in backends:
                                for msg in modality_problems(dspec.name, aspec.name, mods, {model: backends[model]}):
                                    found[model] = msg
                                    problems.append(msg)
                    except SafeMLRMError as e:
                        msg = f"dataset {dspec.name} with attack {aspec.name}: {e}"
                        found = dict.fromkeys(targets, msg)
                        problems.append(msg)
                for model in targets:
                    why = "; ".join(x for x in (dproblem, attack_problem.get(i, ""), found.get(model, ""),
                                                model_problem.get(model, "")) if x)
                    rows.append(PlanRow(model=model, dataset=dspec.name, attack=aspec.name, probes=n, problem=why))
    for jspec in cfg.judges:
        try:
            judge = build_judge(jspec)
        except SafeMLRMError as e:
            problems.append(f"judge {jspec.label}: {e}")
            continue
        try:
            problems.extend(judge_problems(jspec.label, judge))
        finally:
            judge.close()
    return Preflight(rows=tuple(rows), problems=tuple(dict.fromkeys(problems)), left_out=gone)


def left_out_lines(left: dict[str, Any]) -> list[str]:
    """The summary's and the dry run's lines on items left out: the count and the records named."""
    lines = []
    for name, lo in left.items():
        lo = lo if isinstance(lo, LeftOut) else LeftOut.model_validate(lo)
        lines.append(f"dataset {name}: {lo.count} item(s) left out")
        lines.extend(f"  - {r}" for r in lo.records)
    return lines


def stored_left_out(store: Any) -> dict[str, LeftOut]:
    """The left-out counts `plan.make_probes` stored, by dataset."""
    return {name: LeftOut.model_validate(lo) for name, lo in store.meta_items("left_out:") if lo}


def print_preflight(pf: Preflight, name: str, console: Any) -> bool:
    """The dry run's output: the plan, the items left out, the problems. True when there is none."""
    from ..cli_output import render_table
    from ..untrusted import printable

    render_table(console, f"dry run: {name}", ["model", "dataset", "attack", "probes", "problem"],
                 [[r.model, r.dataset, r.attack, r.probes, printable(r.problem) or "-"] for r in pf.rows])
    console.print(f"total probes: {sum(r.probes for r in pf.rows)}")
    for line in left_out_lines(pf.left_out):
        console.print(printable(line), highlight=False)
    if pf.problems:
        console.print(f"{len(pf.problems)} problem(s):", markup=False)
        for p in pf.problems:
            console.print(f"  - {printable(p)}", highlight=False, soft_wrap=True)
    return pf.ok


def dry_run(cfg: RunConfig) -> list[dict[str, Any]]:
    """The preflight's plan as rows (model, dataset, attack, probes, card, missing)."""
    pf = preflight(cfg)
    catalog = catalog_for(cfg)
    cards = {m.name: m.card for m in cfg.models}
    return [{"model": r.model, "dataset": r.dataset, "attack": r.attack, "probes": r.probes,
             "card": catalog.get(cards[r.model]).hub_id, "missing": r.problem} for r in pf.rows]
