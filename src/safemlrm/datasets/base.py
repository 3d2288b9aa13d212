"""The dataset contract: yield Samples, declare licence, scenarios and modalities.

Loaders stream: `samples()` is a generator, so a large benchmark never sits in memory whole.
Scenario filters and seeded sample limits are applied by `select()`, the same for every dataset.
"""
from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from ..errors import DataError, did_you_mean
from ..records import Modality, Sample


class Dataset:
    registered_name: ClassVar[str]
    license: ClassVar[str] = "unknown"
    # class defaults a loader may narrow per instance (its options choose the images or the file's topics)
    modalities: frozenset[Modality] = frozenset({Modality.TEXT})
    scenarios: tuple[str, ...] = ()  # known scenario names; empty when open-ended

    def __init__(self, path: str | Path | None = None, **options: Any):
        self.path = Path(path) if path is not None else None
        self.options = options

    def samples(self) -> Iterator[Sample]:
        raise NotImplementedError


def select(ds: Dataset, scenarios: list[str] | None = None, limit: int | None = None,
           seed: int = 0) -> Iterator[Sample]:
    """Filter by scenario, then keep `limit` units chosen with a fixed seed (in dataset order).

    A unit is one sample, or one group of samples sharing `meta["pair_id"]` (MSSBench's safe and
    unsafe halves), so a limit never splits a pair. Pairs are assumed to be adjacent in the data.
    """
    if scenarios and ds.scenarios:
        unknown = [s for s in scenarios if s not in ds.scenarios]
        if unknown:
            raise DataError(f"dataset {ds.registered_name!r} has no scenario {unknown[0]!r}."
                            f"{did_you_mean(unknown[0], ds.scenarios)} Scenarios: {', '.join(ds.scenarios)}")
    wanted = set(scenarios or ())
    it = (s for s in ds.samples() if not wanted or s.scenario in wanted)
    if limit is None:
        yield from it
        return
    # Reservoir sampling over units keeps memory at `limit` units however large the dataset.
    rng = random.Random(seed)
    reservoir: list[tuple[int, list[Sample]]] = []
    for i, unit in enumerate(_units(it)):
        if i < limit:
            reservoir.append((i, unit))
        else:
            j = rng.randint(0, i)
            if j < limit:
                reservoir[j] = (i, unit)
    for _, unit in sorted(reservoir, key=lambda t: t[0]):
        yield from unit


def _units(samples: Iterator[Sample]) -> Iterator[list[Sample]]:
    group: list[Sample] = []
    for s in samples:
        pair = s.meta.get("pair_id")
        if group and (pair is None or group[-1].meta.get("pair_id") != pair):
            yield group
            group = []
        group.append(s)
    if group:
        yield group
