"""Attacks are shown in the order a run's config lists them (the baseline, e.g. `vanilla`, first),
never alphabetically: tables and figures read as the study was designed."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd


def configured_attacks(configs: Iterable[dict[str, Any] | None]) -> list[str]:
    """Attack names in config order, over several runs (first seen first)."""
    names: dict[str, None] = {}
    for cfg in configs:
        for a in (cfg or {}).get("attacks") or []:
            name = a.get("name") if isinstance(a, dict) else None
            if name:
                names.setdefault(name, None)
    return list(names)


def in_configured_order(df: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """`df` with its rows stably reordered so attacks follow `order` (others after, as they were)."""
    if df.empty or "attack" not in df.columns:
        return df
    pos = {a: i for i, a in enumerate(order)}
    key = df["attack"].map(lambda a: pos.get(a, len(pos)))
    return df.iloc[key.argsort(kind="stable").to_numpy()]
