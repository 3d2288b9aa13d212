"""JailBreakV-28K (Luo et al., 2024): 20,000 text jailbreaks transferred from LLMs and 8,000 image
jailbreaks, built on the 2,000 RedTeam-2K queries over 16 safety policies. mini (280 rows) is the
subset its authors evaluate most models on.

Layout of the download (Hub JailbreakV-28K/JailBreakV-28k):

    <path>/JailBreakV_28K/JailBreakV_28K.csv, mini_JailBreakV_28K.csv
    <path>/JailBreakV_28K/<image_path>      (llm_transfer_attack/..., query_related/..., figstep/...)

Columns: id, jailbreak_query, redteam_query, format, policy, image_path, from, selected_mini,
transfer_from_llm. `path` may be the download root, its JailBreakV_28K folder, or a CSV file;
image paths are relative to the CSV's folder (or `image_root`).

Options:
  subset: mini (default) | full
  hub: true reads the CSV rows with `datasets` (config JailBreakV_28K, split mini_JailBreakV_28K or
    JailBreakV_28K); the Hub rows carry image paths only, so `image_root` must point at a
    download of the images.
  plus the common and Hub options.

Intent: `redteam_query`, the plain harmful query; `jailbreak_query` is what the benchmark sends
(`meta["prompt_field"]`, used by the `direct` attack), and `format` says which attack made it.
"""
from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..records import Sample
from ..registry import register
from .io import BenchmarkDataset, resolve_file, ItemError, one_of, text_fields, text_of

POLICIES = ("Illegal Activity", "Violence", "Hate Speech", "Malware", "Physical Harm", "Economic Harm", "Fraud",
            "Child Abuse Content", "Animal Abuse", "Political Sensitivity", "Privacy Violation",
            "Tailored Unlicensed Advice", "Health Consultation", "Government Decision", "Unethical Behavior", "Bias")
COLUMNS = ("id", "jailbreak_query", "redteam_query", "format", "policy", "image_path")
SUBSETS = {"mini": "mini_JailBreakV_28K", "full": "JailBreakV_28K"}


@register("dataset", "jailbreakv")
class JailBreakV(BenchmarkDataset):
    license = "MIT"
    scenarios = POLICIES
    hub_id = "JailbreakV-28K/JailBreakV-28k"
    hub_config = "JailBreakV_28K"
    extra_options = ("subset",)

    def __init__(self, path: str | Path | None = None, **options: Any):
        super().__init__(path, **options)
        self.subset = one_of(self.name, "subset", options.get("subset", "mini"), tuple(SUBSETS))
        if self.hub is not None and self.image_root is None and not options.get("data_files"):
            raise ConfigError("dataset 'jailbreakv': the Hub rows name their images by path only; set image_root "
                              "to a download of the JailBreakV_28K image folders (or use `path` on the download)")

    def csv_file(self) -> Path:
        assert self.path is not None
        return resolve_file(self.path, self.name, (SUBSETS[self.subset] + ".csv",), ("", "JailBreakV_28K"))

    def _samples(self) -> Iterator[Sample]:
        rows = self.records(lambda: [self.csv_file()], COLUMNS, split=SUBSETS[self.subset])
        yield from self.item_samples(rows, partial(self._sample, set()))

    def _sample(self, seen: set[str], rec: dict, where: str, base: Path | None, _row: int) -> list[Sample]:
        rid = text_of(rec, "id", where)
        if rid in seen:
            raise ItemError(f"{where}: duplicate id {rid!r}")
        intent = text_of(rec, "redteam_query", where)
        text_of(rec, "jailbreak_query", where)
        policy = text_of(rec, "policy", where)
        fmt = text_of(rec, "format", where)
        image = self.image(text_of(rec, "image_path", where), base, where, "image_path")
        seen.add(rid)
        meta: dict[str, Any] = {"format": fmt, "prompt_field": "jailbreak_query", "subset": self.subset}
        for k in ("from", "selected_mini", "transfer_from_llm"):
            v = rec.get(k)
            if v not in (None, "") and not (isinstance(v, float) and v != v):
                meta[k] = v if isinstance(v, (bool, int, float)) else str(v)
        return [Sample(dataset=self.registered_name, id=rid, scenario=policy.strip(), intent=intent,
                       fields=text_fields(rec), images={"image": image}, license=self.sample_license, meta=meta)]
