"""Small file helpers shared by the store, the attacks and the loaders.

File modes: everything a run writes (store, blobs, summary, export, report, TiS sets) holds harmful
text, so it is owner-only by default: `owner_only()` sets the process umask to 077 when the command
starts (files 0600, folders 0700). `SAFEMLRM_UMASK=022` (any octal umask) opts out, e.g. for a
shared group folder.
"""
from __future__ import annotations

import errno
import hashlib
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from .errors import ConfigError, WriteError

DEFAULT_UMASK = 0o077


def owner_only() -> int:
    """Apply the one file-mode rule (see the module doc); returns the umask now in force."""
    raw = os.environ.get("SAFEMLRM_UMASK")
    try:
        mask = DEFAULT_UMASK if raw in (None, "") else int(raw, 8)
    except ValueError:
        raise ConfigError(f"SAFEMLRM_UMASK must be an octal umask such as 077 or 022, not {raw!r}") from None
    os.umask(mask & 0o777)
    return mask


def write_error(path: object, exc: BaseException) -> WriteError:
    """An OSError or SQLite failure as the error the user sees, naming the path they gave."""
    if isinstance(exc, OSError):
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        reason = exc.strerror or str(exc)
    else:  # sqlite3: "database or disk is full", "attempt to write a readonly database", ...
        reason = str(exc)
        full = getattr(exc, "sqlite_errorcode", None) == 13 or "disk is full" in reason  # SQLITE_FULL
    return WriteError(path, reason, disk_full=full)


@contextmanager
def write_errors(path: object) -> Iterator[None]:
    """Writes inside fail as a WriteError naming `path` (not a hidden temporary next to it)."""
    try:
        yield
    except WriteError:
        raise
    except (OSError, sqlite3.Error) as e:
        if isinstance(e, sqlite3.Error) and not isinstance(e, sqlite3.OperationalError):
            raise
        raise write_error(path, e) from e


def write_atomic(path: Path, data: bytes) -> None:
    """Write-then-rename: a kill mid-write never leaves a half file under the final name."""
    with write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@lru_cache(maxsize=64)
def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
