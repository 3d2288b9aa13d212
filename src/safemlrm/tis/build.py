"""`safemlrm tis build CONFIG`: Think-in-Safety tuning data from datasets with reference answers.

Steps, each cached in the build directory's store and resumable like a run:

1. collect   read every source (any dataset safemlrm loads) into items: image, question, reference
             answer and what that answer does (refuse / help); images go to the blob store;
2. caption   a vision model describes each distinct image;
3. think     a teacher (any backend) writes a safety-oriented thought from the caption, the question,
             the policy and the reference answer, ending in that answer's decision;
4. filter    format, artefacts, thought/answer consistency, duplicates, balance (filters.py), each
             counted in the build report;
5. export    the TiS file, its images, a `datasets` dataset and Parquet (export.py).

A build killed anywhere resumes with the same command: answered requests are never sent again,
failed ones are retried. Filtering and export are recomputed from the stored answers every time.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from .. import registry
from ..blobs import sniff_media_type
from ..config import ModelSpec
from ..datasets.base import select
from ..errors import ConfigError, DataError
from ..fsutil import write_atomic
from ..hashing import content_hash
from ..models.cards import CardCatalog
from ..progress import make_progress
from ..records import ImagePart, Message, Outcome, Probe, Response, Sample, TextPart
from ..pipeline.build import build_backend, build_dataset, environment
from ..store import Store
from .config import BuildConfig, ConsistencySpec, SourceSpec
from .export import write_export
from .filters import (Agreement, Candidate, ConsistencyCheck, FilterSettings, RefusalConsistency, answer_decision,
                      run_filters)
from .generate import Step, StepStats
from .policy import CONSISTENCY_PROMPT, teacher_text

ANSWER_META = ("reference_response", "reference_answer")


@dataclass
class BuildResult:
    build_dir: Path
    report: dict[str, Any]
    export: Any = None
    steps: dict[str, StepStats] = field(default_factory=dict)


def _question(s: Sample, spec: SourceSpec) -> str | None:
    if spec.question_field:
        return s.fields.get(spec.question_field)
    field_name = s.meta.get("prompt_field")
    return s.fields.get(field_name) if field_name else s.intent


def _answer(s: Sample, spec: SourceSpec) -> str | None:
    if spec.answer_field:
        value = s.fields.get(spec.answer_field, s.meta.get(spec.answer_field))
        return str(value) if value not in (None, "") else None
    for k in ANSWER_META:
        if s.meta.get(k):
            return str(s.meta[k])
    return None


def _image_path(s: Sample) -> str | None:
    if not s.images:
        return None
    role = s.meta.get("prompt_image") or ("image" if "image" in s.images else sorted(s.images)[0])
    return s.images.get(role)


class LLMConsistency(ConsistencyCheck):
    """A model asked whether the thought's decision and the answer agree (AGREE / DISAGREE). Its
    answers are build steps like the others: cached, and retried when they failed."""

    name = "llm"

    def __init__(self, step: Step, store: Store, bar=None):
        self.step, self.store, self.bar = step, store, bar
        self.stats = StepStats()

    def identity(self) -> dict[str, Any]:
        return {"check": self.name, "model": self.step.backend.identity(), "prompt": content_hash(CONSISTENCY_PROMPT)}

    @staticmethod
    def parse(text: str) -> bool | None:
        words = re.findall(r"\b(AGREE|DISAGREE)\b", text.upper())
        if not words or len(set(words)) > 1:
            return None  # no verdict, or both words: never guessed
        return words[0] == "AGREE"

    def check(self, pairs: list[tuple[str, str]]) -> list[Agreement]:
        probes = [Probe(dataset="tis", sample_id=content_hash(t, a, length=16), scenario="consistency",
                        attack="tis-consistency", judge_query="",
                        messages=(Message(role="user", content=(TextPart(
                            text=CONSISTENCY_PROMPT.format(thought=t.strip(), answer=a.strip())),)),))
                  for t, a in pairs]
        responses, self.stats = self.step.run(self.store, probes, self.bar)
        out = []
        for p in probes:
            r = responses[p.key]
            if r.outcome is Outcome.ERROR:
                out.append(Agreement(None, rationale=f"judge error: {r.full[:200]}"))
                continue
            verdict = self.parse(r.answer or "")
            out.append(Agreement(verdict, rationale=f"judge said {' '.join((r.answer or '').split())[:80]!r}"))
        return out


class Builder:
    def __init__(self, cfg: BuildConfig, build_dir: str | Path, *, console: Console | None = None,
                 show_progress: bool = True):
        self.cfg = cfg
        self.dir = Path(build_dir)
        self.console = console or Console(stderr=True)
        self.show_progress = show_progress
        self.catalog = CardCatalog.builtin()
        for path in cfg.cards:
            self.catalog.extend_from(path)

    def _step(self, label: str, spec: ModelSpec) -> Step:
        card = self.catalog.get(spec.card)
        return Step(label, spec, card, build_backend(spec, card))

    # --- 1. collect --------------------------------------------------------------------------
    def collect(self, store: Store) -> tuple[list[Candidate], dict[str, dict[str, int]]]:
        """Every usable sample as a Candidate without a thought yet: its image is the sha256 in the blob
        store, the image's media type is in meta["media_type"]."""
        items: list[Candidate] = []
        counts: dict[str, dict[str, int]] = {}
        for spec in self.cfg.sources:
            ds = build_dataset(spec)
            c = counts.setdefault(spec.name, {"samples": 0, "items": 0, "no_answer": 0, "no_question": 0,
                                              "no_image": 0})
            for s in select(ds, spec.scenarios, spec.limit, spec.seed):
                c["samples"] += 1
                question, answer, image = _question(s, spec), _answer(s, spec), _image_path(s)
                if not answer or not answer.strip():
                    c["no_answer"] += 1
                    continue
                if not question or not question.strip():
                    c["no_question"] += 1
                    continue
                if image is None:
                    c["no_image"] += 1
                    continue
                try:
                    data = Path(image).read_bytes()
                    part = store.blobs.put(data, sniff_media_type(data))
                except (OSError, ValueError) as e:
                    raise DataError(f"dataset {spec.name!r}, item {s.id!r}: cannot read image {image}: {e}") from None
                key = content_hash("tis-item", s.dataset, s.id, question, answer, part.sha256)
                items.append(Candidate(key, s.dataset, s.id, s.scenario, question.strip(), answer.strip(),
                                       answer_decision(answer), image=part.sha256, thought=None,
                                       meta={"media_type": part.media_type}))
                c["items"] += 1
            if c["samples"] and not c["items"]:
                why = max(("no_answer", "no_question", "no_image"), key=lambda k: c[k])
                hint = {"no_answer": "name the field that holds it with `answer_field` (e.g. chosen for SPA-VL's "
                                     "training split)",
                        "no_question": "name the field that holds it with `question_field`",
                        "no_image": "TiS records need an image"}[why]
                raise ConfigError(f"source {spec.name!r}: none of its {c['samples']} samples could be used "
                                  f"({why.replace('_', ' ')}: {c[why]}); {hint}")
        return items, counts

    # --- 2. caption --------------------------------------------------------------------------
    def caption_probe(self, sha: str, media_type: str) -> Probe:
        return Probe(dataset="tis", sample_id=sha, scenario="caption", attack="tis-caption", judge_query="",
                     messages=(Message(role="user", content=(ImagePart(sha256=sha, media_type=media_type),
                                                             TextPart(text=self.cfg.caption_prompt))),))

    # --- 3. think ----------------------------------------------------------------------------
    def teacher_probe(self, item: Candidate, caption: str) -> Probe:
        text = teacher_text(self.cfg.teacher_prompt, policy=self.cfg.policy, caption=caption,
                            question=item.question, answer=item.answer, decision=item.decision)
        return Probe(dataset=item.source, sample_id=item.sample_id, scenario=item.scenario, attack="tis-teacher",
                     judge_query=item.question, messages=(Message(role="user", content=(TextPart(text=text),)),))

    def thought(self, r: Response) -> tuple[str | None, str | None]:
        """(thought, problem) from a teacher's response, as `thought_from` says."""
        if self.cfg.thought_from == "reasoning":
            if not r.reasoning:
                return None, "teacher_no_reasoning"
            if r.outcome is Outcome.UNCLOSED_THINK:
                return None, "teacher_truncated"
            return r.reasoning, None
        if r.outcome in (Outcome.UNCLOSED_THINK, Outcome.TRUNCATED):
            return None, "teacher_truncated"
        if not r.answer:
            return None, "teacher_empty"
        return r.answer, None

    # --- the whole build -----------------------------------------------------------------------
    def consistency(self, spec: ConsistencySpec, store: Store, bar) -> ConsistencyCheck:
        if spec.kind == "refusal":
            return RefusalConsistency(window=spec.window, tail=spec.tail)
        assert spec.model is not None
        return LLMConsistency(self._step("consistency", spec.model), store, bar)

    def build(self) -> BuildResult:
        registry.load_plugins()
        cfg = self.cfg
        result = BuildResult(self.dir, {})
        with Store(self.dir) as store:
            store.set_meta("tis_config", cfg.echo())
            store.set_meta("environment", environment())
            if store.get_meta("created") is None:
                store.set_meta("created", dt.datetime.now(dt.timezone.utc).isoformat())
            items, source_counts = self.collect(store)
            with make_progress(self.console, self.show_progress) as bar:
                # caption each distinct image once
                images = {it.image: it.meta["media_type"] for it in items}
                cap_probes = {sha: self.caption_probe(sha, mt) for sha, mt in images.items()}
                responses, result.steps["caption"] = self._step("captioner", cfg.captioner).run(
                    store, list(cap_probes.values()), bar)
                captions: dict[str, str | None] = {}
                for sha, p in cap_probes.items():
                    r = responses[p.key]
                    captions[sha] = r.answer if r.outcome is not Outcome.ERROR and r.answer else None
                captioned = [it for it in items if captions[it.image]]
                # the teacher's thought for each captioned item
                t_probes = {it.key: self.teacher_probe(it, captions[it.image] or "") for it in captioned}
                responses, result.steps["teacher"] = self._step("teacher", cfg.teacher).run(
                    store, list(t_probes.values()), bar)
                cands, teacher_errors = [], 0
                for it in captioned:
                    r = responses[t_probes[it.key].key]
                    if r.outcome is Outcome.ERROR:
                        teacher_errors += 1
                        continue
                    thought, problem = self.thought(r)
                    cands.append(replace(it, thought=thought, problem=problem, meta=dict(it.meta)))
                f = cfg.filters
                check = self.consistency(f.consistency, store, bar)
                settings = FilterSettings(artefacts=f.artefacts, leaked_phrases=[*f.leaked_phrases, *f.extra_leaked_phrases],
                                          undecided=f.undecided, dedupe=f.dedupe,
                                          max_ratio=f.balance.max_ratio if f.balance else None,
                                          seed=f.balance.seed if f.balance else 0)
                filtered = run_filters(cands, settings, check)
                if isinstance(check, LLMConsistency):
                    result.steps["consistency"] = check.stats
            export = write_export(filtered.kept, self.dir / "export", store.blobs, images=cfg.export.images,
                                  hf=cfg.export.hf, parquet=cfg.export.parquet)
            result.export = export
            report = {
                "name": cfg.name,
                "finished": dt.datetime.now(dt.timezone.utc).isoformat(),
                "sources": source_counts,
                "items": len(items),
                "images": len(images),
                "steps": {k: vars(v) for k, v in result.steps.items()},
                "caption_failed": sum(1 for it in items if not captions[it.image]),
                "teacher_failed": teacher_errors,
                **filtered.report,
                "export": {"json": str(export.json), "images": export.images,
                           "hf": str(export.hf) if export.hf else None,
                           "parquet": str(export.parquet) if export.parquet else None},
            }
            result.report = report
            store.set_meta("tis_report", report)
            write_atomic(self.dir / "build_report.json", json.dumps(report, indent=2).encode())
            write_atomic(self.dir / "build_report.md", report_markdown(report).encode())
            rejected = "".join(json.dumps({"id": r.candidate.key, "source": r.candidate.source,
                                           "sample_id": r.candidate.sample_id, "stage": r.stage, "reason": r.reason,
                                           "thought": r.candidate.thought}, ensure_ascii=False) + "\n"
                               for r in filtered.rejected)
            write_atomic(self.dir / "rejected.jsonl", rejected.encode("utf-8"))
        return result


def report_markdown(r: dict[str, Any]) -> str:
    lines = [f"# Think-in-Safety build: {r['name']}", "", "| source | samples | items | no answer | no question | no image |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, c in r["sources"].items():
        lines.append(f"| {name} | {c['samples']} | {c['items']} | {c['no_answer']} | {c['no_question']} | {c['no_image']} |")
    lines += ["", "| step | requests | calls now | errors |", "| --- | ---: | ---: | ---: |"]
    for name, s in r["steps"].items():
        lines.append(f"| {name} | {s['requests']} | {s['calls']} | {s['errors']} |")
    lines += ["", f"Items {r['items']} ({r['images']} distinct images); caption failed {r['caption_failed']}, "
                  f"teacher failed {r['teacher_failed']} (retried by the next build); candidates {r['candidates']}.",
              "", "| filter | removed |", "| --- | ---: |"]
    lines += [f"| {k} | {v} |" for k, v in r["removed"].items()]
    lines += ["", "Format problems: " + (", ".join(f"{k} {v}" for k, v in r["format_problems"].items()) or "none"),
              "", "Artefacts (records with each kind): " + ", ".join(f"{k} {v}" for k, v in r["artefacts"].items()),
              "", "Consistency ({}): agree {agree}, disagree {disagree}, undecided {undecided}".format(
                  r["consistency"]["check"]["check"], **r["consistency"]),
              "", f"Before balance: refuse {r['decisions_before_balance']['refuse']}, help "
                  f"{r['decisions_before_balance']['help']}. Kept **{r['kept']}**: refuse {r['decisions']['refuse']}, "
                  f"help {r['decisions']['help']}.", "", f"Export: {r['export']['json']}", ""]
    return "\n".join(lines)
