"""VLGuard test set (Zong et al., 2024): safe and unsafe images with instructions and reference
responses; the source of part of the Think-in-Safety data.

Layout of the download (Hub ys-zong/VLGuard: test.json and test.zip, unzipped to test/):

    <path>/test.json   [{"id", "image", "safe": bool, "instr-resp": [...]}, ...]
    <path>/test/<image>

An `instr-resp` element is `{"instruction", "response"}` (on an unsafe image),
`{"safe_instruction", "response"}` or `{"unsafe_instruction", "response"}` (on a safe image).
`path` may be the folder (the Hub snapshot), its `data/` folder, or the JSON file; images are read from `image_root` (default: the
folder's `test/` when it exists, else the folder itself).

Each element is one Sample, id `<id>-<n>`, in scenario
  unsafes       an unsafe image with its instruction (the model should refuse),
  safe_unsafes  a safe image with an unsafe instruction (refuse),
  safe_safes    a safe image with a safe instruction (help).
meta: `safe` (the image's flag), `instruction_safe`, `reference_response`, and the record's other
scalar keys (e.g. harmful_category). Intent: the instruction. Licence unverified.
"""
from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from ..records import Sample
from ..registry import register
from .io import BenchmarkDataset, ItemError, resolve_file, text_fields, text_of

SCENARIOS = ("safe_safes", "safe_unsafes", "unsafes")
_KEYS = (("instruction", "unsafes"), ("safe_instruction", "safe_safes"), ("unsafe_instruction", "safe_unsafes"))


def _flag(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):
        return v.strip().lower() == "true"
    return None


@register("dataset", "vlguard")
class VLGuard(BenchmarkDataset):
    license = "unverified (see huggingface.co/datasets/ys-zong/VLGuard)"
    scenarios = SCENARIOS
    extra_options = ("image_root",)

    def _samples(self) -> Iterator[Sample]:
        assert self.path is not None
        f = resolve_file(self.path, self.name, ("test.json",))
        rows = self.records(lambda: [f], images=f.parent / "test" if (f.parent / "test").is_dir() else f.parent)
        yield from self.item_samples(rows, partial(self._samples_of, set()))

    def _samples_of(self, seen: set[str], rec: dict, where: str, images: Path | None, _row: int) -> Iterator[Sample]:
        """One Sample per element of the record's instr-resp; an ItemError, before the first, for the
        whole record."""
        rid = text_of(rec, "id", where)
        safe = _flag(rec.get("safe"))
        if safe is None:
            raise ItemError(f"{where}: field 'safe' is missing or not true/false")
        pairs = rec.get("instr-resp")
        if not isinstance(pairs, list) or not pairs:
            raise ItemError(f"{where}: field 'instr-resp' is missing or not a list")
        image = self.image(text_of(rec, "image", where), images, where, "image")
        out = []
        for n, pair in enumerate(pairs):
            pw = f"{where}, instr-resp[{n}]"
            if not isinstance(pair, dict):
                raise ItemError(f"{pw}: not an object")
            key, scenario = next(((k, s) for k, s in _KEYS if pair.get(k)), (None, ""))
            if key is None:
                raise ItemError(f"{pw}: no instruction, safe_instruction or unsafe_instruction")
            sid = f"{rid}-{n}"
            if sid in seen:
                raise ItemError(f"{pw}: duplicate item {sid!r}")
            out.append((sid, scenario, str(pair[key]), key, pair.get("response")))
        extra = {k: v for k, v in text_fields(rec, skip=("image", "safe", "id")).items()}
        for sid, scenario, instruction, key, response in out:
            seen.add(sid)
            meta: dict[str, Any] = {"safe": safe, "instruction_safe": scenario == "safe_safes",
                                    "instruction_key": key, "prompt_field": "instruction"}
            if response:
                meta["reference_response"] = str(response)
            meta.update({k: v for k, v in extra.items() if k not in meta})
            fields = {**extra, "instruction": instruction}
            if response:
                fields["response"] = str(response)
            yield Sample(dataset=self.registered_name, id=sid, scenario=scenario, intent=instruction,
                         fields=fields, images={"image": image}, license=self.sample_license, meta=meta)
