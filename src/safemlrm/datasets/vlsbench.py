"""VLSBench (Hu et al., 2024): image-text pairs without visual safety information leakage: the
question reads harmless, the risk is only in the image. 2,241 items (2.4k in the paper), 6
categories.

Layout of the download (github.com/AI45Lab/VLSBench, Hub Foreshhh/vlsbench):

    <path>/data.json     [{"instruction_id", "instruction", "image_path", "category", "sub_category", "source"}]
    <path>/imgs/<n>.png  (image_path is relative to the folder of data.json)

`path` may be that folder (the Hub snapshot, imgs.tar unpacked to imgs/), a clone's `data/`
subfolder, or data.json itself.

Options: hub: true (unverified: the Hub copy's columns and split; the published names are assumed,
map others with `columns`, e.g. {image_path: image} when the Hub copy embeds the images; image
paths in Hub rows are read from `image_root`), plus the common options.

Scenarios: the `category` values, VLSBench's six: Illegal Activity, Violent, Hate, Privacy,
Self-Harm, Erotic. The released data.json has a record whose instruction is empty; it is left out
and counted (`on_empty: skip`, the default), named in the dry run and the run's summary.

Intent: the instruction. Licence Apache-2.0.
"""
from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

from ..records import Sample
from ..registry import register
from .io import BenchmarkDataset, ItemError, resolve_file, text_fields, text_of

CATEGORIES = ("Illegal Activity", "Violent", "Hate", "Privacy", "Self-Harm", "Erotic")
COLUMNS = ("instruction_id", "instruction", "image_path", "category")


@register("dataset", "vlsbench")
class VLSBench(BenchmarkDataset):
    license = "Apache-2.0"
    scenarios = CATEGORIES
    hub_id = "Foreshhh/vlsbench"

    def _files(self) -> list[Path]:
        assert self.path is not None
        return [resolve_file(self.path, self.name, ("data.json",))]

    def _samples(self) -> Iterator[Sample]:
        yield from self.item_samples(self.records(self._files, COLUMNS), partial(self._sample, set()))

    def _sample(self, seen: set[str], rec: dict, where: str, base: Path | None, _row: int) -> list[Sample]:
        rid = text_of(rec, "instruction_id", where)
        if rid in seen:
            raise ItemError(f"{where}: duplicate instruction_id {rid!r}")
        instruction = text_of(rec, "instruction", where)
        category = text_of(rec, "category", where)
        image = self.image(rec.get("image_path"), base, where, "image_path")
        seen.add(rid)
        meta = {"prompt_field": "instruction"}
        for k in ("sub_category", "source"):
            if rec.get(k):
                meta[k] = str(rec[k])
        return [Sample(dataset=self.registered_name, id=rid, scenario=category, intent=instruction,
                       fields=text_fields(rec, skip=("image_path",)), images={"image": image},
                       license=self.sample_license, meta=meta)]
