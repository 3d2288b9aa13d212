"""K samples and sweeps: model entries that expand into several, all in one run.

Two keys of a `models:` entry, read before the config is validated:

    models:
      - card: r1-onevision-7b
        sweep: {think_budget: [0, 64, 256, 1024]}   # one model entry per value
      - card: mm-eureka-qwen-7b
        samples: 4                                  # K completions of every probe
        generation: {temperature: 0.7}
      - card: qwen2.5-vl-7b                         # the base: unswept, a flat reference line

A swept entry becomes one entry per value, named `<name>@<axis>=<value>` with the value set in its
`generation`; `samples: K` becomes K entries named `<name>#<k>`, sample k drawn with seed `seed + k`
(and do_sample on). Each entry is an ordinary model of the run, so each sample and each swept value
is its own completion: cached, resumed, and judged like any other. `variant(name)` reads a name back.
Axes: any generation setting (think_budget, think_min_tokens, temperature, max_new_tokens, ...).
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .records import GenerationSettings

SWEEP_AXES = tuple(GenerationSettings.model_fields)
_NAME = re.compile(r"^(?P<base>.*?)(?:@(?P<axis>[a-z_]+)=(?P<value>[^#]*))?(?:#(?P<sample>\d+))?$")


@dataclass(frozen=True)
class Variant:
    model: str  # the entry's name as configured (card or alias)
    axis: str | None = None
    value: str | None = None  # as written in the name
    sample: int | None = None


def variant(name: str) -> Variant:
    m = _NAME.match(name)
    assert m is not None  # the pattern matches any string
    sample = m.group("sample")
    return Variant(m.group("base"), m.group("axis"), m.group("value"), int(sample) if sample is not None else None)


def _where(source: str, i: int, key: str) -> str:
    return f"{source}: key 'models.{i}.{key}'"


def _expand_sweep(entry: dict[str, Any], i: int, source: str) -> list[dict[str, Any]]:
    sweep = entry.pop("sweep", None)
    if sweep is None:
        return [entry]
    if not isinstance(sweep, dict) or len(sweep) != 1:
        raise ConfigError(f"{_where(source, i, 'sweep')}: a sweep is one axis with its values, "
                          f"e.g. sweep: {{think_budget: [0, 64, 256]}}")
    (axis, values), = sweep.items()
    if axis not in SWEEP_AXES:
        raise ConfigError(f"{_where(source, i, 'sweep')}: unknown axis {axis!r}; axes: {', '.join(SWEEP_AXES)}")
    if not isinstance(values, list) or not values or len(set(map(str, values))) != len(values):
        raise ConfigError(f"{_where(source, i, 'sweep.' + axis)}: a list of distinct values")
    name = entry.get("alias") or entry.get("card")
    out = []
    for v in values:
        e = copy.deepcopy(entry)
        e["alias"] = f"{name}@{axis}={v}"
        e["generation"] = {**(e.get("generation") or {}), axis: v}
        out.append(e)
    return out


def _expand_samples(entry: dict[str, Any], i: int, source: str) -> list[dict[str, Any]]:
    k = entry.pop("samples", None)
    if k is None:
        return [entry]
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"{_where(source, i, 'samples')}: a whole number of samples, at least 1")
    gen = dict(entry.get("generation") or {})
    if k > 1 and not (isinstance(gen.get("temperature"), (int, float)) and gen["temperature"] > 0):
        raise ConfigError(f"{_where(source, i, 'samples')}: {k} samples need generation.temperature > 0 "
                          f"(greedy decoding gives the same completion every time)")
    name = entry.get("alias") or entry.get("card")
    out = []
    for s in range(k):
        e = copy.deepcopy(entry)
        e["alias"] = f"{name}#{s}"
        e["generation"] = {**gen, "seed": int(gen.get("seed", 0)) + s, "do_sample": True}
        out.append(e)
    return out


def expand_models(data: dict[str, Any], source: str) -> dict[str, Any]:
    """The config with swept and sampled model entries expanded (a new dict; `data` is not changed)."""
    models = data.get("models")
    if not isinstance(models, list) or not any(isinstance(m, dict) and ("sweep" in m or "samples" in m)
                                               for m in models):
        return data
    out = []
    for i, entry in enumerate(models):
        if not isinstance(entry, dict):
            out.append(entry)
            continue
        for e in _expand_sweep(copy.deepcopy(entry), i, source):
            out.extend(_expand_samples(e, i, source))
    return {**data, "models": out}
