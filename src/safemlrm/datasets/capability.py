"""General-ability benchmarks, to see what safety tuning costs (Think in Safety reports MMMU, MM-Vet,
POPE and MMStar next to safety): MMStar, POPE, MMMU validation and MM-Vet. Each Sample keeps the
gold answer in `meta["answer"]` and how to score it in `meta["scoring"]` (see `safemlrm.capability`;
MM-Vet's answers are graded by an LLM, `safemlrm.judges.mmvet`).

* `mmstar` (Hub Lin-Chen/MMStar, `mmstar.parquet`, split val): columns index, question (the options
  are in the text: "Options: A: ..., B: ..."), image, answer (a letter), category, l2_category,
  meta_info. Scenario: category. Scoring: multiple choice.
* `pope` (Hub lmms-lab/POPE, `data/test-*.parquet`): columns id, question_id, question, answer
  (yes/no), image_source, image, category (adversarial, popular, random). Scenario: category.
  Scoring: yes/no (accuracy, precision, recall, F1 of "yes").
* `mmmu` (Hub MMMU/MMMU, one config per subject, `<Subject>/validation-*.parquet`): columns id,
  question, options (a Python-literal list), explanation, image_1 ... image_7, img_type, answer,
  topic_difficulty, question_type (multiple-choice | open), subfield. Scenario: the subject (the
  id's middle part, `validation_Art_1` -> Art). Scoring: multiple choice or open, MMMU's rules.
* `mmvet` (github yuweihao/MM-Vet, release mm-vet.zip; Hub lmms-lab/MMVet): `mm-vet.json`, an object
  keyed "v1_0" ... "v1_217" of {imagename, question, answer, capability: ["rec", "ocr", ...]}, images
  in `images/` beside it; the Hub copy is `data/test-*.parquet` with columns question_id, image,
  question, answer, image_source, capability (a string there: its separator is unverified, so a
  list, JSON/Python list text or comma-separated names are all read). Scenario: the item's
  capabilities in MM-Vet's order joined by "+" ("ocr+math"). Scoring: `mmvet`, an LLM grade 0-1.

The prompt (`fields["prompt"]`, what the `direct` attack sends with `field: prompt`) is the
question, the lettered options and "Answer with the option's letter from the given choices
directly." (multiple choice) or "Answer the question using a single word or phrase." (open, yes/no),
the wording lmms-eval uses for these benchmarks; MM-Vet's is its question as published (its own
inference scripts send nothing else).
"""
from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from ..records import Sample
from ..registry import register
from ..capability import MMVET_CAPABILITIES
from ..errors import DataError
from .io import BenchmarkDataset, ItemError, Row, find_files, read_json, text_fields, text_of

MC_SUFFIX = "Answer with the option's letter from the given choices directly."
OPEN_SUFFIX = "Answer the question using a single word or phrase."
_SUFFIXES = (".parquet", ".jsonl", ".json", ".tsv", ".csv")


class _Capability(BenchmarkDataset):
    capability: ClassVar[bool] = True  # scored for ability, not judged for safety (tis compare)
    files_named: tuple[str, ...] = ()  # path components a file must have, e.g. ("validation",)

    def _files(self) -> list[Path]:
        assert self.path is not None
        files = find_files(self.path, _SUFFIXES, must_contain=self.files_named)
        if not files:
            raise DataError(f"dataset {self.name!r}: no {'/'.join(_SUFFIXES)} file under {self.path}"
                            + (f" whose path names {', '.join(self.files_named)}" if self.files_named else ""))
        return files

    def sample(self, sid: str, scenario: str, question: str, prompt: str, images: dict[str, str], rec: dict,
               meta: dict[str, Any]) -> Sample:
        fields = text_fields(rec, skip=tuple(k for k in rec if k.startswith("image")))
        fields["prompt"] = prompt
        return Sample(dataset=self.registered_name, id=sid, scenario=scenario, intent=question, fields=fields,
                      images=images, license=self.sample_license,
                      meta={"capability": True, "prompt_field": "prompt", **meta})


@register("dataset", "mmstar")
class MMStar(_Capability):
    license = "unverified (see huggingface.co/datasets/Lin-Chen/MMStar)"
    hub_id = "Lin-Chen/MMStar"
    hub_split = "val"

    def _samples(self) -> Iterator[Sample]:
        rows = self.records(self._files, ("index", "question", "answer", "image"))
        yield from self.item_samples(rows, self._sample)

    def _sample(self, rec: dict, where: str, base: Path | None, _row: int) -> list[Sample]:
        sid = text_of(rec, "index", where)
        question = text_of(rec, "question", where)
        answer = text_of(rec, "answer", where).strip().upper()
        letters = re.findall(r"(?:^|[\s,])([A-Z]):", question.split("Options:", 1)[-1])
        image = self.image(rec.get("image"), base, where, "image")
        return [self.sample(sid, text_of(rec, "category", where, required=False) or "", question,
                            f"{question}\n{MC_SUFFIX}", {"image": image}, rec,
                            {"answer": answer, "scoring": "choice", "choices": letters or ["A", "B", "C", "D"]})]


@register("dataset", "pope")
class POPE(_Capability):
    license = "unverified (see huggingface.co/datasets/lmms-lab/POPE)"
    hub_id = "lmms-lab/POPE"
    hub_split = "test"
    scenarios = ("adversarial", "popular", "random")

    def _samples(self) -> Iterator[Sample]:
        rows = self.records(self._files, ("question_id", "question", "answer", "image"))
        yield from self.item_samples(rows, self._sample)

    def _sample(self, rec: dict, where: str, base: Path | None, _row: int) -> list[Sample]:
        sid = text_of(rec, "question_id", where)
        question = text_of(rec, "question", where)
        answer = text_of(rec, "answer", where).strip().lower()
        if answer not in ("yes", "no"):
            raise ItemError(f"{where}: field 'answer' is {answer!r}, not yes or no")
        image = self.image(rec.get("image"), base, where, "image")
        category = text_of(rec, "category", where, required=False) or ""
        return [self.sample(f"{category}-{sid}" if category else sid, category, question,
                            f"{question}\n{OPEN_SUFFIX}", {"image": image}, rec,
                            {"answer": answer, "scoring": "yes_no"})]


def mmmu_options(value: Any, where: str) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    try:
        opts = ast.literal_eval(str(value))  # published as the text of a Python list
    except (ValueError, SyntaxError):
        raise ItemError(f"{where}: field 'options' is not a list") from None
    if not isinstance(opts, list):
        raise ItemError(f"{where}: field 'options' is not a list")
    return [str(o) for o in opts]


@register("dataset", "mmmu")
class MMMU(_Capability):
    license = "Apache-2.0"
    hub_id = "MMMU/MMMU"
    hub_split = "validation"
    files_named = ("validation",)

    def _samples(self) -> Iterator[Sample]:
        rows = self.records(self._files, ("id", "question", "options", "answer", "question_type"))
        yield from self.item_samples(rows, partial(self._sample, set()))

    def _sample(self, seen: set[str], rec: dict, where: str, base: Path | None, _row: int) -> list[Sample]:
        sid = text_of(rec, "id", where)
        if sid in seen:
            raise ItemError(f"{where}: duplicate id {sid!r}")
        question = text_of(rec, "question", where)
        answer = text_of(rec, "answer", where).strip()
        kind = text_of(rec, "question_type", where).strip()
        options = mmmu_options(rec.get("options"), where)
        images = {f"image_{i}": self.image(rec[f"image_{i}"], base, where, f"image_{i}")
                  for i in range(1, 8) if rec.get(f"image_{i}") is not None}
        if not images:
            raise ItemError(f"{where}: no image_1 ... image_7")
        parts = sid.split("_")
        subject = "_".join(parts[1:-1]) if len(parts) > 2 else ""
        seen.add(sid)
        if kind == "multiple-choice" and options:
            letters = [chr(ord("A") + i) for i in range(len(options))]
            lines = "\n".join(f"({a}) {o}" for a, o in zip(letters, options))
            return [self.sample(sid, subject, question, f"{question}\n{lines}\n{MC_SUFFIX}", images, rec,
                                {"answer": answer, "scoring": "choice", "choices": letters, "options": options})]
        try:
            gold = ast.literal_eval(answer) if answer.startswith("[") else answer
        except (ValueError, SyntaxError):
            gold = answer
        return [self.sample(sid, subject, question, f"{question}\n{OPEN_SUFFIX}", images, rec,
                            {"answer": gold if isinstance(gold, list) else [str(gold)], "scoring": "open"})]


MMVET_FILE = "mm-vet.json"


def mmvet_capabilities(value: Any, where: str) -> list[str]:
    """An item's capability list: a list (mm-vet.json) or its text (the Hub copy)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                raise ItemError(f"{where}: field 'capability' is not a list: {text[:80]!r}") from None
        else:
            value = [c for c in re.split(r"[,\s]+", text) if c]
    if not isinstance(value, (list, tuple)) or not value:
        raise ItemError(f"{where}: field 'capability' is missing or empty")
    caps = [str(c).strip() for c in value]
    unknown = [c for c in caps if c not in MMVET_CAPABILITIES]
    if unknown:
        raise ItemError(f"{where}: field 'capability' has {unknown[0]!r}, not one of MM-Vet's "
                        f"{', '.join(MMVET_CAPABILITIES)}")
    return [c for c in MMVET_CAPABILITIES if c in caps]


@register("dataset", "mmvet")
class MMVet(_Capability):
    """MM-Vet: 218 open questions whose answers an LLM grades 0-1 against the ground truth."""

    license = "CC-BY-NC-4.0"
    hub_id = "lmms-lab/MMVet"
    hub_split = "test"

    def _json(self) -> Path | None:
        """mm-vet.json: `path` itself, or in the unzipped release folder (`mm-vet/`) or a clone's data/."""
        assert self.path is not None
        if self.path.is_file():
            return self.path if self.path.suffix.lower() == ".json" else None
        return next((p for p in (self.path / d / MMVET_FILE for d in ("", "mm-vet", "data")) if p.is_file()), None)

    def _files(self) -> list[Path]:
        assert self.path is not None
        files = find_files(self.path, (".parquet",))
        if not files:
            raise DataError(f"dataset {self.name!r}: no {MMVET_FILE} in {self.path} (or its mm-vet/ or data/ "
                            f"folder) and no Parquet file of the Hub copy under it. Point `path` at the unzipped "
                            f"mm-vet.zip (mm-vet.json and images/) or at a download of {self.hub_id}.")
        return files

    def _rows(self) -> Iterator[Row]:
        found = self._json() if self.hub is None else None
        if found is None:  # the Hub copy, or a Hub snapshot's Parquet files
            yield from self.records(self._files, ("question_id", "question", "answer", "capability", "image"))
            return
        data = read_json(found)
        if not isinstance(data, dict):
            raise DataError(f"{found}: expected MM-Vet's object of items keyed \"v1_0\", \"v1_1\", ... "
                            f"(got a {type(data).__name__})")
        images = self.image_root or found.parent / "images"
        for key, rec in data.items():  # the key is the item's id; it joins the record as question_id
            yield str(found), f"item {key!r}", ({"question_id": key, **rec} if isinstance(rec, dict) else rec), images

    def _samples(self) -> Iterator[Sample]:
        yield from self.item_samples(self._rows(), partial(self._sample, set()))

    def _sample(self, seen: set[str], rec: dict, where: str, base: Path | None, _row: int) -> list[Sample]:
        sid = text_of(rec, "question_id", where)
        if sid in seen:
            raise ItemError(f"{where}: duplicate id {sid!r}")
        question = text_of(rec, "question", where)
        answer = text_of(rec, "answer", where)
        caps = mmvet_capabilities(rec.get("capability"), where)
        field = "imagename" if "imagename" in rec else "image"
        image = self.image(rec.get(field), base, where, field)
        seen.add(sid)
        return [self.sample(sid, "+".join(caps), question, question, {"image": image}, rec,
                            {"answer": answer, "scoring": "mmvet", "capabilities": caps, "question": question})]
