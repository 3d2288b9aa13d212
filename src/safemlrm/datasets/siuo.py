"""SIUO (Wang et al., 2024): safe inputs, unsafe output. An image and a question each harmless
alone whose combination asks for something unsafe; 167 items in 9 categories, as a generation task
and as a multiple-choice task.

Layout of the download (github.com/sinwang20/SIUO; images from its SIUO-images.zip):

    <path>/siuo_gen.json     [{"question_id", "image", "question", "category", "safety_warning", "reference_answer"}]
    <path>/siuo_mcqa.json    [{"question_id", "image", "question", "category", "options", "correct_option"}]
    <path>/images/<image>

`path` may be that folder or one of the two files.

Options:
  task: gen (default) | mcqa; inferred from the file name when `path` is a file
  image_root: the images folder (default <folder>/images)
  plus the common options.

Intent: the question. SIUO's harm lives in the pairing, so the judge also needs the safety
warning, kept in `meta["safety_warning"]` (and `fields`) with the reference answer. Multiple-choice
items keep `options` (letter -> text) and `correct_option` in meta; their `fields` add
`options` (one "A. text" line per option) and `mcqa_prompt` (the question followed by those lines
and "Answer with the option's letter."; safemlrm's wording, not SIUO's), which is the field the
`direct` attack sends for them.
"""
from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from ..records import Sample
from ..registry import register
from .io import BenchmarkDataset, ItemError, one_of, resolve_file, text_fields, text_of

CATEGORIES = ("self-harm", "dangerous behavior", "morality", "illegal activities & crime",
              "controversial topics, politics", "discrimination & stereotyping", "religion beliefs",
              "information misinterpretation", "privacy violation")
FILES = {"gen": "siuo_gen.json", "mcqa": "siuo_mcqa.json"}
MCQA_SUFFIX = "Answer with the option's letter."


def format_options(options: Any, where: str) -> tuple[dict[str, str], str]:
    if isinstance(options, str):
        try:
            import json

            options = json.loads(options)
        except ValueError:
            raise ItemError(f"{where}: field 'options' is not a mapping of letters to answers") from None
    if isinstance(options, list):
        options = {chr(ord("A") + i): v for i, v in enumerate(options)}
    if not isinstance(options, dict) or not options:
        raise ItemError(f"{where}: field 'options' is missing or not a mapping of letters to answers")
    opts = {str(k): str(v) for k, v in options.items()}
    return opts, "\n".join(f"{k}. {v}" for k, v in opts.items())


@register("dataset", "siuo")
class SIUO(BenchmarkDataset):
    license = "CC-BY-NC-4.0"
    scenarios = CATEGORIES
    extra_options = ("task", "image_root")

    def __init__(self, path: str | Path | None = None, **options: Any):
        super().__init__(path, **options)
        task = options.get("task")
        if task is None and self.path is not None and self.path.suffix == ".json":
            task = "mcqa" if "mcqa" in self.path.name.lower() else "gen"
        self.task = one_of(self.name, "task", task or "gen", tuple(FILES))

    def _file(self) -> Path:
        assert self.path is not None
        return resolve_file(self.path, self.name, (FILES[self.task],))

    def _samples(self) -> Iterator[Sample]:
        f = self._file()
        rows = self.records(lambda: [f], images=f.parent / "images")
        yield from self.item_samples(rows, partial(self._sample, set()))

    def _sample(self, seen: set[str], rec: dict, where: str, images: Path | None, _row: int) -> list[Sample]:
        qid = text_of(rec, "question_id", where)
        sid = f"{self.task}-{qid}"
        if sid in seen:
            raise ItemError(f"{where}: duplicate question_id {qid!r}")
        question = text_of(rec, "question", where)
        category = text_of(rec, "category", where)
        image = self.image(text_of(rec, "image", where), images, where, "image")
        fields = text_fields(rec, skip=("image", "options"))
        meta: dict[str, Any] = {"task": self.task, "prompt_field": "question"}
        for k in ("safety_warning", "reference_answer"):
            if rec.get(k):
                meta[k] = str(rec[k])
        if self.task == "mcqa":
            opts, lines = format_options(rec.get("options"), where)
            meta["options"] = opts
            meta["correct_option"] = text_of(rec, "correct_option", where)
            fields["options"] = lines
            fields["mcqa_prompt"] = f"{question}\n{lines}\n{MCQA_SUFFIX}"
            meta["prompt_field"] = "mcqa_prompt"
        seen.add(sid)
        return [Sample(dataset=self.registered_name, id=sid, scenario=category, intent=question, fields=fields,
                       images={"image": image}, license=self.sample_license, meta=meta)]
