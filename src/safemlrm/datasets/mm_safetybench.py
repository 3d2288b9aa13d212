"""MM-SafetyBench (Liu et al., 2024): 13 scenarios of harmful questions, each with three
query-relevant images (SD, TYPO, SD_TYPO).

Layout of the download (github.com/isXinLiu/MM-SafetyBench, images from its download link):

    <path>/data/processed_questions/01-Illegal_Activitiy.json   (a dict keyed "0", "1", ...)
    <path>/data/imgs/01-Illegal_Activitiy/{SD,SD_TYPO,TYPO}/<key>.jpg

`path` may be the repository root or its `data/` folder. Each item has the fields "Question",
"GPT-Pred", "Changed Question", "Key Phrase", "Phrase Type", "Rephrased Question" and
"Rephrased Question(SD)"; all are kept in `Sample.fields` under those names.

Intent (what the judge sees): the "Changed Question", as in SafeMLRM, whose judge sees the plain
harmful instruction (the Changed Question) in every setting, the jailbreak one included. Set
`intent_field: Question` to judge against the original question instead.

Options:
  image_types: which image sets must be present (default [SD, TYPO, SD_TYPO]); list only those you
    downloaded, or [] for text-only attacks (vanilla). A missing image of a listed type is an error.
  intent_field: default "Changed Question".
  plus the common options (on_error, verify_images, license).
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError, did_you_mean
from ..records import Modality, Sample
from ..registry import register
from .io import BenchmarkDataset, ItemError, read_json, text_fields, text_of

SCENARIOS = ("01-Illegal_Activitiy", "02-HateSpeech", "03-Malware_Generation", "04-Physical_Harm",
             "05-EconomicHarm", "06-Fraud", "07-Sex", "08-Political_Lobbying", "09-Privacy_Violence",
             "10-Legal_Opinion", "11-Financial_Advice", "12-Health_Consultation", "13-Gov_Decision")
IMAGE_TYPES = ("SD", "TYPO", "SD_TYPO")
REQUIRED_FIELDS = ("Question", "Key Phrase", "Rephrased Question", "Rephrased Question(SD)")
# the text the benchmark pairs with each image type
QUESTION_FOR = {"SD": "Rephrased Question(SD)", "TYPO": "Rephrased Question", "SD_TYPO": "Rephrased Question"}


@register("dataset", "mm-safetybench")
class MMSafetyBench(BenchmarkDataset):
    license = "unverified (see github.com/isXinLiu/MM-SafetyBench)"
    scenarios = SCENARIOS
    extra_options = ("image_types", "intent_field")

    def __init__(self, path: str | Path | None = None, **options: Any):
        super().__init__(path, **options)
        types = options.get("image_types", list(IMAGE_TYPES))
        if isinstance(types, str):
            types = [types]
        for t in types:
            if t not in IMAGE_TYPES:
                raise ConfigError(f"dataset 'mm-safetybench': unknown image type {t!r}.{did_you_mean(str(t), IMAGE_TYPES)} "
                                  f"Types: {', '.join(IMAGE_TYPES)}")
        self.image_types = tuple(types)
        if not self.image_types:
            self.modalities = frozenset({Modality.TEXT})
        self.intent_field = options.get("intent_field", "Changed Question")

    def data_dir(self) -> Path:
        assert self.path is not None
        for cand in (self.path / "data", self.path):
            if (cand / "processed_questions").is_dir():
                return cand
        raise DataError(f"dataset 'mm-safetybench': no processed_questions folder in {self.path} or "
                        f"{self.path / 'data'} (expected data/processed_questions/01-Illegal_Activitiy.json, ...)")

    def _samples(self) -> Iterator[Sample]:
        data = self.data_dir()
        seen: set[str] = set()
        for scenario in SCENARIOS:
            qfile = data / "processed_questions" / f"{scenario}.json"
            if not qfile.is_file():
                self.policy.item(f"{qfile}: scenario file not found (dataset 'mm-safetybench', scenario {scenario})")
                continue
            number = scenario.split("-", 1)[0]
            items = read_json(qfile)
            if not isinstance(items, dict):
                raise DataError(f"{qfile}: expected a JSON object of items keyed \"0\", \"1\", ... "
                                f"(got a {type(items).__name__})")
            for key, rec in items.items():
                where = f"{qfile}, item {key!r}"
                try:
                    if not isinstance(rec, dict):
                        raise ItemError(f"{where}: the item is a {type(rec).__name__}, not an object")
                    sid = f"{number}-{key}"
                    if sid in seen:
                        raise ItemError(f"{where}: duplicate item {sid!r}")
                    for f in REQUIRED_FIELDS:
                        text_of(rec, f, where)
                    intent = text_of(rec, self.intent_field, where)
                    images = {}
                    for t in self.image_types:
                        folder = data / "imgs" / scenario / t
                        ref = next((folder / f"{key}{ext}" for ext in (".jpg", ".png", ".jpeg")
                                    if (folder / f"{key}{ext}").is_file()), folder / f"{key}.jpg")
                        images[t] = self.image(str(ref), None, where, t)
                except ItemError as e:
                    self.item_error(e)
                    continue
                seen.add(sid)
                meta: dict[str, Any] = {"scenario_number": number, "key": key,
                                        "prompt_field": "Rephrased Question"}
                if "SD_TYPO" in images:
                    meta["prompt_image"] = "SD_TYPO"
                yield Sample(dataset=self.registered_name, id=sid, scenario=scenario, intent=intent,
                             fields=text_fields(rec), images=images, license=self.sample_license, meta=meta)
