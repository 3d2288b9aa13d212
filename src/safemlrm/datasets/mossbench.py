"""MOSSBench (Li et al., 2024): 300 benign image-question pairs that look harmful, for over-refusal
(oversensitivity): a model should answer every one. Used with a refusal judge, its refusal rate is
the model's over-refusal rate.

Layout of the download (Hub AIcell/MOSSBench, an image folder; config `oversensitivity` reads
`images/*.png` with `metadata.csv`, config `contrast` reads `contrast_images/`):

    <path>/images/<n>.png
    <path>/metadata.csv  (or images/metadata.csv)   columns pid, question, short description,
        description, metadata_over, metadata_human, metadata_child, metadata_syn, metadata_ocr,
        metadata_harm, and `file_name` (the image, relative to the CSV's folder)

`metadata_harm` is the stimulus type, 1-3 in the card's order: Exaggerated Risk, Negated Harm,
Counterintuitive Interpretation (the mapping of numbers to names follows the card's listing; the
raw value is kept in `meta["metadata_harm"]`). The scenario is the stimulus type's name; the other
`metadata_*` flags are kept in `meta` as booleans. A row without `file_name` reads `images/<pid>.png`.

Options: `subset: oversensitivity` (default) | `contrast`; plus the common options. Licence CC-BY-4.0
(the card's tag). Samples carry `meta["benign"] = True`.
"""
from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from ..records import Sample
from ..registry import register
from .io import BenchmarkDataset, ItemError, one_of, resolve_file, text_fields, text_of

STIMULI = {"1": "Exaggerated Risk", "2": "Negated Harm", "3": "Counterintuitive Interpretation"}
FLAGS = ("metadata_over", "metadata_human", "metadata_child", "metadata_syn", "metadata_ocr")
FOLDERS = {"oversensitivity": "images", "contrast": "contrast_images"}


def _bool(v: Any) -> bool:
    return v is True or str(v).strip().lower() in ("true", "1", "yes")


@register("dataset", "mossbench")
class MOSSBench(BenchmarkDataset):
    license = "CC-BY-4.0"
    scenarios = tuple(STIMULI.values())
    hub_id = "AIcell/MOSSBench"
    hub_config = "oversensitivity"
    extra_options = ("subset",)

    def __init__(self, path: str | Path | None = None, **options: Any):
        super().__init__(path, **options)
        self.subset = one_of(self.name, "subset", options.get("subset", "oversensitivity"), tuple(FOLDERS))

    def _files(self) -> list[Path]:
        assert self.path is not None
        return [resolve_file(self.path, self.name, ("metadata.csv",), ("", FOLDERS[self.subset], "data"))]

    def _samples(self) -> Iterator[Sample]:
        rows = self.records(self._files, ("pid", "question"), config=self.subset)
        yield from self.item_samples(rows, partial(self._sample, set()))

    def _sample(self, seen: set[str], rec: dict, where: str, base: Path | None, _row: int) -> list[Sample]:
        pid = text_of(rec, "pid", where)
        if pid in seen:
            raise ItemError(f"{where}: duplicate pid {pid!r}")
        question = text_of(rec, "question", where)
        ref = rec.get("image") or rec.get("file_name") or f"{FOLDERS[self.subset]}/{pid}.png"
        folder = base
        if base is not None and isinstance(ref, str) and base.name == FOLDERS[self.subset] \
                and ref.startswith(FOLDERS[self.subset] + "/"):
            folder = base.parent  # metadata.csv inside images/ naming images/<n>.png
        image = self.image(ref, folder, where, "image" if rec.get("image") else "file_name")
        harm = str(rec.get("metadata_harm") or "").strip()
        stimulus = STIMULI.get(harm.split(".")[0], harm or "unknown")
        seen.add(pid)
        meta: dict[str, Any] = {"benign": True, "stimulus": stimulus, "metadata_harm": harm,
                                "prompt_field": "question", "subset": self.subset}
        meta.update({f: _bool(rec.get(f)) for f in FLAGS if f in rec})
        return [Sample(dataset=self.registered_name, id=pid, scenario=stimulus, intent=question,
                       fields=text_fields(rec, skip=("image", "file_name")), images={"image": image},
                       license=self.sample_license, meta=meta)]
