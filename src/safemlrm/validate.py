"""Check a run config against what is installed, before anything is written.

Every model card, backend, dataset, attack and judge the config names must exist. A name that does
not stops the run here, with the config file, the key and the close matches, and before a run
directory is created (so fixing the typo never meets "made by a different config").
"""
from __future__ import annotations

from . import registry
from .config import RunConfig
from .errors import UnknownName
from .models.cards import CardCatalog
from .options import check_options


def check_names(cfg: RunConfig, catalog: CardCatalog) -> None:
    where = cfg.source or "the run config"
    wanted = [(f"models.{i}.card", "card", m.card) for i, m in enumerate(cfg.models)]
    wanted += [(f"models.{i}.backend", "backend", m.backend) for i, m in enumerate(cfg.models)]
    wanted += [(f"datasets.{i}.name", "dataset", d.name) for i, d in enumerate(cfg.datasets)]
    wanted += [(f"attacks.{i}.name", "attack", a.name) for i, a in enumerate(cfg.attacks)]
    wanted += [(f"judges.{i}.name", "judge", j.name) for i, j in enumerate(cfg.judges)]
    for key, kind, name in wanted:
        try:
            if kind == "card":
                catalog.get(name)
            else:
                registry.get(kind, name)
        except UnknownName as e:
            raise UnknownName(f"{where}: key '{key}': {e}") from None
    # each plugin's options against its declaration, before anything is built or written
    given = [(f"models.{i}.options", "backend", m.backend, m.options) for i, m in enumerate(cfg.models)]
    given += [(f"datasets.{i}.options", "dataset", d.name, d.options) for i, d in enumerate(cfg.datasets)]
    given += [(f"attacks.{i}.params", "attack", a.name, a.params) for i, a in enumerate(cfg.attacks)]
    given += [(f"judges.{i}.params", "judge", j.name, j.params) for i, j in enumerate(cfg.judges)]
    for key, kind, name, values in given:
        check_options(kind, name, registry.get(kind, name), values, where=where, key=key)
