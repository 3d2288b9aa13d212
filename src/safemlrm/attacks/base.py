"""The attack contract: turn one Sample into one Probe (the messages a model is sent).

An attack declares the modalities its probes carry and the sample fields it reads. Images it
makes are put into the run's blob store by content hash, with the parameters that made them
recorded in `Probe.attack_params`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..blobs import BlobStore
from ..errors import DataError, did_you_mean
from ..records import Modality, Probe, Sample


@dataclass
class AttackContext:
    blobs: BlobStore
    cache_dir: Path  # where rendered images may be cached between runs


class Attack:
    registered_name: ClassVar[str]
    produces: ClassVar[frozenset[Modality]] = frozenset({Modality.TEXT})

    def __init__(self, **params: Any):
        self.params = params

    def build(self, sample: Sample, ctx: AttackContext) -> Probe:
        raise NotImplementedError

    def field(self, sample: Sample, name: str) -> str:
        """A text field of the sample, with an error that names the dataset, item and field."""
        try:
            return sample.fields[name]
        except KeyError:
            raise DataError(
                f"attack {self.registered_name!r} needs text field {name!r}, which item {sample.id!r} of "
                f"dataset {sample.dataset!r} lacks (it has: {', '.join(sorted(sample.fields)) or 'none'})."
                f"{did_you_mean(name, sample.fields)}"
            ) from None
