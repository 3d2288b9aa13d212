"""Content hashes: every record is keyed by a hash of what made it."""
from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace, so equal content hashes equally."""
    if hasattr(obj, "model_dump"):
        obj = obj.model_dump(mode="json")
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_hash(*parts: Any, length: int = 32, prefix: Any = None) -> str:
    """`prefix`: a `hash_prefix` of the leading parts, when many hashes share them (the same key as
    passing those parts first)."""
    h = prefix.copy() if prefix is not None else hashlib.sha256()
    _feed(h, parts)
    return h.hexdigest()[:length]


def hash_prefix(*parts: Any) -> Any:
    h = hashlib.sha256()
    _feed(h, parts)
    return h


def _feed(h: Any, parts: tuple[Any, ...]) -> None:
    for part in parts:
        data = part if isinstance(part, bytes) else canonical_json(part).encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)


def bytes_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
