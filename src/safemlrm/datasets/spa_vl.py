"""SPA-VL test sets (Zhang et al., 2024): 265 harmful and 265 helpful image questions, the test
config of the Hub dataset sqrti/SPA-VL (config `test`, splits `harm` and `help`; columns
`image, question, class1, class2, class3`, the three levels of SPA-VL's harm taxonomy).

Load with `hub: true`, or point `path` at a download (the Parquet files of the test config: any
.parquet file under `path` whose path names harm, or help, is read for that split; or `path` is
one Parquet/JSON/JSONL file, then give `split`).

Options:
  split: both (default) | harm | help
  plus the common and Hub options.

Scenario: the split, harm or help (kept also in `meta["split"]`); the class levels are in
`fields` and `meta`. Intent: the question. Ids are `<split>-<row>` in file order, the test sets
having no id column. Licence CC-BY-4.0.
"""
from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from ..records import Sample
from ..registry import register
from .io import BenchmarkDataset, find_files, one_of

SPLITS = ("harm", "help")
COLUMNS = ("image", "question")


@register("dataset", "spa-vl")
class SPAVL(BenchmarkDataset):
    license = "CC-BY-4.0"
    scenarios = SPLITS
    hub_id = "sqrti/SPA-VL"
    hub_config = "test"

    def __init__(self, path: str | Path | None = None, **options: Any):
        super().__init__(path, **options)
        split = one_of(self.name, "split", options.get("split", "both"), ("both",) + SPLITS)
        self.splits = SPLITS if split == "both" else (split,)

    def _files(self, split: str) -> list[Path]:
        assert self.path is not None
        if not self.path.exists():
            raise DataError(f"dataset 'spa-vl': {self.path} does not exist (download sqrti/SPA-VL, or use hub: true)")
        if self.path.is_file():
            if len(self.splits) != 1:
                raise ConfigError(f"dataset 'spa-vl': {self.path} is one file; say which split it is (split: harm or help)")
            return [self.path]
        files = find_files(self.path, (".parquet", ".jsonl", ".json"), must_contain=(split,))
        if not files:
            raise DataError(f"dataset 'spa-vl': no .parquet/.jsonl/.json file for split {split!r} under {self.path} "
                            f"(expected e.g. test/{split}/0000.parquet)")
        return files

    def _samples(self) -> Iterator[Sample]:
        for split in self.splits:
            rows = self.records(partial(self._files, split), COLUMNS, split=split)
            yield from self.item_samples(rows, partial(self._sample, split))

    def _sample(self, split: str, rec: dict, where: str, base: Path | None, row: int) -> list[Sample]:
        meta: dict[str, Any] = {"split": split, "prompt_field": "question"}
        for k in ("class1", "class2", "class3"):
            if rec.get(k):
                meta[k] = str(rec[k])
        return self.question_sample(rec, where, base, f"{split}-{row}", split, meta)
