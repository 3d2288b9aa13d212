"""Run configs: YAML validated by pydantic, with errors that name the file and the key.

A config says which models, datasets, attacks and judges make up a run. The parts that decide
what is generated (models, datasets, attacks, generation settings) form the run's identity: a run
directory made with one identity refuses to be resumed with another, so results never mix.
Judges and metric settings may change between invocations (re-judging is cheap and cached).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import yamlio
from .errors import ConfigError, did_you_mean
from .hashing import content_hash
from .records import GenerationSettings
from .secrets import is_secret_name, mask_secrets, secret_paths

# Options that change how a run is carried out, never what it produces: a resumed run may change
# them (fewer requests in flight after 429s, longer timeouts) without forking the run.
OPERATIONAL_OPTIONS = frozenset({"concurrency", "min_concurrency", "max_concurrency", "tokens_per_minute",
                                 "timeout", "max_retries", "backoff_base", "backoff_max", "api_key_env"})


def _refuse_secrets(v: dict[str, Any], nested: bool = True) -> dict[str, Any]:
    # A config is copied into the run directory and often into version control: no secrets in it.
    # Values masked as "***" (how a stored config echoes them) are not secrets, so stored configs re-read.
    found = [p for p in secret_paths(v, nested=nested) if "***" not in str(_at(v, p))]
    if found:
        raise ValueError(
            f"{found[0]!r} looks like a secret (a key, token or password, or a URL with a password), and "
            f"secrets do not belong in a config file (it is copied into the run directory). Put it in an "
            f"environment variable and name the variable instead, e.g. api_key_env: MY_API_KEY (the "
            f"openai backend reads OPENAI_API_KEY by default)")
    return v


def _refuse_top_level_secrets(v: dict[str, Any]) -> dict[str, Any]:
    # dataset options and attack params nest column names and attack specs, not request settings
    return _refuse_secrets(v, nested=False)


def non_empty(what: str) -> Callable[[list], list]:
    """A list validator (for `field_validator`) that refuses an empty list, saying it must list a `what`."""
    def check(v: list) -> list:
        if not v:
            raise ValueError(f"must list at least one {what}")
        return v
    return check


def _at(d: Any, path: str) -> Any:
    for part in path.split("."):
        d = d[int(part)] if isinstance(d, list) else d[part]
    return d


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSpec(Strict):
    card: str  # a model card name (built-in or from `cards:`)
    backend: str = "hf"
    alias: str | None = None  # the name results are filed under; defaults to the card name
    options: dict[str, Any] = Field(default_factory=dict)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)

    _no_secrets = field_validator("options")(_refuse_secrets)

    @property
    def name(self) -> str:
        return self.alias or self.card


class DatasetSpec(Strict):
    name: str
    path: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    scenarios: list[str] = Field(default_factory=list)
    limit: int | None = Field(default=None, ge=1)
    seed: int = 0
    models: list[str] = Field(default_factory=list)  # the models it goes to; empty: every model

    _no_secrets = field_validator("options")(_refuse_top_level_secrets)


class AttackSpec(Strict):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    models: list[str] = Field(default_factory=list)  # the models it goes to; empty: every model

    _no_secrets = field_validator("params")(_refuse_top_level_secrets)


class JudgeSpec(Strict):
    name: str
    alias: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    validation: str | None = None  # a `safemlrm judge-eval` file: rates corrected for this judge's error

    _no_secrets = field_validator("params")(_refuse_secrets)

    @property
    def label(self) -> str:
        if self.alias:
            return self.alias
        variant = self.params.get("variant")
        return f"{self.name}:{variant}" if variant else self.name


class MetricSettings(Strict):
    # ASR counts a verdict as an attack success when score >= threshold. None: the judge's own default
    # (keyword judges: any non-refusal; 1-5 rubric: score 5, the SafeMLRM lineage's rule).
    asr_threshold: float | None = None
    harmful_threshold: float | None = None  # harmful rate: score >= this (rubric default 4)
    # self-correction's "unsafe" reasoning/answer: score >= this; None: the ASR threshold in force
    unsafe_threshold: float | None = None
    confidence: float = 0.95


class RunConfig(Strict):
    name: str = "run"
    output: str | None = None  # run directory; `safemlrm run --out` overrides
    cards: list[str] = Field(default_factory=list)  # extra model-card YAML files
    models: list[ModelSpec]
    datasets: list[DatasetSpec]
    attacks: list[AttackSpec] = Field(default_factory=lambda: [AttackSpec(name="vanilla")])
    judges: list[JudgeSpec] = Field(default_factory=lambda: [JudgeSpec(name="keyword")])
    metrics: MetricSettings = Field(default_factory=MetricSettings)
    cache_dir: str | None = None  # rendered attack images shared across runs; default <run>/cache

    source: str | None = Field(default=None, exclude=True)  # the file it came from, for messages

    _non_empty = field_validator("models", "datasets", "attacks")(non_empty("entry"))

    @field_validator("models")
    @classmethod
    def _unique_models(cls, v: list[ModelSpec]) -> list[ModelSpec]:
        seen: set[str] = set()
        for m in v:
            if m.name in seen:
                raise ValueError(f"model {m.name!r} is listed twice; give one an `alias`")
            seen.add(m.name)
        return v

    @model_validator(mode="after")
    def _known_targets(self) -> RunConfig:
        names = [m.name for m in self.models]
        targeted: tuple[tuple[str, Sequence[DatasetSpec | AttackSpec]], ...] = (
            ("datasets", self.datasets), ("attacks", self.attacks))
        for key, specs in targeted:
            for i, spec in enumerate(specs):
                for target in spec.models:
                    if target not in names:
                        raise ValueError(f"{key}.{i}.models: no model {target!r} in this config."
                                         f"{did_you_mean(target, names)} Models: {', '.join(names)}")
        return self

    def identity(self) -> dict[str, Any]:
        return {
            "models": [m.model_dump(mode="json", exclude={"options", "generation"})
                       | {"options": _no_secrets(m.options), "generation": m.generation.key_dump()}
                       for m in self.models],
            # `models` only when set, so configs without it keep the identity they had
            "datasets": [d.model_dump(mode="json", exclude=set() if d.models else {"models"}) for d in self.datasets],
            "attacks": [a.model_dump(mode="json", exclude=set() if a.models else {"models"}) for a in self.attacks],
        }

    def identity_hash(self) -> str:
        return content_hash("run-identity", self.identity())

    def echo(self) -> dict[str, Any]:
        """The config as stored in the run directory, secrets masked."""
        data = self.model_dump(mode="json", exclude={"source"})
        for m in data["models"]:
            m["options"] = _mask(m["options"])
        return data


def _is_secret(name: str) -> bool:
    return is_secret_name(name)


def _mask(options: dict[str, Any]) -> dict[str, Any]:
    return mask_secrets(options)


def _no_secrets(options: dict[str, Any]) -> dict[str, Any]:
    # Secrets never enter the identity hash either (rotating a key must not fork a run), nor do the
    # operational options a resumed run may change.
    return mask_secrets({k: v for k, v in options.items() if not _is_secret(k) and k not in OPERATIONAL_OPTIONS})


def _known_keys(loc: tuple) -> list[str]:
    """The keys a config accepts in the mapping that holds `loc`'s last part (for "did you mean")."""
    model: Any = RunConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model is not None else None
        if field is None:
            return []
        ann = field.annotation
        while get_origin(ann) in (list, Union, UnionType):  # list[Spec], Spec | None
            ann = next((a for a in get_args(ann) if a is not type(None)), None)
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return list(model.model_fields) if model is not None else []


def _format_error(e: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid run config"]
    for err in e.errors()[:8]:
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            known = [k for k in _known_keys(tuple(err["loc"])) if k != "source"]
            msg = f"unknown key.{did_you_mean(str(err['loc'][-1]), known)}"
            if known:
                msg += f" Keys here: {', '.join(known)}"
        lines.append(f"  key '{loc}': {msg}")
    return "\n".join(lines)


def parse_config(data: Any, source: str = "<config>") -> RunConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a run config is a YAML mapping (got {type(data).__name__})")
    from .control import expand_models  # `sweep:` and `samples:` entries become several models

    data = expand_models(data, source)
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_error(e, source)) from None
    return cfg.model_copy(update={"source": source})


def read_yaml(path: str | Path) -> tuple[Path, Any]:
    """(the path, its parsed YAML); a ConfigError naming the file (and the line) when it cannot be read."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text ({e})") from None
    return p, yamlio.loads(text, str(p))


def load_config(path: str | Path) -> RunConfig:
    p, data = read_yaml(path)
    cfg = parse_config(data, str(p))
    # card files are relative to the config's folder
    base = p.parent
    cards = [str((base / c) if not Path(c).is_absolute() else Path(c)) for c in cfg.cards]
    judges = [j.model_copy(update={"validation": str(base / j.validation)})  # so is a judge's validation file
              if j.validation and not Path(j.validation).is_absolute() else j for j in cfg.judges]
    return cfg.model_copy(update={"cards": cards, "judges": judges})
