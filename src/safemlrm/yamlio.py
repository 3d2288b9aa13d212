"""The one YAML reader for configs, cards and templates: safe, and strict about duplicate keys.

PyYAML keeps the last of two equal keys without a word, so a config that sets `limit:` twice runs
with a value its author may not have meant. Here a duplicate is an error naming the file, the line
and the key's path.
"""
from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError

from .errors import ConfigError


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int, first: int):
        super().__init__(key)
        self.key, self.line, self.first = key, line, first


class StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a mapping holding one key twice."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            try:
                key = self.construct_object(key_node, deep=True)
                hash(key)
            except (TypeError, ConstructorError):
                continue  # the base class reports unhashable keys itself
            if key in seen and key != "<<":
                raise _DuplicateKey(key, key_node.start_mark.line + 1, seen[key])
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def loads(text: str, source: str) -> Any:
    """Parsed YAML; a ConfigError naming `source` (and the line) for bad YAML or a duplicate key."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - StrictLoader is a SafeLoader
    except _DuplicateKey as e:
        raise ConfigError(f"{source}: line {e.line}: key {e.key!r} appears twice (first on line {e.first}); "
                          f"keep one") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source}: not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
