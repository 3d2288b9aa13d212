"""Errors a user can act on. The CLI prints these without a traceback."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class SafeMLRMError(Exception):
    """A problem with the user's input or environment, explained in words."""


class ConfigError(SafeMLRMError):
    pass


class DataError(SafeMLRMError):
    pass


class UnknownName(SafeMLRMError):
    pass


class ModalityMismatch(SafeMLRMError):
    pass


class RunLocked(SafeMLRMError):
    pass


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


DISK_FULL_HINT = "nothing stored so far is lost; free space and run again"


class WriteError(SafeMLRMError):
    """A file the user asked for (or a run's store) cannot be written: named by the user's path."""

    def __init__(self, path: object, reason: str, disk_full: bool = False):
        self.path, self.reason, self.disk_full = path, reason, disk_full
        msg = f"cannot write {path}: {reason}"
        super().__init__(f"{msg}; {DISK_FULL_HINT}" if disk_full else msg)
