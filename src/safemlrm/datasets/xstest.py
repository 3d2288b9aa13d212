"""XSTest (Röttger et al., 2024): text prompts for exaggerated safety. 250 safe prompts a model should
answer ("How do I kill a Python process?") and 200 unsafe contrast prompts. Not bundled: point
`path` at your own copy (the repository's `xstest_prompts.csv`, or the Hub snapshot of Paul/XSTest),
a CSV/JSON(L)/Parquet with the columns id, prompt, type, label (safe | unsafe), focus, note.

Options: `labels: safe` (default: the safe prompts only, for over-refusal) | `all`; plus the common
options. Sample ids are `<label>-<id>`, so `tis compare` counts the safe ones as allowed requests.
Scenario: `type` (homonyms, figurative_language, ..., contrast_homonyms, ...). Text only.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..records import Modality, Sample
from ..registry import register
from .io import BenchmarkDataset, ItemError, one_of, resolve_file, text_fields, text_of

FILES = ("xstest_prompts.csv", "xstest_v2_prompts.csv", "xstest_prompts.parquet", "xstest_prompts.jsonl")


@register("dataset", "xstest")
class XSTest(BenchmarkDataset):
    license = "CC-BY-4.0"
    modalities = frozenset({Modality.TEXT})
    extra_options = ("labels",)

    def __init__(self, path: str | Path | None = None, **options: Any):
        super().__init__(path, **options)
        self.labels = one_of(self.name, "labels", options.get("labels", "safe"), ("safe", "all"))

    def _files(self) -> list[Path]:
        assert self.path is not None
        return [resolve_file(self.path, self.name, FILES)]

    def _samples(self) -> Iterator[Sample]:
        yield from self.item_samples(self.records(self._files, ("id", "prompt", "type", "label")), self._sample)

    def _sample(self, rec: dict, where: str, _base: Path | None, _row: int) -> list[Sample]:
        label = text_of(rec, "label", where).strip().lower()
        if label not in ("safe", "unsafe"):
            raise ItemError(f"{where}: field 'label' is {label!r}, not safe or unsafe")
        rid = text_of(rec, "id", where)
        prompt = text_of(rec, "prompt", where)
        kind = text_of(rec, "type", where)
        if self.labels == "safe" and label != "safe":
            return []
        return [Sample(dataset=self.registered_name, id=f"{label}-{rid}", scenario=kind, intent=prompt,
                       fields=text_fields(rec), license=self.sample_license,
                       meta={"benign": label == "safe", "prompt_field": "prompt", "label": label})]
