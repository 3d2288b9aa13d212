"""General-ability benchmarks, to see what safety tuning costs (Think in Safety reports MMMU, MM-Vet,
POPE and MMStar next to safety): MMStar, POPE and MMMU validation. Each Sample keeps the gold
answer in `meta["answer"]` and how to score it in `meta["scoring"]` (see `safemlrm.capability`).

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

The prompt (`fields["prompt"]`, what the `direct` attack sends with `field: prompt`) is the
question, the lettered options and "Answer with the option's letter from the given choices
directly." (multiple choice) or "Answer the question using a single word or phrase." (open, yes/no),
the wording lmms-eval uses for these benchmarks.
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
from .io import BenchmarkDataset, ItemError, find_files, text_fields, text_of

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
            from ..errors import DataError

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
