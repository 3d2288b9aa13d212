"""HADES (Li et al., ECCV 2024): harmful instructions with harmful images, five scenarios.

Published on the Hub as Monosail/HADES: one split `test` (4,500 rows) with the columns
`image, id, scenario, keywords, step, category, instruction`. Each instruction appears once per
image-optimisation `step` (0-5); evaluations use the last step. `category` is what the keyword
names (behavior, object, concept), and the HADES text prompt masks the keyword accordingly
(see the `hades` attack).

Load it with `hub: true` (needs `datasets` and a connection), or point `path` at a download of the
repository (its `data/*.parquet` files, or one Parquet/JSON/JSONL/CSV file in the same schema,
image paths relative to the file).

Options:
  step: last (default: each instruction's highest step) | all | an integer
  plus the common and Hub options (columns maps the published column names to yours).

Intent: the instruction (HADES's plain harmful request). Unverified: the exact spelling of the
scenario values in the Hub copy; they are matched to the five names below without regard to case,
and kept as they are otherwise. Whether the Hub images already carry the keyword typography at the
bottom is also unverified (the HADES prompt says they do): samples say so in
`meta["image_has_typography"]`, which the `hades` attack reads.
"""
from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from ..records import Sample
from ..registry import register
from .io import BenchmarkDataset, ItemError, Row, find_files, text_fields, text_of

SCENARIOS = ("Animal", "Financial", "Privacy", "Self-Harm", "Violence")
COLUMNS = ("id", "scenario", "keywords", "step", "category", "instruction", "image")
_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv")


def normalise_scenario(value: str, known: tuple[str, ...]) -> str:
    folded = value.strip().lower().replace("_", "-").replace(" ", "-")
    for k in known:
        if k.lower() == folded or k.lower().replace("-", "") == folded.replace("-", ""):
            return k
    return value.strip()


@register("dataset", "hades")
class Hades(BenchmarkDataset):
    license = "MIT"
    scenarios = SCENARIOS
    hub_id = "Monosail/HADES"
    hub_split = "test"
    extra_options = ("step",)

    def __init__(self, path: str | Path | None = None, **options: Any):
        super().__init__(path, **options)
        step = options.get("step", "last")
        if not (step in ("last", "all") or (isinstance(step, int) and not isinstance(step, bool))):
            raise ConfigError(f"dataset 'hades': step must be 'last', 'all' or an integer, not {step!r}")
        self.step = step

    def _files(self) -> list[Path]:
        assert self.path is not None
        if not self.path.exists():
            raise DataError(f"dataset 'hades': {self.path} does not exist (download Monosail/HADES, or use hub: true)")
        files = find_files(self.path, _SUFFIXES)
        if not files:
            raise DataError(f"dataset 'hades': no .parquet/.jsonl/.json/.csv files under {self.path}")
        return files

    def _rows(self, columns: list[str] | None = None) -> Iterator[Row]:
        return self.records(self._files, COLUMNS, columns=columns)

    def _last_steps(self) -> dict[str, int]:
        last: dict[str, int] = {}
        for _src, _label, rec, _base in self._rows(columns=["id", "step"]):
            if isinstance(rec, dict) and rec.get("id") is not None:
                try:
                    s = int(str(rec.get("step")))
                except (TypeError, ValueError):
                    continue
                k = str(rec["id"])
                last[k] = max(last.get(k, s), s)
        return last

    def _samples(self) -> Iterator[Sample]:
        last = self._last_steps() if self.step == "last" else {}
        yield from self.item_samples(self._rows(), partial(self._sample, last, set()))

    def _sample(self, last: dict[str, int], seen: set[str], rec: dict, where: str, base: Path | None,
                _row: int) -> list[Sample]:
        rid = text_of(rec, "id", where)
        try:
            step = int(text_of(rec, "step", where))
        except ValueError:
            raise ItemError(f"{where}: field 'step' is not an integer ({rec.get('step')!r})") from None
        if (self.step == "last" and last.get(rid) != step) or (isinstance(self.step, int) and step != self.step):
            return []
        sid = f"{rid}-step{step}"
        if sid in seen:
            raise ItemError(f"{where}: duplicate item (id {rid!r}, step {step})")
        instruction = text_of(rec, "instruction", where)
        keywords = text_of(rec, "keywords", where)
        category = text_of(rec, "category", where)
        scenario = normalise_scenario(text_of(rec, "scenario", where), SCENARIOS)
        image = self.image(rec.get("image"), base, where, "image")
        seen.add(sid)
        meta = {"step": step, "category": category, "keywords": keywords, "image_has_typography": True,
                "prompt_field": "instruction"}
        return [Sample(dataset=self.registered_name, id=sid, scenario=scenario, intent=instruction,
                       fields=text_fields(rec, skip=("image",)), images={"image": image},
                       license=self.sample_license, meta=meta)]
