"""Plugins built from a run config's specs: cards, datasets, attacks, judges and backends.

Options were checked against each plugin's declared `PluginOptions` when the config was read
(`validate.py`), so building one here is a plain call; a constructor that still refuses its
arguments is named with its kind and name.
"""
from __future__ import annotations

import platform
from typing import Any

from .. import __version__, registry
from ..attacks.base import Attack
from ..config import AttackSpec, DatasetSpec, JudgeSpec, ModelSpec, RunConfig
from ..datasets.base import Dataset
from ..errors import ConfigError
from ..judges.base import Judge
from ..models.base import Backend
from ..models.cards import CardCatalog, ModelCard


def catalog_for(cfg: RunConfig) -> CardCatalog:
    """The built-in model cards and those of the config's `cards:` files."""
    cat = CardCatalog.builtin()
    for path in cfg.cards:
        cat.extend_from(path)
    return cat


def _build(kind: str, name: str, kwargs: dict[str, Any], what: str) -> Any:
    cls = registry.get(kind, name)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{kind} {name!r}: bad {what} {sorted(k for k in kwargs if k != 'path')}: {e}") from None


def build_dataset(spec: DatasetSpec) -> Dataset:
    return _build("dataset", spec.name, {"path": spec.path, **spec.options}, "options")


def build_attack(spec: AttackSpec) -> Attack:
    return _build("attack", spec.name, spec.params, "params")


def build_judge(spec: JudgeSpec) -> Judge:
    return _build("judge", spec.name, spec.params, "params")


def build_backend(spec: ModelSpec, card: ModelCard) -> Backend:
    cls = registry.get("backend", spec.backend)
    return cls(card, spec.generation, spec.options)


def environment() -> dict[str, Any]:
    """What ran the run (versions of the packages that decide its outputs), stored with it."""
    import importlib.metadata as md

    versions = {}
    for pkg in ("safemlrm", "torch", "transformers", "pydantic", "aiohttp", "vllm", "ray"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return {"safemlrm": __version__, "python": platform.python_version(), "platform": platform.platform(),
            "machine": platform.machine(), "packages": versions}
