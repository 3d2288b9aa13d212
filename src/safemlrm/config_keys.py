"""Errors found while a config entry is built or used name the file and the entry's key path.

A dataset's subset, a judge's variant, a backend's options, an attack's text field: each plugin
checks its own inputs and says what is wrong, but only the run knows which file and which entry
they came from. `at_key` adds that: `run.yaml: key 'judges.1.params': judge keyword: variant ...`.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .errors import ConfigError, DataError, SafeMLRMError


@contextmanager
def at_key(source: str | None, key: str) -> Iterator[None]:
    try:
        yield
    except (ConfigError, DataError) as e:
        msg = str(e)
        if source and not msg.startswith(f"{source}:"):
            raise type(e)(f"{source}: key '{key}': {msg}") from None
        raise
    except SafeMLRMError:
        raise
