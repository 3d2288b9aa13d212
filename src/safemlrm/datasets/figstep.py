"""SafeBench, FigStep's benchmark: 500 harmful questions, 10 topics x 50 (SafeBench-Tiny: 50, 5 per topic).

Bundled from github.com/ThuCCSLab/FigStep (MIT, see data/figstep/LICENSE). Each row has the plain
question and its declarative rewrite ("instruction"), which the FigStep attack draws on an image;
the dataset itself is text only.
"""
from __future__ import annotations

import csv
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError, did_you_mean
from ..records import Modality, Sample
from ..registry import register
from .base import Dataset
from .io import one_of, resolve_file

COLUMNS = ("dataset", "category_id", "task_id", "category_name", "question", "instruction")
REQUIRED = ("category_id", "task_id", "category_name", "question", "instruction")
SUBSETS = {"tiny": "SafeBench-Tiny.csv", "full": "safebench.csv"}


def bundled_csv(subset: str) -> Path:
    return Path(str(resources.files("safemlrm") / "data" / "figstep" / SUBSETS[subset]))


def read_safebench(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) for each row of a SafeBench CSV, checked: a missing column or malformed
    row raises a DataError naming the file, the data row number and its line (the header is line 1)
    and the column."""
    try:
        f = open(path, newline="", encoding="utf-8-sig")
    except OSError as e:
        raise DataError(f"cannot read SafeBench CSV {path}: {e.strerror or e}") from None
    with f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{path}: the file is empty (expected a header with columns {', '.join(COLUMNS)})") from None
        except csv.Error as e:
            raise DataError(f"{path}, line 1: not valid CSV ({e})") from None
        header = [h.strip() for h in header]
        for col in REQUIRED:
            if col not in header:
                raise DataError(f"{path}, line 1 (header): missing column {col!r}."
                                f"{did_you_mean(col, header)} Expected columns: {', '.join(COLUMNS)}")
        index = {c: header.index(c) for c in REQUIRED}
        row_no = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                raise DataError(f"{path}, line {reader.line_num}: not valid CSV ({e})") from None
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue  # blank line
            row_no += 1
            where = f"{path}, row {row_no} (line {line})"
            if len(row) != len(header):
                missing = header[len(row)] if len(row) < len(header) else None
                what = (f"column {missing!r} is missing" if missing
                        else f"has {len(row) - len(header)} value(s) beyond the last column {header[-1]!r}")
                raise DataError(f"{where}: malformed row ({len(row)} values for {len(header)} "
                                f"columns): {what}. Quote values that contain commas.")
            rec = {c: row[i].strip() for c, i in index.items()}
            for col in REQUIRED:
                if not rec[col]:
                    raise DataError(f"{where}: column {col!r} is empty")
            yield line, rec


@register("dataset", "figstep")
class SafeBench(Dataset):
    """Options: subset = "tiny" (default, 50 items) or "full" (500); path = a CSV in the same schema
    (columns dataset,category_id,task_id,category_name,question,instruction) used instead, or a
    clone of the FigStep repository (its data/question/ holds SafeBench-Tiny.csv and safebench.csv;
    `subset` picks the file)."""

    license = "MIT"
    modalities = frozenset({Modality.TEXT})
    scenarios: tuple[str, ...] = ("Illegal Activity", "Hate Speech", "Malware Generation", "Physical Harm", "Fraud",
                 "Adult Content", "Privacy Violation", "Legal Opinion", "Financial Advice", "Health Consultation")
    known_options = ("subset", "path", "license")

    def __init__(self, path: str | Path | None = None, **options: Any):
        for name in options:
            if name not in self.known_options:
                raise ConfigError(f"dataset 'figstep' has no option {name!r}.{did_you_mean(name, self.known_options)} "
                                  f"Options: {', '.join(self.known_options)}")
        if path is None:
            path = options.pop("path", None)
        super().__init__(path, **options)
        self.subset = one_of("figstep", "subset", options.get("subset", "tiny"), tuple(SUBSETS),
                             f"one of {', '.join(SUBSETS)}")
        if self.path is None:
            self.csv_path = bundled_csv(self.subset)
        else:  # a clone of the FigStep repository keeps the CSVs in data/question/
            self.csv_path = resolve_file(self.path, "figstep", (SUBSETS[self.subset],),
                                         ("", "data/question", "question", "data"))
            # a user file may carry other topics: its scenarios are the ones it has
            self.scenarios = tuple(dict.fromkeys(r["category_name"] for _, r in read_safebench(self.csv_path)))
        self.sample_license = options.get("license", "MIT")

    def samples(self) -> Iterator[Sample]:
        seen: set[str] = set()
        for line, rec in read_safebench(self.csv_path):
            sid = f"{rec['category_id']}_{rec['task_id']}"
            if sid in seen:
                raise DataError(f"{self.csv_path}, line {line}: duplicate item {sid!r} (category_id {rec['category_id']}, "
                                f"task_id {rec['task_id']})")
            seen.add(sid)
            yield Sample(
                dataset=self.registered_name, id=sid, scenario=rec["category_name"], intent=rec["question"],
                fields={"question": rec["question"], "instruction": rec["instruction"]},
                license=self.sample_license,
                meta={"category_id": rec["category_id"], "task_id": rec["task_id"]},
            )
