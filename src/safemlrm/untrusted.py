"""Untrusted text: how safemlrm stores, shows and exports what it did not write.

Model output, server error bodies and benchmark items are data. This module holds the few rules
that keep them inert everywhere they go (docs/reliability.md states the policy):

* Storage is exact. A Python string may hold lone surrogates (a server's JSON said "\\ud83d", or
  bytes that were not UTF-8 were decoded with `surrogateescape`). SQLite and pydantic's JSON refuse
  them, so record bodies are written as JSON whose surrogates are `\\uXXXX` escapes and read back
  to the identical string (`dumps_record` / `loads_record`).
* Exports are inert: JSONL escapes surrogates the same way (exact), CSV and Parquet write them as
  the visible text `\\udcxx`; CSV cells that a spreadsheet would run as a formula get a leading `'`.
* Markdown and terminal output escape HTML, table pipes, control characters and Rich markup.
"""
from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

M = TypeVar("M", bound=BaseModel)

_SURROGATE = re.compile("[\ud800-\udfff]")
# C0 and C1 controls except tab and newline, DEL, and the bidi overrides that reorder what a
# terminal or editor shows (a reader must see the bytes in the order they are stored).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# --- exact storage ------------------------------------------------------------------------------


def escape_surrogates(json_text: str) -> str:
    """JSON text with every lone surrogate written as a `\\uXXXX` escape (valid UTF-8, same value).

    A Python str holds an astral character as one code point, so any surrogate in it is lone."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", json_text)


_LINE_BREAKING = re.compile("[\ud800-\udfff\x85\u2028\u2029]")


def jsonl_escape(json_text: str) -> str:
    """One JSON Lines record: lone surrogates escaped (as `escape_surrogates`), and the characters that
    `str.splitlines` and some editors take for line breaks (U+0085, U+2028, U+2029) escaped too, so a
    record is always exactly one line. Still JSON, and json.loads gives the same value back."""
    return _LINE_BREAKING.sub(lambda m: f"\\u{ord(m.group()):04x}", json_text)


def has_surrogates(text: str) -> bool:
    return _SURROGATE.search(text) is not None


def dumps_json(obj: Any) -> str:
    """Compact JSON, non-ASCII kept readable, lone surrogates escaped."""
    return escape_surrogates(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))


def dumps_record(record: BaseModel) -> str:
    """A record's JSON for the store: pydantic's fast path, or the surrogate-safe one when it refuses."""
    try:
        return record.model_dump_json()
    except PydanticSerializationError:
        return dumps_json(record.model_dump(mode="json"))


def loads_record(cls: type[M], body: str) -> M:
    """The inverse of `dumps_record`: pydantic's JSON parser rejects surrogate escapes, json does not."""
    try:
        return cls.model_validate_json(body)
    except ValidationError:
        return cls.model_validate(json.loads(body))


def sql_text(text: str | None) -> str | None:
    """A string for a plain TEXT column (SQLite stores UTF-8 only): surrogates as visible escapes."""
    if text is None or not has_surrogates(text):
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def wire_text(text: str) -> str:
    """Text for a request to a model server: lone surrogates, which UTF-8 cannot carry, become U+FFFD
    (the stored text keeps them; only what is sent is replaced)."""
    return _SURROGATE.sub("\ufffd", text) if has_surrogates(text) else text


def decode_body(data: bytes) -> str:
    """An HTTP body as text: UTF-8, with bytes that are not UTF-8 kept as lone surrogates
    (`surrogateescape`), so `text.encode("utf-8", "surrogateescape")` gives the original bytes back."""
    return data.decode("utf-8", "surrogateescape").removeprefix("\ufeff")


# --- showing and exporting ----------------------------------------------------------------------


def visible(text: str) -> str:
    """Control characters, bidi overrides and lone surrogates as escapes (`\\x1b`, `\\u202e`, `\\udc80`)."""
    text = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
    return sql_text(text) or ""


def printable(text: str) -> str:
    """Text for a Rich console: visible controls, and markup such as `[bold]` shown, not obeyed."""
    from rich.markup import escape

    return escape(visible(text))


def md_cell(value: Any) -> str:
    """One Markdown table cell: HTML escaped (a renderer that allows raw HTML must not run it),
    pipes escaped, newlines flattened, controls visible."""
    text = visible(" ".join(str(value).splitlines()))
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|")


def csv_cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as text: a leading `'` before `=`, `+`, `-`, `@`, tab or CR
    (OWASP's advice against formula injection); non-strings pass through."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def export_text(value: Any) -> Any:
    """A string for an export format that must be valid UTF-8 (CSV, Parquet): surrogates visible."""
    return sql_text(value) if isinstance(value, str) else value
