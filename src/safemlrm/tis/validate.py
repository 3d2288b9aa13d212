"""`safemlrm tis validate FILE`: check a file in the TiS form and count its artefacts.

Any file in the form is read: a build's export, or the published Holly301/Think-in-Safety JSON.
Format problems (form.check_record) make a record invalid; artefacts, thought/answer disagreement
and duplicates are counted with the build's own detectors (filters.py), so a build report and a
validation report of its export speak the same language.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError
from .filters import ARTEFACT_KINDS, LEAKED_PHRASES, RefusalConsistency, answer_decision, find_artefacts, normalise
from .form import check_record


@dataclass
class ValidationReport:
    file: str
    records: int = 0
    valid: int = 0
    problems: Counter = field(default_factory=Counter)  # format problems, by kind (records may have several)
    notes: Counter = field(default_factory=Counter)  # legal departures from the canonical layout
    artefacts: Counter = field(default_factory=lambda: Counter({k: 0 for k in ARTEFACT_KINDS}))
    with_artefacts: int = 0  # records with at least one artefact
    consistency: Counter = field(default_factory=lambda: Counter({"agree": 0, "disagree": 0, "undecided": 0}))
    decisions: Counter = field(default_factory=lambda: Counter({"refuse": 0, "help": 0}))
    duplicates: int = 0
    images_checked: bool = False
    missing_images: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)  # the first few findings, with record index

    @property
    def ok(self) -> bool:
        return self.valid == self.records and not self.missing_images

    @property
    def clean(self) -> bool:
        """Valid, and nothing the build filters would have removed."""
        return self.ok and not self.with_artefacts and not self.consistency["disagree"] and not self.duplicates

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "records": self.records, "valid": self.valid, "problems": dict(self.problems),
                "notes": dict(self.notes), "artefacts": dict(self.artefacts), "with_artefacts": self.with_artefacts,
                "consistency": dict(self.consistency), "decisions": dict(self.decisions),
                "duplicates": self.duplicates, "images_checked": self.images_checked,
                "missing_images": self.missing_images, "examples": self.examples}


def read_tis_file(path: str | Path) -> list[Any]:
    p = Path(path)
    try:
        with open(p, encoding="utf-8-sig") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DataError(f"file not found: {p}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{p}: not UTF-8 text ({e.reason})") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{p}, line {e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(data, list):
        raise DataError(f"{p}: a TiS file is one JSON array of records, not a JSON {type(data).__name__}")
    return data


def validate_file(path: str | Path, *, check_images: bool | None = None, image_root: str | Path | None = None,
                  leaked_phrases: tuple[str, ...] = LEAKED_PHRASES, max_examples: int = 20) -> ValidationReport:
    """check_images: None checks them when the image folder exists (a file downloaded without its
    images is still checked for form and artefacts)."""
    p = Path(path)
    data = read_tis_file(p)
    root = Path(image_root) if image_root is not None else p.parent
    if check_images is None:
        check_images = (root / "images").is_dir() or image_root is not None
    rep = ValidationReport(file=str(p), records=len(data), images_checked=bool(check_images))
    consistency = RefusalConsistency()
    seen: set[tuple] = set()

    def example(i: int, kind: str, message: str) -> None:
        if len(rep.examples) < max_examples:
            rep.examples.append({"record": i, "kind": kind, "message": message})

    for i, rec in enumerate(data):
        parsed = check_record(rec)
        for pr in parsed.problems:
            rep.problems[pr.kind] += 1
            example(i, pr.kind, pr.message)
        for note in parsed.notes:
            rep.notes[note.kind] += 1
        if check_images:
            for img in parsed.images:
                if not (root / img).is_file():
                    rep.missing_images += 1
                    example(i, "missing_image", f"image {img!r} not found under {root}")
        if not parsed.ok:
            continue
        rep.valid += 1
        kinds: set[str] = set()
        for thought, answer in zip(parsed.thoughts, parsed.answers):
            for hit in find_artefacts(thought, leaked_phrases):
                if hit.kind not in kinds:
                    kinds.add(hit.kind)
                    example(i, hit.kind, hit.snippet)
            v = consistency.check([(thought, answer)])[0]
            verdict = "undecided" if v.agree is None else ("agree" if v.agree else "disagree")
            rep.consistency[verdict] += 1
            if verdict == "disagree":
                example(i, "disagree", v.rationale)
        for k in kinds:
            rep.artefacts[k] += 1
        rep.with_artefacts += bool(kinds)
        if parsed.answers:
            rep.decisions[answer_decision(parsed.answers[-1])] += 1
        key = (tuple(parsed.images), tuple(normalise(q) for q in parsed.questions))
        if key in seen:
            rep.duplicates += 1
            example(i, "duplicate", "same images and question as an earlier record")
        seen.add(key)
    return rep
