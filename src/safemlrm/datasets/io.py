"""Shared reading for every benchmark loader: one way to read records, one way to check an image,
one way to handle a bad item, one way to load from the Hugging Face Hub.

* `read_records(path)`: JSON (an array, or an object of records keyed by id), JSON Lines, CSV/TSV
  or Parquet, streamed where the format allows, with a column check. A file that cannot be parsed
  or a table that lacks a required column stops the load with a `DataError` naming the file (and
  the column, with the close matches); a JSON record that lacks a field is an item error.
* `image_ref(value, ...)`: an image given as a path (relative to a folder), raw bytes, a
  `{"bytes", "path"}` struct (how `datasets` and Parquet store images) or a PIL image. Paths must
  exist and decode; embedded bytes are written once to a content-addressed cache and the cached
  path is returned, so every `Sample.images` entry is a real file.
* `ErrorPolicy`: `on_error: raise` (default) turns an item error into a `DataError` naming the
  file, the item and the field; `on_error: skip` skips the item and counts it. A load where every
  item was skipped still fails: a renamed field would otherwise give an empty benchmark silently.
* `hub_rows(repo, ...)`: rows from `datasets.load_dataset`, imported lazily, with image columns
  left undecoded, and messages that say what to do offline or without `datasets` installed.
* `BenchmarkDataset`: the base of the loaders in this package: option checking, the local-or-Hub
  choice (`records`), a column mapping for Hub schemas, and the error policy (`item_samples`), so a
  loader only turns a record into Samples.
"""
from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, overload

from ..fsutil import write_atomic
from ..errors import ConfigError, DataError, did_you_mean
from ..hashing import bytes_sha256
from ..records import Modality, Sample
from .base import Dataset

MAX_REASONS = 20
_FORMATS = {"json": "json", "jsonl": "jsonl", "ndjson": "jsonl", "csv": "csv", "tsv": "tsv",
            "parquet": "parquet", "pq": "parquet"}
_IMAGE_EXT = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif",
              "image/bmp": ".bmp"}


class ItemError(Exception):
    """One item cannot be used; the message names the file, the item and the field."""


class EmptyText(ItemError):
    """A required text field is present but empty in the published file (VLSBench's data.json has
    such a record): left out and counted by default (`on_empty: skip`), unlike a missing field, which
    says the file was renamed or is of another schema."""


# (file or source, item label, record or the ItemError reading it, folder relative image paths are read from)
Row = tuple[str, str, Any, Path | None]


# --- errors -----------------------------------------------------------------------------------


class ErrorPolicy:
    """`raise` or `skip` bad items; counts and keeps the first reasons when skipping."""

    def __init__(self, dataset: str, on_error: str = "raise", on_empty: str = "skip"):
        for opt, v in (("on_error", on_error), ("on_empty", on_empty)):
            if v not in ("raise", "skip"):
                raise ConfigError(f"dataset {dataset!r}: {opt} must be 'raise' or 'skip', not {v!r}")
        self.dataset = dataset
        self.on_error = on_error
        self.on_empty = on_empty
        self.skipped = 0
        self.reasons: list[str] = []

    def item(self, message: str, empty: bool = False) -> None:
        """Report a bad item: raise, or count it and return (the caller then skips it). An item whose
        required text is empty follows `on_empty` instead of `on_error`."""
        if (self.on_empty if empty else self.on_error) == "raise":
            if empty:
                raise DataError(f"{message} (set on_empty: skip to leave such items out)")
            raise DataError(f"{message} (set on_error: skip to skip such items)")
        self.skipped += 1
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append(message)

    def finish(self, yielded: int) -> None:
        if self.skipped and not yielded:
            raise DataError(f"dataset {self.dataset!r}: every item was skipped ({self.skipped}); "
                            f"the first reason: {self.reasons[0]}")


def one_of(dataset: str, option: str, value: Any, choices: Sequence[str], allowed: str | None = None) -> Any:
    """`value` when it is one of `choices`; else a ConfigError naming the dataset and the option and
    listing `allowed` (default "a, b or c")."""
    if value not in choices:
        allowed = allowed or ", ".join(choices[:-1]) + " or " + choices[-1]
        raise ConfigError(f"dataset {dataset!r}: {option} must be {allowed}, not {value!r}."
                          f"{did_you_mean(str(value), choices)}")
    return value


def missing_field(rec: dict, name: str, where: str, what: str = "field") -> ItemError:
    have = ", ".join(sorted(map(str, rec))) or "none"
    return ItemError(f"{where}: {what} {name!r} is missing or empty.{did_you_mean(name, list(map(str, rec)))} "
                     f"The record has: {have}")


@overload
def text_of(rec: dict, name: str, where: str, *, required: Literal[True] = True) -> str: ...
@overload
def text_of(rec: dict, name: str, where: str, *, required: bool) -> str | None: ...


def text_of(rec: dict, name: str, where: str, *, required: bool = True) -> str | None:
    """A field as text; None when optional and absent (a required one raises instead)."""
    v = rec.get(name)
    if v is None or (isinstance(v, str) and not v.strip()) or (isinstance(v, float) and v != v):
        if required and name in rec and isinstance(v, str):
            raise EmptyText(f"{where}: field {name!r} is empty in the file")
        if required:
            raise missing_field(rec, name, where)
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False)
    return str(v)


def text_fields(rec: dict, skip: Iterable[str] = ()) -> dict[str, str]:
    """Every scalar field of a record as text, by its original name (images and nested data left out)."""
    skip = set(skip)
    out: dict[str, str] = {}
    for k, v in rec.items():
        if k in skip or v is None or isinstance(v, (bytes, bytearray, dict, list)):
            continue
        if isinstance(v, float) and v != v:  # NaN from pandas/CSV
            continue
        if hasattr(v, "size") and hasattr(v, "mode"):  # a PIL image
            continue
        out[str(k)] = v if isinstance(v, str) else json.dumps(v) if isinstance(v, bool) else str(v)
    return out


# --- images -----------------------------------------------------------------------------------


def default_image_cache() -> Path:
    root = os.environ.get("SAFEMLRM_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "safemlrm") / "images"


def _verify(data_or_path: bytes | Path) -> str:
    """The image's media type; raises ValueError when it is not a readable image."""
    from PIL import Image, UnidentifiedImageError

    try:
        src = io.BytesIO(data_or_path) if isinstance(data_or_path, (bytes, bytearray)) else data_or_path
        with Image.open(src) as im:
            fmt = im.format
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ValueError(str(e) or type(e).__name__) from None
    return Image.MIME.get(fmt or "", "image/png")


def cache_image_bytes(data: bytes, cache_dir: Path, where: str, verify: bool = True) -> str:
    """Write embedded image bytes once, by content hash; the file's path."""
    try:
        media = _verify(data)
    except ValueError as e:
        if verify:
            raise ItemError(f"{where}: the embedded image is not a readable image ({e})") from None
        media = "image/png"
    sha = bytes_sha256(data)
    path = Path(cache_dir) / sha[:2] / (sha + _IMAGE_EXT.get(media, ".img"))
    if not path.exists():
        write_atomic(path, data)
    return str(path)


def image_ref(value: Any, *, base: Path | None, where: str, field: str, cache_dir: Path | None = None,
              verify: bool = True) -> str:
    """The absolute path of an image given as a path, bytes, a {"bytes","path"} struct or a PIL image.

    Raises ItemError naming `where` and `field` when the file is missing or not an image.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ItemError(f"{where}: image field {field!r} is missing or empty")
    if isinstance(value, dict):
        data, ref = value.get("bytes"), value.get("path")
        if data:
            return cache_image_bytes(bytes(data), cache_dir or default_image_cache(), f"{where} ({field})", verify)
        if ref:
            value = ref
        else:
            raise ItemError(f"{where}: image field {field!r} holds neither bytes nor a path")
    if isinstance(value, (bytes, bytearray)):
        return cache_image_bytes(bytes(value), cache_dir or default_image_cache(), f"{where} ({field})", verify)
    if hasattr(value, "save") and hasattr(value, "mode"):  # PIL image (a decoded datasets Image)
        from ..attacks.typography import png_bytes

        return cache_image_bytes(png_bytes(value), cache_dir or default_image_cache(), f"{where} ({field})", verify)
    ref = str(value)
    p = Path(ref).expanduser()
    if not p.is_absolute() and base is not None:
        p = Path(base) / p
    if not p.is_file():
        raise ItemError(f"{where}: image field {field!r}: file {ref!r} not found (looked for {p})")
    if verify:
        try:
            _verify(p)
        except ValueError as e:
            raise ItemError(f"{where}: image field {field!r}: {p} is not a readable image ({e})") from None
    return str(p.resolve())


# --- where a download keeps its file -----------------------------------------------------------

CLONE_FOLDERS = ("", "data")  # a file at the download's root, or in the data/ folder of a repository clone


def resolve_file(path: Path, dataset: str, names: Sequence[str], folders: Sequence[str] = CLONE_FOLDERS) -> Path:
    """The benchmark file a `path` means: the path itself when it is a file, else the first of `names`
    found in one of `folders` under it (the Hub snapshot's root, a clone's data/ folder, ...). A
    DataError names every place looked in when none has it."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if not path.exists():
        raise DataError(f"dataset {dataset!r}: {path} not found")
    tried = [path / folder / name for folder in folders for name in names]
    for cand in tried:
        if cand.is_file():
            return cand
    raise DataError(f"dataset {dataset!r}: none of {', '.join(names)} found in {path}; looked for "
                    f"{', '.join(str(t) for t in tried)}. Point `path` at the benchmark's file or its folder.")


# --- records ----------------------------------------------------------------------------------


def file_format(path: Path, fmt: str | None = None) -> str:
    key = (fmt or path.suffix.lower().lstrip(".")).lower()
    if key not in _FORMATS:
        raise ConfigError(f"cannot tell the format of {path} from its suffix; expected .json, .jsonl, .csv, "
                          f".tsv or .parquet (or set the format)")
    return _FORMATS[key]


def read_json(path: Path) -> Any:
    """A whole JSON file; a DataError naming the file and line when it is missing or corrupt."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}, line {e.lineno}: not valid JSON ({e.msg})") from None


def check_columns(have: Sequence[str], required: Iterable[str], source: str, hint: str = "") -> None:
    have = [str(h) for h in have]
    for col in required:
        if col not in have:
            raise DataError(f"{source}: missing column {col!r}.{did_you_mean(col, have)} "
                            f"Columns: {', '.join(have) or 'none'}.{(' ' + hint) if hint else ''}")


def read_records(path: str | Path, *, fmt: str | None = None, required: Iterable[str] = (),
                 columns: Sequence[str] | None = None, hint: str = "") -> Iterator[tuple[str, Any]]:
    """(item label, record) for each record of a JSON/JSONL/CSV/TSV/Parquet file.

    A record is a dict, or an ItemError for a line that could not be parsed (JSON Lines, CSV).
    `required` columns are checked once for tables (CSV, Parquet: a missing one stops the load) and
    per record for JSON (a record without one is an item error, raised by the caller's checks).
    `columns` limits the Parquet columns read.
    """
    path = Path(path)
    kind = file_format(path, fmt)
    required = list(required)
    if kind == "json":
        data = read_json(path)
        if isinstance(data, list):
            for i, rec in enumerate(data):
                yield f"record {i}", rec
        elif isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):
            for k, rec in data.items():  # an object of records keyed by id (MM-SafetyBench)
                yield f"item {k!r}", rec
        else:
            raise DataError(f"{path}: expected a JSON array of records, or an object whose values are records")
        return
    if kind == "parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ConfigError(f"reading {path} needs pyarrow: pip install 'safemlrm[parquet]' (or pyarrow)") from None
        try:
            pf = pq.ParquetFile(path)
        except FileNotFoundError:
            raise DataError(f"file not found: {path}") from None
        except Exception as e:  # pyarrow raises ArrowInvalid / OSError for corrupt files
            raise DataError(f"{path}: not a readable Parquet file ({e})") from None
        names = pf.schema_arrow.names
        check_columns(names, required, str(path), hint)
        cols = [c for c in columns if c in names] if columns is not None else None
        row = 0
        try:
            for batch in pf.iter_batches(batch_size=64, columns=cols):
                for rec in batch.to_pylist():
                    yield f"row {row}", rec
                    row += 1
        except Exception as e:
            raise DataError(f"{path}, row {row}: cannot read the Parquet data ({e})") from None
        return
    try:
        f = open(path, newline="" if kind in ("csv", "tsv") else None, encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    with f:
        if kind == "jsonl":
            try:
                for n, line in enumerate(f, start=1):
                    if not line.strip():
                        continue
                    try:
                        yield f"line {n}", json.loads(line)
                    except json.JSONDecodeError as e:
                        yield f"line {n}", ItemError(f"{path}, line {n}: not valid JSON ({e.msg}, column {e.colno})")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}: not UTF-8 text ({e.reason})") from None
            return
        reader = csv.DictReader(f, delimiter="\t" if kind == "tsv" else ",")
        try:
            header = reader.fieldnames or []
            check_columns([h.strip() for h in header], required, f"{path}, line 1 (header)", hint)
            for fields in reader:
                label = f"line {reader.line_num}"
                if None in fields:
                    yield label, ItemError(f"{path}, {label}: more values than the header has columns")
                    continue
                yield label, {k.strip(): v for k, v in fields.items() if v is not None}
        except csv.Error as e:
            raise DataError(f"{path}, line {reader.line_num}: not valid CSV ({e})") from None
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not UTF-8 text ({e.reason})") from None


# --- the Hugging Face Hub ---------------------------------------------------------------------


def hub_rows(repo: str, *, config: str | None = None, split: str | None = None, data_files: Any = None,
             revision: str | None = None, streaming: bool = False, required: Iterable[str] = (),
             columns: Sequence[str] | None = None, hint: str = "",
             cache_dir: str | None = None) -> Iterator[tuple[str, dict]]:
    """(item label, row) from `datasets.load_dataset(repo, config, split=...)`, image columns undecoded.

    `repo` may also be a packaged builder ("parquet", "json", "csv") with `data_files`, which is how
    the tests (and a user with a local copy in Hub layout) load offline through the same code.
    """
    try:
        import datasets
    except ImportError:
        raise ConfigError(f"loading {repo!r} from the Hub needs the `datasets` package: "
                          f"pip install 'safemlrm[hub]' (or: pip install datasets)") from None
    source = repo + (f" (config {config!r})" if config else "") + (f", split {split!r}" if split else "")
    try:
        ds = datasets.load_dataset(repo, config, split=split, data_files=data_files, revision=revision,
                                   streaming=streaming, cache_dir=cache_dir)
    except (ConnectionError, OSError) as e:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        raise DataError(
            f"cannot load {source} from the Hugging Face Hub: {e}. "
            + ("HF_HUB_OFFLINE is set. " if offline else "")
            + f"Download it where you have a connection (huggingface-cli download {repo} --repo-type dataset "
              f"--local-dir DIR) and point the dataset's `path` at DIR instead of using `hub`.") from None
    except ValueError as e:  # unknown config or split
        raise DataError(f"cannot load {source}: {e}") from None
    except Exception as e:  # DatasetNotFoundError and friends
        raise DataError(f"cannot load {source}: {type(e).__name__}: {e}") from None
    if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if len(ds) != 1:
            raise DataError(f"{source} has several splits ({', '.join(ds)}); choose one with the `split` option")
        ds = next(iter(ds.values()))
    names = list(ds.column_names or (ds.features or {}).keys())
    if names or not streaming:  # a streamed dataset may not know its columns before the first row
        check_columns(names, required, source, hint)
    feats = ds.features or {}
    for name, feat in feats.items():
        if isinstance(feat, datasets.Image) and feat.decode:
            ds = ds.cast_column(name, datasets.Image(decode=False))
    if columns is not None and not streaming:
        ds = ds.select_columns([c for c in columns if c in names])
    for i, row in enumerate(ds):
        yield f"row {i}", row


# --- the base of the benchmark loaders ---------------------------------------------------------


class BenchmarkDataset(Dataset):
    """Common options for the benchmark loaders.

    Options every loader takes:
      on_error: raise (default) | skip
      on_empty: skip (default) | raise: an item whose required text is empty in the file
      license: the licence tag put on samples (default: the benchmark's)
      verify_images: true (default): open every image once while loading, so a corrupt file stops
        the load here rather than in the middle of a run
      image_cache: where images embedded in Parquet/Hub rows are written (default
        $SAFEMLRM_CACHE/images or ~/.cache/safemlrm/images)
    Loaders with a Hub copy (`hub_id`) also take:
      hub: true (the published id) or a dataset id / packaged builder ("parquet") to load instead of `path`
      config, split, revision, data_files, streaming: passed to `datasets.load_dataset`
      columns: {published name: name in the Hub copy}, for a Hub schema that differs
      image_root: the folder that relative image paths in Hub rows are read from
    """

    license: ClassVar[str] = "unknown"
    modalities: frozenset[Modality] = frozenset({Modality.TEXT, Modality.IMAGE})
    hub_id: ClassVar[str | None] = None
    hub_config: ClassVar[str | None] = None
    hub_split: ClassVar[str | None] = None
    extra_options: ClassVar[tuple[str, ...]] = ()
    _common = ("on_error", "on_empty", "license", "verify_images", "image_cache")
    _hub = ("hub", "config", "split", "revision", "data_files", "streaming", "columns", "image_root")

    def __init__(self, path: str | Path | None = None, **options: Any):
        known = self._common + (self._hub if self.hub_id else ()) + self.extra_options
        name = getattr(type(self), "registered_name", type(self).__name__)
        for opt in options:
            if opt not in known:
                raise ConfigError(f"dataset {name!r} has no option {opt!r}.{did_you_mean(opt, known)} "
                                  f"Options: {', '.join(known)}")
        super().__init__(path, **options)
        self.name = name
        self.hub = options.get("hub")
        if self.hub is True:
            self.hub = self.hub_id
        if self.hub in (False, None, ""):
            self.hub = None
        if self.path is None and self.hub is None:
            how = f" or `hub: true` to load {self.hub_id} from the Hugging Face Hub" if self.hub_id else ""
            raise ConfigError(f"dataset {name!r} needs a `path` to the downloaded benchmark{how}")
        self.policy = ErrorPolicy(name, options.get("on_error", "raise"), options.get("on_empty", "skip"))
        self.sample_license = options.get("license", type(self).license)
        self.verify_images = bool(options.get("verify_images", True))
        cache = options.get("image_cache")
        self.image_cache = Path(cache).expanduser() if cache else default_image_cache()
        cols = options.get("columns") or {}
        if not isinstance(cols, dict):
            raise ConfigError(f"dataset {name!r}: `columns` maps published column names to the names in your copy, "
                              f"e.g. {{image_path: image}}")
        self.column_map: dict[str, str] = {str(k): str(v) for k, v in cols.items()}
        root = options.get("image_root")
        self.image_root = Path(root).expanduser() if root else None

    # -- error accounting ----------------------------------------------------------------------

    @property
    def skipped(self) -> int:
        return self.policy.skipped

    @property
    def skip_reasons(self) -> list[str]:
        return self.policy.reasons

    def samples(self) -> Iterator[Sample]:
        self.policy.skipped = 0
        self.policy.reasons = []
        if self.hub is None and self.path is not None and not self.path.exists():
            raise DataError(f"{self.path} not found (dataset {self.name!r})")
        n = 0
        for s in self._samples():
            n += 1
            yield s
        self.policy.finish(n)

    def _samples(self) -> Iterator[Sample]:
        raise NotImplementedError

    # -- rows ----------------------------------------------------------------------------------

    def canonical(self, rec: dict) -> dict:
        """A Hub row with its columns renamed to the published names (the `columns` option)."""
        if not self.column_map:
            return rec
        out = dict(rec)
        for published, actual in self.column_map.items():
            if actual in rec:
                out[published] = rec[actual]
                if actual != published:
                    out.pop(actual, None)
        return out

    def hub_rows(self, required: Iterable[str] = (), config: str | None = None, split: str | None = None,
                 columns: Sequence[str] | None = None) -> Iterator[tuple[str, str, dict]]:
        """(source, item label, canonical row) from the Hub (or a packaged builder with data_files)."""
        if self.hub is None:  # a loader without a Hub id never reaches here: its `hub:` source is refused earlier
            raise ConfigError(f"dataset {self.name!r} has no Hub copy")
        o = self.options  # a value the loader passes wins, then the option, then the published default
        config = config if config is not None else o.get("config", self.hub_config)
        split = split if split is not None else o.get("split", self.hub_split)
        required = [self.column_map.get(c, c) for c in required]
        cols = [self.column_map.get(c, c) for c in columns] if columns is not None else None
        hint = "Map the published names to your copy's with the `columns` option."
        source = f"{self.hub}" + (f" (config {config!r})" if config else "") + (f", split {split!r}" if split else "")
        for label, row in hub_rows(self.hub, config=config, split=split, data_files=o.get("data_files"),
                                   revision=o.get("revision"), streaming=bool(o.get("streaming", False)),
                                   required=required, columns=cols, hint=hint):
            yield source, label, self.canonical(row)

    def records(self, files: Callable[[], Iterable[Path]], required: Sequence[str] = (), *,
                columns: Sequence[str] | None = None, config: str | None = None, split: str | None = None,
                images: Path | None = None) -> Iterator[Row]:
        """The rows of the Hub copy when `hub` is set, else the records of `files()` (called only
        then); relative image paths are read from `image_root`, else `images`, else the file's folder."""
        if self.hub is not None:
            for source, label, rec in self.hub_rows(required=required, config=config, split=split, columns=columns):
                yield source, label, rec, self.image_root
            return
        for f in files():
            for label, rec in read_records(f, required=required, columns=columns):
                yield str(f), label, rec, self.image_root or images or f.parent

    def item_samples(self, rows: Iterable[Row],
                     build: Callable[[dict, str, Path | None, int], Iterable[Sample]]) -> Iterator[Sample]:
        """The Samples `build(record, where, image folder, row)` makes of each row, rows numbered
        from 0 (bad ones too). A row that could not be read or is not an object, or one `build` raises
        an ItemError for, goes to the error policy and gives no Sample."""
        for row, (source, label, rec, base) in enumerate(rows):
            where = f"{source}, {label}"
            try:
                if isinstance(rec, Exception):
                    raise ItemError(str(rec))
                if not isinstance(rec, dict):
                    raise ItemError(f"{where}: the record is a {type(rec).__name__}, not an object")
                samples = list(build(rec, where, base, row))  # all or none: a bad part skips the record
            except ItemError as e:
                self.item_error(e)
                continue
            yield from samples

    def question_sample(self, rec: dict, where: str, base: Path | None, sid: str, scenario: str,
                        meta: dict[str, Any]) -> list[Sample]:
        """The Sample of a row that asks its `question` about its `image`, every other scalar field
        kept in `fields` (the Hub image-question sets: BeaverTails-V, SPA-VL)."""
        question = text_of(rec, "question", where)
        image = self.image(rec.get("image"), base, where, "image")
        return [Sample(dataset=self.registered_name, id=sid, scenario=scenario, intent=question,
                       fields=text_fields(rec, skip=("image",)), images={"image": image},
                       license=self.sample_license, meta=meta)]

    def image(self, value: Any, base: Path | None, where: str, field: str) -> str:
        return image_ref(value, base=base, where=where, field=field, cache_dir=self.image_cache,
                         verify=self.verify_images)

    def item_error(self, e: ItemError) -> None:
        self.policy.item(str(e), empty=isinstance(e, EmptyText))


def _names(part: str, needle: str) -> bool:
    """Whether a path component names `needle`: equal to it, or starting with it followed by a
    separator ("harm-00000-of-00001.parquet", "evaluation.parquet"; not "evalharm")."""
    return part == needle or (part.startswith(needle) and not part[len(needle)].isalnum())


def find_files(root: Path, suffixes: tuple[str, ...], must_contain: Iterable[str] = ()) -> list[Path]:
    """Files under `root` (or `root` itself) with one of `suffixes` whose relative path has, for each
    string of `must_contain`, a component that names it; sorted."""
    if root.is_file():
        return [root]
    must = [m.lower() for m in must_contain]
    out = []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.suffix.lower() not in suffixes or p.name.startswith("."):
            continue
        parts = [q.lower() for q in p.relative_to(root).parts]
        if all(any(_names(part, m) for part in parts) for m in must):
            out.append(p)
    return out
