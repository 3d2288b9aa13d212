"""MSSBench (Zhou et al., 2024): multimodal situational safety. Each query comes with two images,
one where doing it is safe and one where it is not; accuracy averages the two halves, so the
halves stay paired.

Layout of the download (Hub kzhou35/mssbench; github.com/eric-ai-lab/MSSBench reads it so):

    <path>/combine.json    {"chat": [...], "embodied": [...]}   (combined.json in the Hub snapshot; either
                           name is read, at the root or in data/, or `path` is the file itself)
    <path>/chat/<safe_image_path>, <path>/chat/<unsafe_image_path>
    <path>/embodied/<safe>, <path>/embodied/<unsafe>

Chat entries: `safe_image_path, unsafe_image_path, intent, unsafe_image (a description), Type,
queries` (a list). Embodied entries: `task, category, safe_instructions, unsafe_instructions`
(paired lists; also `safe_instruction`/`unsafe_instruction`), `safe, unsafe` (image paths).

Each query (chat) or instruction pair (embodied) gives two Samples, the safe side first, sharing
`meta["pair_id"]`; `meta["side"]` is "safe" or "unsafe" and `meta["category"]` the entry's Type or
category. Sample ids are `<pair_id>-safe` / `<pair_id>-unsafe`. The scenario is the task, chat or
embodied.

Intent: the query (chat; the same text on both sides) or the side's instruction (embodied).
MSSBench sends its own instruction prompt before the query; it is not bundled here: pass it as
the `direct` attack's `prefix` to reproduce its setting.

Options:
  task: both (default) | chat | embodied
  hub: true loads kzhou35/mssbench with `datasets`; unverified: that the Hub copy loads as a table
    (either one row holding `chat`/`embodied` lists, or one row per chat entry); image paths in it
    are read from `image_root` (<image_root>/chat/..., <image_root>/embodied/...).
  plus the common and Hub options.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..records import Sample
from ..registry import register
from .io import BenchmarkDataset, ItemError, one_of, read_json, resolve_file, text_fields, text_of

TASKS = ("chat", "embodied")
FILES = ("combine.json", "combined.json")  # the name MSSBench's scripts read; the name in the Hub snapshot


def _as_list(rec: dict, name: str, where: str) -> list[str]:
    v = rec.get(name)
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x.strip() for x in v):
        raise ItemError(f"{where}: field {name!r} is missing or not a list of texts")
    return v


@register("dataset", "mssbench")
class MSSBench(BenchmarkDataset):
    license = "MIT"
    scenarios = TASKS
    hub_id = "kzhou35/mssbench"
    extra_options = ("task",)

    def __init__(self, path: str | Path | None = None, **options: Any):
        super().__init__(path, **options)
        task = one_of(self.name, "task", options.get("task", "both"), ("both",) + TASKS)
        self.tasks = TASKS if task == "both" else (task,)

    def _entries(self) -> Iterator[tuple[str, str, str, Any, Path | None]]:
        """(task, source, item label, entry, image folder of that task)."""
        if self.hub is not None:
            root = self.image_root
            for source, label, row in self.hub_rows():
                if any(t in row for t in TASKS):  # the whole file as one row
                    for task in self.tasks:
                        for i, entry in enumerate(row.get(task) or []):
                            yield task, source, f"{label}, {task}[{i}]", entry, (root / task) if root else None
                elif "chat" in self.tasks:
                    yield "chat", source, label, row, (root / "chat") if root else None
            return
        assert self.path is not None
        f = resolve_file(self.path, self.name, FILES)
        data = read_json(f)
        if not isinstance(data, dict) or not any(t in data for t in TASKS):
            raise DataError(f"{f}: expected a JSON object with the lists 'chat' and 'embodied'")
        root = self.image_root or f.parent
        for task in self.tasks:
            entries = data.get(task)
            if not isinstance(entries, list):
                raise DataError(f"{f}: missing list {task!r} (set task: to the other one to load only that)")
            for i, entry in enumerate(entries):
                yield task, str(f), f"{task}[{i}]", entry, root / task

    def _samples(self) -> Iterator[Sample]:
        counters = {t: 0 for t in TASKS}
        for task, source, label, entry, images in self._entries():
            where = f"{source}, {label}"
            index = counters[task]
            counters[task] += 1
            try:
                if not isinstance(entry, dict):
                    raise ItemError(f"{where}: the entry is a {type(entry).__name__}, not an object")
                pairs = list(self._pairs(task, entry, where, images))
            except ItemError as e:
                self.item_error(e)
                continue
            extra = text_fields(entry)
            for j, (safe_text, unsafe_text, safe_img, unsafe_img, category) in enumerate(pairs):
                pair_id = f"{task}-{index}-{j}"
                for side, text, img in (("safe", safe_text, safe_img), ("unsafe", unsafe_text, unsafe_img)):
                    key = "query" if task == "chat" else "instruction"
                    fields = {**extra, key: text}
                    yield Sample(dataset=self.registered_name, id=f"{pair_id}-{side}", scenario=task, intent=text,
                                 fields=fields, images={"image": img}, license=self.sample_license,
                                 meta={"pair_id": pair_id, "side": side, "category": category, "task": task,
                                       "entry": index, "prompt_field": key})

    def _pairs(self, task: str, entry: dict, where: str, images: Path | None):
        if task == "chat":
            queries = _as_list(entry, "queries", where)
            safe = self.image(text_of(entry, "safe_image_path", where), images, where, "safe_image_path")
            unsafe = self.image(text_of(entry, "unsafe_image_path", where), images, where, "unsafe_image_path")
            category = text_of(entry, "Type", where, required=False) or ""
            return [(q, q, safe, unsafe, category) for q in queries]
        safe_i = entry.get("safe_instructions") or entry.get("safe_instruction")
        unsafe_i = entry.get("unsafe_instructions") or entry.get("unsafe_instruction")
        if not safe_i or not unsafe_i:
            missing = "safe_instructions" if not safe_i else "unsafe_instructions"
            raise ItemError(f"{where}: field {missing!r} is missing or empty")
        safe_i = [safe_i] if isinstance(safe_i, str) else list(safe_i)
        unsafe_i = [unsafe_i] if isinstance(unsafe_i, str) else list(unsafe_i)
        if len(safe_i) != len(unsafe_i):
            raise ItemError(f"{where}: {len(safe_i)} safe instructions but {len(unsafe_i)} unsafe ones; they pair up")
        safe = self.image(text_of(entry, "safe", where), images, where, "safe")
        unsafe = self.image(text_of(entry, "unsafe", where), images, where, "unsafe")
        category = text_of(entry, "category", where, required=False) or ""
        return [(s, u, safe, unsafe, category) for s, u in zip(safe_i, unsafe_i)]
