"""BeaverTails-V (PKU-Alignment / saferlhf-v, 2025): harmful image questions in 20 harm categories,
one Hub config per category, each with an `evaluation` split (tens of items) and a `train` split.

Hub: saferlhf-v/BeaverTails-V; columns include `question, image, category, image_severity` and the
annotated responses (`response_1`, `response_2`, `is_response_1_safe`, ... in one revision;
`response`, `is_response_safe` in another). Everything besides the image is kept in `fields`.

Load with `hub: true`, or point `path` at a download: for each category the Parquet (or JSON/JSONL)
files under `path` whose path names both the category and the split are read
(e.g. animal_abuse/evaluation-00000-of-00001.parquet).

Options:
  categories: the configs to load (default: all 20)
  split: evaluation (default) | train
  plus the common and Hub options.

Scenario: the category (config name). Intent: the question. Ids are
`<category>-<split>-<row>` in file order. Licence CC-BY-NC-4.0.
"""
from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError, did_you_mean
from ..records import Sample
from ..registry import register
from .io import BenchmarkDataset, find_files

CATEGORIES = (
    "animal_abuse", "dangerous_behavior", "deception_in_personal_relationships", "discriminatory_depictions",
    "environmental_damage", "false_information", "financial_and_academic_fraud", "hacking_or_digital_crime",
    "harmful_health_content", "horror_and_gore", "identity_misuse_and_impersonation",
    "insulting_and_harassing_behavior", "pornographic_content", "privacy_invasion_and_surveillance",
    "psychological_harm_and_manipulation", "psychological_horror_and_dark_themes",
    "sensitive_information_in_key_areas", "sexual_crimes", "terrorism_or_extremism", "violence_and_physical_harm",
)
COLUMNS = ("question", "image")


@register("dataset", "beavertails-v")
class BeaverTailsV(BenchmarkDataset):
    license = "CC-BY-NC-4.0"
    scenarios = CATEGORIES
    hub_id = "saferlhf-v/BeaverTails-V"
    hub_split = "evaluation"
    extra_options = ("categories",)

    def __init__(self, path: str | Path | None = None, **options: Any):
        super().__init__(path, **options)
        cats = options.get("categories") or list(CATEGORIES)
        if isinstance(cats, str):
            cats = [cats]
        for c in cats:
            if c not in CATEGORIES:
                raise ConfigError(f"dataset 'beavertails-v': unknown category {c!r}.{did_you_mean(str(c), CATEGORIES)}")
        self.categories = tuple(cats)
        self.split = options.get("split", "evaluation")

    def _files(self, category: str) -> list[Path]:
        assert self.path is not None
        if not self.path.exists():
            raise DataError(f"dataset 'beavertails-v': {self.path} does not exist "
                            f"(download saferlhf-v/BeaverTails-V, or use hub: true)")
        files = find_files(self.path, (".parquet", ".jsonl", ".json"), must_contain=(category, self.split))
        if not files:
            self.policy.item(f"dataset 'beavertails-v': no file for category {category!r}, split {self.split!r} "
                             f"under {self.path} (expected e.g. {category}/{self.split}-00000-of-00001.parquet)")
        return files

    def _samples(self) -> Iterator[Sample]:
        for category in self.categories:
            rows = self.records(partial(self._files, category), COLUMNS, config=category)
            yield from self.item_samples(rows, partial(self._sample, category))

    def _sample(self, category: str, rec: dict, where: str, base: Path | None, row: int) -> list[Sample]:
        meta: dict[str, Any] = {"split": self.split, "prompt_field": "question"}
        if rec.get("image_severity") is not None:
            meta["image_severity"] = rec["image_severity"]
        return self.question_sample(rec, where, base, f"{category}-{self.split}-{row}", category, meta)
