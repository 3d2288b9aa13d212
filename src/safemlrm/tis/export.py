"""Write a build's kept records: the TiS file, its images, a Hugging Face dataset and Parquet.

    export/tis.json         one JSON array in the published TiS form (form.make_record)
    export/images/<source>/<sha256[:16]>.<ext>   copied, hard-linked or symlinked from the build's blobs
    export/tis_meta.jsonl   one line per record, same order: id, source, sample id, scenario, decision
    export/hf/              datasets.Dataset.save_to_disk (images embedded)
    export/tis.parquet      the same table as Parquet (images embedded)

The export folder is written beside the old one and swapped in at the end, so a killed export never
leaves a half-written set, and images of records no longer kept do not linger.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..blobs import _EXT, BlobStore
from ..errors import ConfigError
from ..fsutil import write_atomic
from .filters import Candidate
from .form import make_record


@dataclass
class ExportPaths:
    folder: Path
    json: Path
    meta: Path
    hf: Path | None
    parquet: Path | None
    images: int


def image_name(source: str, sha: str, media_type: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in source) or "source"
    return f"images/{safe}/{sha[:16]}{_EXT.get(media_type, '.img')}"


def _place(src: Path, dest: Path, mode: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if mode == "copy":
        shutil.copyfile(src, dest)
    elif mode == "hardlink":
        os.link(src, dest)
    else:
        os.symlink(src.resolve(), dest)


@contextmanager
def quiet_datasets() -> Iterator[None]:
    """`datasets` without its own progress bars (ours report the work), restored afterwards."""
    import datasets

    was = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was:
            datasets.enable_progress_bars()


def hf_features():
    import datasets

    return datasets.Features({
        "id": datasets.Value("string"), "source": datasets.Value("string"),
        "sample_id": datasets.Value("string"), "scenario": datasets.Value("string"),
        "decision": datasets.Value("string"),
        "conversations": [{"from": datasets.Value("string"), "value": datasets.Value("string")}],
        "images": [datasets.Image()],
    })


def hf_dataset(rows: Sequence[dict[str, Any]], images_root: Path):
    """A `datasets.Dataset` of TiS rows (with their metadata), image bytes embedded."""
    try:
        import datasets
    except ImportError:
        raise ConfigError("the Hugging Face dataset export needs `datasets`: pip install 'safemlrm[tis]' "
                          "(or set export: {hf: false, parquet: false})") from None

    def gen():
        for row in rows:
            yield {**row, "images": [{"bytes": (images_root / p).read_bytes(), "path": p} for p in row["images"]]}

    return datasets.Dataset.from_list(list(gen()), features=hf_features())


def write_export(kept: Sequence[Candidate], folder: Path, blobs: BlobStore, *, images: str = "copy",
                 hf: bool = True, parquet: bool = True) -> ExportPaths:
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    records, meta, placed = [], [], set()
    for c in kept:
        rel = image_name(c.source, c.image, c.meta.get("media_type", "image/png"))
        if rel not in placed:
            _place(blobs._path(c.image), tmp / rel, images)
            placed.add(rel)
        assert c.thought is not None
        records.append(make_record(c.question, c.thought, c.answer, rel))
        meta.append({"id": c.key, "source": c.source, "sample_id": c.sample_id, "scenario": c.scenario,
                     "decision": c.decision})
    write_atomic(tmp / "tis.json", json.dumps(records, ensure_ascii=False, indent=2).encode("utf-8"))
    write_atomic(tmp / "tis_meta.jsonl",
                 "".join(json.dumps(m, ensure_ascii=False) + "\n" for m in meta).encode("utf-8"))
    hf_dir = tmp / "hf" if hf else None
    pq = tmp / "tis.parquet" if parquet else None
    if (hf or parquet) and records:
        ds = hf_dataset([{**m, **r} for m, r in zip(meta, records)], tmp)
        with quiet_datasets():
            if hf_dir is not None:
                ds.save_to_disk(str(hf_dir))
            if pq is not None:
                ds.to_parquet(str(pq))
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)

    def moved(p: Path | None) -> Path | None:
        return folder / p.relative_to(tmp) if p is not None and records else None

    return ExportPaths(folder, folder / "tis.json", folder / "tis_meta.jsonl", moved(hf_dir), moved(pq), len(placed))
