"""Generated placeholder items for benchmarks and scale tests: `dataset: {name: synthetic}`.

    datasets:
      - name: synthetic
        options: {size: 100000, scenarios: 4, words: 12}

Items are made on the fly (nothing is read or kept), so a run of any size can be measured without
data files. The text is neutral filler, not a harmful request: these runs measure the machinery,
not a model's safety.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import Field

from ..options import PluginOptions, check_options
from ..records import Modality, Sample
from ..registry import register
from .base import Dataset

_WORDS = ("describe", "the", "steps", "of", "a", "routine", "task", "in", "plain", "words", "for", "a",
          "general", "reader", "with", "short", "numbered", "points")



@register("dataset", "synthetic")
class Synthetic(Dataset):
    """Generated filler items (benchmarks, scale tests): options size, scenarios, words."""

    license = "CC0-1.0"
    modalities = frozenset({Modality.TEXT})

    class Options(PluginOptions):
        size: int = Field(1000, ge=1, description="items")
        scenarios: int = Field(4, ge=1, description="scenarios the items cycle through")
        words: int = Field(12, ge=1, description="words per item")

    def __init__(self, path=None, **options: Any):
        o = check_options("dataset", "synthetic", type(self), options, where="dataset synthetic", key="options")
        super().__init__(path)
        self.size, self.n_scenarios, self.words = o.size, o.scenarios, o.words

    def samples(self) -> Iterator[Sample]:
        for i in range(self.size):
            text = " ".join(_WORDS[(i + k) % len(_WORDS)] for k in range(self.words))
            yield Sample(dataset="synthetic", id=f"{i:07d}", scenario=f"S{i % self.n_scenarios}",
                         intent=f"{text} (item {i})", fields={"question": f"{text} (item {i})"},
                         license=self.license)
