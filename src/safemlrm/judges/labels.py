"""Human-labelled items for validating a judge (`safemlrm judge-eval`).

The project's own form is JSON Lines, one item a line:

    {"id": "r1", "text": "...", "channel": "reasoning", "label": "unsafe", "query": "...", "image": "img/1.png"}

`text` (the channel's text) and `label` are required; `label` is `unsafe` / `safe` (also 1 / 0,
true / false, harmful / harmless); `channel` is reasoning, answer or full (default full); `query`
is the request the text answers (default empty); `image` a file relative to the labels file; `id`
defaults to the line number.

Two published sets are read as they are distributed (their own field names):

* ReasoningShield (a reasoning-trace safety set): `query`, `model_thinking` (the trace) and a risk
  level 0 safe / 0.5 potentially harmful / 1 harmful in `human_majority` (read first, when present)
  or `final_judgment`. Channel `reasoning`. 0.5 counts as unsafe unless `--borderline safe`.
* Qwen3GuardTest, split `thinking` (thinking.jsonl): `message` (user and assistant turns; the
  assistant's content holds its thinking and answer), `label` Safe / Unsafe, `source` (the model).
  Channel `full`.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ..errors import ConfigError
from ..records import Channel

FORMATS = ("auto", "safemlrm", "reasoningshield", "qwen3guardtest")
_TRUE = {"unsafe", "harmful", "1", "true", "yes", "1.0"}
_FALSE = {"safe", "harmless", "0", "false", "no", "0.0"}


class LabelledItem(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    text: str
    channel: Channel
    unsafe: bool  # the human label
    query: str = ""
    image: str | None = None  # a file path, resolved against the labels file
    source: str = ""


def _unsafe(value: Any, where: str, borderline: Literal["unsafe", "safe"]) -> bool:
    s = str(value).strip().lower()
    if s in ("0.5", "potentially harmful", "controversial"):
        return borderline == "unsafe"
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise ConfigError(f"{where}: label {value!r} is not unsafe/safe (or 1/0, true/false)")


def _rows(path: Path) -> list[tuple[str, dict[str, Any]]]:
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            return [(f"{path}:{i + 2}", row) for i, row in enumerate(csv.DictReader(f))]
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{n}: not JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{path}:{n}: each line must be a JSON object")
        rows.append((f"{path}:{n}", row))
    return rows


def detect(row: dict[str, Any]) -> str:
    if "model_thinking" in row:
        return "reasoningshield"
    if "message" in row and "label" in row:
        return "qwen3guardtest"
    return "safemlrm"


def read_labels(path: str | Path, fmt: str = "auto", borderline: Literal["unsafe", "safe"] = "unsafe"
                ) -> list[LabelledItem]:
    path = Path(path)
    if fmt not in FORMATS:
        raise ConfigError(f"labels format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if not path.is_file():
        raise ConfigError(f"labels file {path} not found")
    rows = _rows(path)
    if not rows:
        raise ConfigError(f"labels file {path} holds no items")
    kind = detect(rows[0][1]) if fmt == "auto" else fmt
    read = {"safemlrm": _own, "reasoningshield": _reasoningshield, "qwen3guardtest": _qwen3guardtest}[kind]
    items = [read(where, row, i, path, borderline) for i, (where, row) in enumerate(rows, 1)]
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ConfigError(f"labels file {path}: id {dup!r} appears more than once")
    return items


def _need(where: str, row: dict[str, Any], key: str) -> Any:
    if row.get(key) in (None, ""):
        raise ConfigError(f"{where}: missing {key!r}")
    return row[key]


def _own(where, row, i, path, borderline) -> LabelledItem:
    unknown = set(row) - {"id", "text", "channel", "label", "query", "image", "source"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; keys are id, text, channel, "
                          f"label, query, image, source")
    channel = row.get("channel") or "full"
    if channel not in {c.value for c in Channel}:
        raise ConfigError(f"{where}: channel {channel!r} is not reasoning, answer or full")
    image = row.get("image")
    if image:
        image = str((path.parent / image).resolve())
        if not Path(image).is_file():
            raise ConfigError(f"{where}: image {row['image']} not found next to {path}")
    return LabelledItem(id=str(row.get("id") or i), text=str(_need(where, row, "text")), channel=Channel(channel),
                        unsafe=_unsafe(_need(where, row, "label"), where, borderline),
                        query=str(row.get("query") or ""), image=image, source=str(row.get("source") or ""))


def _reasoningshield(where, row, i, path, borderline) -> LabelledItem:
    level = row.get("human_majority", row.get("final_judgment"))
    if level in (None, ""):
        raise ConfigError(f"{where}: missing 'human_majority' or 'final_judgment' (the risk level)")
    return LabelledItem(id=str(row.get("index") or row.get("id") or i), text=str(_need(where, row, "model_thinking")),
                        channel=Channel.REASONING, unsafe=_unsafe(level, where, borderline),
                        query=str(row.get("query") or ""), source=str(row.get("model_name") or ""))


def _qwen3guardtest(where, row, i, path, borderline) -> LabelledItem:
    message = row.get("message")
    if isinstance(message, str):  # a CSV export holds the turns as JSON text
        try:
            message = json.loads(message)
        except json.JSONDecodeError:
            raise ConfigError(f"{where}: 'message' is not a list of turns") from None
    if not isinstance(message, list):
        raise ConfigError(f"{where}: 'message' is not a list of turns")
    turn = {m.get("role"): m.get("content") for m in message if isinstance(m, dict)}
    if not turn.get("assistant"):
        raise ConfigError(f"{where}: 'message' has no assistant turn")
    return LabelledItem(id=str(row.get("id") or i), text=str(turn["assistant"]), channel=Channel.FULL,
                        unsafe=_unsafe(_need(where, row, "label"), where, borderline),
                        query=str(turn.get("user") or ""), source=str(row.get("source") or ""))
