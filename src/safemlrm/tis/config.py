"""Configs of `safemlrm tis build` and `safemlrm tis train` (YAML -> pydantic), with errors that name
the file and the key, like run configs."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from ..config import DatasetSpec, ModelSpec, Strict, _format_error, _mask, non_empty, read_yaml
from ..errors import ConfigError
from .filters import ARTEFACT_KINDS, DEDUPE_KEYS, LEAKED_PHRASES
from .policy import DEFAULT_CAPTION_PROMPT, DEFAULT_POLICY, DEFAULT_TEACHER_PROMPT, PLACEHOLDERS, check_template

T = TypeVar("T", bound=BaseModel)


def known_names(known: Sequence[str], what: str, plural: str) -> Callable[[list[str]], list[str]]:
    """A list validator (for `field_validator`) that refuses names not in `known`, listing them."""
    def check(v: list[str]) -> list[str]:
        bad = [k for k in v if k not in known]
        if bad:
            raise ValueError(f"unknown {what}(s) {', '.join(bad)}; {plural}: {', '.join(known)}")
        return v
    return check


class SourceSpec(DatasetSpec):
    """A dataset safemlrm loads, plus where its question and reference answer are."""

    question_field: str | None = None  # default: the dataset's prompt field, else the sample's intent
    # default: meta reference_response / reference_answer (VLGuard, SIUO); name a field for others
    # (e.g. `chosen` for SPA-VL's training split)
    answer_field: str | None = None


class ConsistencySpec(Strict):
    kind: Literal["refusal", "llm"] = "refusal"
    window: int = Field(default=300, ge=20)  # refusal: characters of the answer's opening read
    tail: int = Field(default=400, ge=20)  # refusal: characters of the thought's ending read
    model: ModelSpec | None = None  # llm: the judge model

    @model_validator(mode="after")
    def _need_model(self) -> ConsistencySpec:
        if self.kind == "llm" and self.model is None:
            raise ValueError("kind 'llm' needs a `model` (card, backend, options)")
        return self


class BalanceSpec(Strict):
    max_ratio: float = Field(default=1.0, gt=0)
    seed: int = 0


class FilterSpec(Strict):
    artefacts: list[str] = Field(default_factory=lambda: list(ARTEFACT_KINDS))
    leaked_phrases: list[str] = Field(default_factory=lambda: list(LEAKED_PHRASES))
    extra_leaked_phrases: list[str] = Field(default_factory=list)
    consistency: ConsistencySpec = Field(default_factory=ConsistencySpec)
    undecided: Literal["drop", "keep"] = "drop"
    dedupe: list[str] = Field(default_factory=lambda: ["image_question"])
    balance: BalanceSpec | None = Field(default_factory=BalanceSpec)

    _kinds = field_validator("artefacts")(known_names(ARTEFACT_KINDS, "artefact kind", "kinds"))
    _keys = field_validator("dedupe")(known_names(DEDUPE_KEYS, "de-duplication key", "keys"))


class ExportSpec(Strict):
    images: Literal["copy", "hardlink", "symlink"] = "copy"
    hf: bool = True  # datasets.save_to_disk under export/hf
    parquet: bool = True  # export/tis.parquet (images embedded)


class BuildConfig(Strict):
    name: str = "tis"
    output: str | None = None  # the build directory; `tis build --out` overrides
    cards: list[str] = Field(default_factory=list)
    sources: list[SourceSpec]
    captioner: ModelSpec
    teacher: ModelSpec
    policy: str = DEFAULT_POLICY  # the policy text, or a path to a text file (read at load time)
    caption_prompt: str = DEFAULT_CAPTION_PROMPT
    teacher_prompt: str = DEFAULT_TEACHER_PROMPT
    # answer: the teacher's reply is the thought (the default prompt asks for only the thinking);
    # reasoning: the teacher's own reasoning trace (a server's reasoning_content, or its <think> block)
    thought_from: Literal["answer", "reasoning"] = "answer"
    filters: FilterSpec = Field(default_factory=FilterSpec)
    export: ExportSpec = Field(default_factory=ExportSpec)
    source: str | None = Field(default=None, exclude=True)

    _non_empty = field_validator("sources")(non_empty("dataset"))

    @field_validator("teacher_prompt")
    @classmethod
    def _template(cls, v: str) -> str:
        try:
            return check_template(v, "teacher_prompt", ("caption", "question", "answer"), PLACEHOLDERS)
        except ConfigError as e:
            raise ValueError(str(e)) from None

    def echo(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude={"source"})
        for role in ("captioner", "teacher"):
            data[role]["options"] = _mask(data[role]["options"])
        model = (data["filters"]["consistency"] or {}).get("model")
        if model:
            model["options"] = _mask(model["options"])
        return data


class LoraSpec(Strict):
    r: int = Field(default=16, ge=1)
    alpha: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"


class TrainConfig(Strict):
    name: str = "tis-sft"
    data: str  # a TiS-form JSON file; its image paths are relative to its folder
    image_root: str | None = None  # where the images are, if not beside the file
    model: str  # Hub id or local directory of the vision-language model to tune
    output: str | None = None  # `tis train --out` overrides
    method: Literal["lora", "full"] = "lora"
    lora: LoraSpec = Field(default_factory=LoraSpec)
    freeze_vision: bool = True  # full tuning leaves the vision tower as it is (LoRA skips it anyway)
    merge: bool = False  # LoRA: also write merged/, a plain checkpoint with the adapter folded in
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = Field(default=1, ge=1)
    grad_accum: int = Field(default=8, ge=1)
    learning_rate: float = Field(default=1e-4, gt=0)
    lr_scheduler: str = "cosine"
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1)
    weight_decay: float = 0.0
    max_length: int | None = 4096
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    gradient_checkpointing: bool = True
    save_steps: int = Field(default=200, ge=1)
    save_total_limit: int | None = 2
    logging_steps: int = Field(default=10, ge=1)
    seed: int = 0
    limit: int | None = Field(default=None, ge=1)  # use only the first N records (smoke tests)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    trust_remote_code: bool = False
    source: str | None = Field(default=None, exclude=True)


def parse(cls: type[T], data: Any, source: str) -> T:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a config is a YAML mapping (got {type(data).__name__})")
    try:
        cfg = cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_error(e, source).replace("invalid run config", f"invalid {cls.__name__}")) from None
    return cfg.model_copy(update={"source": source})


def _relative(base: Path, value: str | None) -> str | None:
    if value is None:
        return None
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else base / p)


def load_build_config(path: str | Path) -> BuildConfig:
    p, data = read_yaml(path)
    cfg = parse(BuildConfig, data, str(p))
    base = p.parent
    update: dict[str, Any] = {"cards": [_relative(base, c) for c in cfg.cards]}
    policy = cfg.policy
    if "\n" not in policy and policy.strip().endswith((".txt", ".md")):  # a file name, not policy text
        f = Path(_relative(base, policy.strip()))  # type: ignore[arg-type]
        try:
            update["policy"] = f.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"{p}: key 'policy': cannot read {f}: {e.strerror or e}") from None
    return cfg.model_copy(update=update)


def load_train_config(path: str | Path) -> TrainConfig:
    """Paths in it (data, model, output) are read from the working directory, as in run configs."""
    p, data = read_yaml(path)
    return parse(TrainConfig, data, str(p))
