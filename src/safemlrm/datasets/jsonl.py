"""A generic loader for a user's own benchmark: JSON Lines (or a JSON array, CSV, TSV) plus a
field mapping.

    dataset:
      name: jsonl
      path: my_bench/items.jsonl
      options:
        id: uid                      # default: the record's "id", else its line number
        intent: question             # the plain harmful request the judge sees (default "intent")
        scenario: category           # default: every item in scenario "all"
        fields: {question: question, rewrite: rewritten}   # or a list of column names
        images: {image: img_path}    # paths relative to the data file's folder
        on_error: skip               # default "raise"
        license: CC-BY-4.0
        name: my_bench               # the dataset name on samples (default "jsonl:<file stem>")

A column name may be a dotted path into nested JSON objects ("meta.category") when no key holds
the dotted name itself. The mapping may also be given whole as the option `mapping`.

Errors name the file, the line and the field. With `on_error: skip` a bad record (a missing image,
a missing column, a line that is not JSON) is skipped and counted in `self.skipped`, with the
reasons of the first few kept in `self.skip_reasons`. `verify_images: true` also opens every image
(a corrupt one is then a bad record too); image columns may hold paths, or embedded bytes as
Parquet and the Hub store them (written once to `image_cache`, see datasets/io.py).

From the Hugging Face Hub (needs the `datasets` package; the same mapping applies to its columns):

    dataset:
      name: jsonl
      options:
        hub: some-org/some-bench     # any id `datasets.load_dataset` takes, or a packaged builder
        config: default              # optional: the config (subset) name
        split: test                  # needed when the dataset has several splits
        revision: main               # optional
        data_files: {test: x.parquet}  # optional, passed through (with hub: parquet this loads local files)
        intent: question
        images: {image: image}       # image columns, embedded or paths (read from image_root)
        image_root: /data/bench      # folder for image paths in Hub rows
"""
from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError, did_you_mean
from ..records import Modality, Sample
from ..registry import register
from .base import Dataset
from .io import ItemError, default_image_cache, hub_rows, image_ref

_MAPPING_KEYS = ("id", "intent", "scenario", "fields", "images")
_OPTIONS = _MAPPING_KEYS + ("mapping", "on_error", "license", "name", "format", "hub", "config", "split",
                            "revision", "data_files", "image_root", "image_cache", "verify_images")
_MISSING = object()


class _BadRecord(Exception):
    pass


def _lookup(rec: Any, col: str) -> Any:
    if isinstance(rec, dict) and col in rec:
        return rec[col]
    cur = rec
    for part in col.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return _MISSING
    return cur


def _as_text(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False)
    return str(v)


@register("dataset", "jsonl")
class JsonlDataset(Dataset):
    license = "unknown"
    modalities = frozenset({Modality.TEXT})
    scenarios = ()  # open-ended: whatever the file holds
    known_options = _OPTIONS

    def __init__(self, path: str | Path | None = None, **options: Any):
        for name in options:
            if name not in _OPTIONS:
                raise ConfigError(f"dataset 'jsonl' has no option {name!r}.{did_you_mean(name, _OPTIONS)} "
                                  f"Options: {', '.join(_OPTIONS)}")
        self.hub = options.get("hub") or None
        if path is None and self.hub is None:
            raise ConfigError("dataset 'jsonl' needs a path to a .jsonl, .json, .csv or .tsv file, "
                              "or `hub:` with a Hugging Face dataset id")
        super().__init__(path, **options)
        mapping = dict(options.get("mapping") or {})
        for k in mapping:
            if k not in _MAPPING_KEYS:
                raise ConfigError(f"dataset 'jsonl': the mapping has no key {k!r}.{did_you_mean(k, _MAPPING_KEYS)} "
                                  f"Keys: {', '.join(_MAPPING_KEYS)}")
        mapping.update({k: options[k] for k in _MAPPING_KEYS if k in options})
        self.id_col: str | None = mapping.get("id")
        self.intent_col: str = mapping.get("intent", "intent")
        self.scenario_col: str | None = mapping.get("scenario")
        fields = mapping.get("fields") or {}
        if isinstance(fields, (list, tuple)):
            fields = {c: c for c in fields}
        images = mapping.get("images") or {}
        if isinstance(images, str):
            images = {"image": images}
        if not isinstance(fields, dict) or not isinstance(images, dict):
            raise ConfigError("dataset 'jsonl': `fields` and `images` map names to columns "
                              "(e.g. {question: q}); `fields` may also be a list of column names")
        self.field_cols: dict[str, str] = {str(k): str(v) for k, v in fields.items()}
        self.image_cols: dict[str, str] = {str(k): str(v) for k, v in images.items()}
        self.on_error = options.get("on_error", "raise")
        if self.on_error not in ("raise", "skip"):
            raise ConfigError(f"dataset 'jsonl': on_error must be 'raise' or 'skip', not {self.on_error!r}")
        if self.hub is not None:
            self.format = "hub"
            stem = str(self.hub).rstrip("/").split("/")[-1]
        else:
            assert self.path is not None  # without `hub:` a path was required above
            fmt = options.get("format") or self.path.suffix.lower().lstrip(".")
            if fmt not in ("jsonl", "ndjson", "json", "csv", "tsv"):
                raise ConfigError(f"dataset 'jsonl': cannot tell the format of {self.path} from its suffix; "
                                  f"set option format to jsonl, json, csv or tsv")
            self.format = "jsonl" if fmt == "ndjson" else fmt
            stem = self.path.stem
        self.dataset_name = options.get("name") or f"jsonl:{stem}"
        root = options.get("image_root")
        self.image_root = Path(root).expanduser() if root else (self.path.parent if self.path is not None else None)
        cache = options.get("image_cache")
        self.image_cache = Path(cache).expanduser() if cache else default_image_cache()
        self.verify_images = bool(options.get("verify_images", False))
        self.sample_license = options.get("license", "unknown")
        if self.image_cols:
            self.modalities = frozenset({Modality.TEXT, Modality.IMAGE})
        self.skipped = 0
        self.skip_reasons: list[str] = []

    # -- reading -------------------------------------------------------------------------------

    def _records(self) -> Iterator[tuple[int, Any]]:
        """(line number, record or an Exception for an unreadable line)."""
        if self.hub is not None:
            o = self.options
            for i, (_label, row) in enumerate(hub_rows(str(self.hub), config=o.get("config"), split=o.get("split"),
                                                       data_files=o.get("data_files"), revision=o.get("revision"))):
                yield i + 1, row
            return
        assert self.path is not None  # without `hub:` a path was required in __init__
        try:
            f = open(self.path, newline="" if self.format in ("csv", "tsv") else None, encoding="utf-8-sig")
        except OSError as e:
            raise DataError(f"cannot read {self.path}: {e.strerror or e}") from None
        with f:
            if self.format in ("csv", "tsv"):
                reader = csv.DictReader(f, delimiter="\t" if self.format == "tsv" else ",")
                try:
                    for row in reader:
                        if None in row:
                            yield reader.line_num, _BadRecord("more values than the header has columns")
                            continue
                        yield reader.line_num, {k: v for k, v in row.items() if v is not None}
                except csv.Error as e:
                    raise DataError(f"{self.path}, line {reader.line_num}: not valid CSV ({e})") from None
            elif self.format == "json":
                try:
                    data = json.load(f)
                except json.JSONDecodeError as e:
                    raise DataError(f"{self.path}, line {e.lineno}: not valid JSON ({e.msg})") from None
                if not isinstance(data, list):
                    raise DataError(f"{self.path}: a .json file must hold an array of records")
                for i, rec in enumerate(data):
                    yield i + 1, rec  # the record's position in the array
            else:
                for n, line in enumerate(f, start=1):
                    if not line.strip():
                        continue
                    try:
                        yield n, json.loads(line)
                    except json.JSONDecodeError as e:
                        yield n, _BadRecord(f"not valid JSON ({e.msg}, column {e.colno})")

    def _sample(self, n: int, rec: Any) -> Sample:
        if isinstance(rec, Exception):
            raise _BadRecord(str(rec))
        if not isinstance(rec, dict):
            raise _BadRecord(f"the record is a {type(rec).__name__}, not an object")

        def col(role: str, name: str) -> str:
            v = _lookup(rec, name)
            if v is _MISSING or v is None or (isinstance(v, str) and not v.strip()):
                have = ", ".join(sorted(map(str, rec))) or "none"
                raise _BadRecord(f"field {role!r} (column {name!r}) is missing or empty."
                                 f"{did_you_mean(name, list(map(str, rec)))} The record has: {have}")
            return _as_text(v)

        if self.id_col is not None:
            sid = col("id", self.id_col)
        else:
            v = _lookup(rec, "id")
            sid = _as_text(v) if v is not _MISSING and v is not None and str(v).strip() else str(n)
        intent = col("intent", self.intent_col)
        scenario = col("scenario", self.scenario_col) if self.scenario_col else "all"
        fields = {name: col(name, c) for name, c in self.field_cols.items()}
        images: dict[str, str] = {}
        for role, c in self.image_cols.items():
            v = _lookup(rec, c)
            if v is _MISSING or v is None or (isinstance(v, str) and not v.strip()):
                col(role, c)  # raises, naming the column and the record's keys
            try:
                images[role] = image_ref(v, base=self.image_root, where="record", field=role,
                                         cache_dir=self.image_cache, verify=self.verify_images)
            except ItemError as e:
                detail = str(e).split(f"image field {role!r}: ", 1)[-1].removeprefix("record: ")
                raise _BadRecord(f"image field {role!r} (column {c!r}): {detail}") from None
        return Sample(dataset=self.dataset_name, id=sid, scenario=scenario, intent=intent, fields=fields,
                      images=images, license=self.sample_license, meta={"line": n})

    def samples(self) -> Iterator[Sample]:
        self.skipped = 0
        self.skip_reasons = []
        seen: set[str] = set()
        where = {"json": "record", "hub": "row"}.get(self.format, "line")
        source = self.path if self.hub is None else self.hub
        for n, rec in self._records():
            try:
                s = self._sample(n, rec)
                if s.id in seen:
                    raise _BadRecord(f"duplicate id {s.id!r}")
            except _BadRecord as e:
                msg = f"{source}, {where} {n}: {e}"
                if self.on_error == "skip":
                    self.skipped += 1
                    if len(self.skip_reasons) < 20:
                        self.skip_reasons.append(msg)
                    continue
                raise DataError(msg + " (set on_error: skip to skip such records)") from None
            seen.add(s.id)
            yield s
