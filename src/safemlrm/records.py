"""The typed, immutable records that flow through the pipeline.

Dataset --Sample--> Attack --Probe--> Target --Completion--> split --Response--> Judge --Verdict--> Store

Each record carries a `key`: a content hash of what made it, so the store never pays for the
same request twice and a resumed run can tell what is already done.
"""
from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .hashing import content_hash


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Modality(str, Enum):
    TEXT = "text"
    IMAGE = "image"


class Channel(str, Enum):
    """Which part of a response a verdict reads."""

    REASONING = "reasoning"
    ANSWER = "answer"
    FULL = "full"


class Outcome(str, Enum):
    COMPLETE = "complete"
    UNCLOSED_THINK = "unclosed_think"  # reasoning began and never ended
    TRUNCATED = "truncated"  # hit the length limit after the reasoning closed (or with none)
    EMPTY = "empty"
    ERROR = "error"


class Label(str, Enum):
    REFUSAL = "refusal"
    SAFE = "safe"
    UNSAFE = "unsafe"
    COMPLIED = "complied"  # engaged rather than refused; harm not assessed (keyword judges)
    UNPARSEABLE = "unparseable"


# --- message content --------------------------------------------------------------------------


class TextPart(Frozen):
    type: Literal["text"] = "text"
    text: str


class ImagePart(Frozen):
    """An image by content hash; the bytes live in the run's blob store."""

    type: Literal["image"] = "image"
    sha256: str
    media_type: str = "image/png"


Part = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class Message(Frozen):
    role: Literal["system", "user", "assistant"]
    content: tuple[Part, ...]

    @property
    def text(self) -> str:
        return "\n".join(p.text for p in self.content if isinstance(p, TextPart))

    @property
    def images(self) -> tuple[ImagePart, ...]:
        return tuple(p for p in self.content if isinstance(p, ImagePart))


# --- the five records -------------------------------------------------------------------------


class Sample(Frozen):
    """One benchmark item."""

    dataset: str
    id: str
    scenario: str
    intent: str  # the harmful intent in plain words: what the judge must see
    fields: dict[str, str] = Field(default_factory=dict)  # the item's text fields by name
    images: dict[str, str] = Field(default_factory=dict)  # image references (paths) by role
    license: str = "unknown"
    meta: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        return content_hash("sample", self.dataset, self.id)


class Probe(Frozen):
    """What a model is sent, and what the judge must be told it was asked."""

    dataset: str
    sample_id: str
    scenario: str
    attack: str
    attack_params: dict[str, Any] = Field(default_factory=dict)
    messages: tuple[Message, ...]
    judge_query: str
    # The sample's meta (MSSBench pair_id/side, SIUO safety_warning, ...) for judges and analysis.
    # Not part of the key: it describes the item, it does not change what the model is sent.
    sample_meta: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        return content_hash("probe", self.dataset, self.sample_id, self.attack, self.attack_params,
                            [m.model_dump(mode="json") for m in self.messages])

    @property
    def modalities(self) -> frozenset[Modality]:
        mods = {Modality.TEXT}
        if any(m.images for m in self.messages):
            mods.add(Modality.IMAGE)
        return frozenset(mods)


class GenerationSettings(Frozen):
    max_new_tokens: int = 4096  # the SafeMLRM setting
    temperature: float | None = None  # None: the model's default decoding
    top_p: float | None = None
    do_sample: bool | None = None
    seed: int = 0
    # Reasoning control (models/budget.py): a token cap or a preset ("zero", "less", "more"), and the
    # least reasoning a "more" run is pushed to. None: the model thinks as it likes.
    think_budget: int | Literal["zero", "less", "more"] | None = Field(default=None)
    think_min_tokens: int | None = Field(default=None, ge=1)
    # A think prefix preset (attacks/think_prefix.py) planted at the start of every reasoning of this
    # model: the sweepable form of the think_prefix attack. "none" is no prefix.
    think_prefix: str | None = Field(default=None)

    @field_validator("think_prefix")
    @classmethod
    def _known_prefix(cls, v: str | None) -> str | None:
        from .attacks.think_prefix import PRESETS  # the attack owns the presets; imported only when one is set

        if v is None or v == "none":
            return None
        if v not in PRESETS:
            raise ValueError(f"must be none or a think_prefix preset ({', '.join(PRESETS)}), not {v!r}")
        return v

    def key_dump(self) -> dict[str, Any]:
        """The settings as the completion key reads them: a reasoning control left unset is left out,
        so keys made before these fields existed stay valid."""
        return self.model_dump(mode="json", exclude={k for k in _CONTROL_FIELDS if getattr(self, k) is None})


_CONTROL_FIELDS = ("think_budget", "think_min_tokens", "think_prefix")


class Completion(Frozen):
    """The raw output exactly as returned."""

    key: str  # hash(model identity, settings, chat template hash, probe messages)
    probe_key: str
    model: str
    text: str
    reasoning_content: str | None = None  # a server's separate reasoning field
    finish_reason: str | None = None  # "stop", "length", ... or None when unknown
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    error: str | None = None  # set when no text could be had; the cause in words
    # Token accounting where the backend knows it (two-phase generation does): reasoning tokens the
    # model generated (a planted opening not counted), and answer tokens.
    reasoning_tokens: int | None = None
    answer_tokens: int | None = None


class ReasoningAccount(Frozen):
    """How much of one completion went to reasoning, and how it ended: the one definition every
    writer of these facts uses (the split in models/accounting.py; think budgets reuse it)."""

    reasoning_tokens: int | None = None  # None: unknown (no token count from the backend)
    answer_tokens: int | None = None
    tokens_exact: bool = False  # False: the completion's token count shared out by characters
    close_seen: bool = False  # the reasoning's close marker (or a server's separate field) was seen
    finish_reason: str | None = None
    thinking: str | None = None  # a hybrid model's mode ("on"/"off"); None when not a hybrid
    budget: int | None = None  # a think budget in tokens, where one was imposed


# The account's fields as columns of a run's rows (store, export, load_run), in this order.
ACCOUNT_FIELDS = ("reasoning_tokens", "answer_tokens", "close_seen", "finish_reason", "thinking", "budget")


class Response(Frozen):
    """A completion split into reasoning and answer. `reasoning` is None when the model has none."""

    completion_key: str
    reasoning: str | None
    answer: str | None
    full: str
    outcome: Outcome
    account: ReasoningAccount | None = None  # filled in when the split knows the model's card
    # The think prefix the audit planted (attacks/think_prefix.py, generation.think_prefix): the
    # reasoning starts with it, and judges read it marked as the audit's words (judge_text).
    planted_prefix: str | None = None

    def channel(self, channel: Channel) -> str | None:
        return {Channel.REASONING: self.reasoning, Channel.ANSWER: self.answer, Channel.FULL: self.full}[channel]


class Verdict(Frozen):
    """One judge's reading of one channel of one response."""

    completion_key: str
    channel: Channel
    judge: str  # the judge's configured name
    judge_id: str  # identity: kind, model, revision
    prompt_hash: str
    cache_key: str  # hash(judge_id, prompt_hash, channel text, query): re-judging the same text is free
    score: float | None
    label: Label
    rationale: str = ""
    by_prefilter: bool = False  # decided by a keyword pre-filter rather than the judge proper
    template_sha256: str = ""  # sha256 of the pinned input format of a named guard judge ("" if none)


def completion_key(identity: dict[str, Any], settings: GenerationSettings, probe: Probe) -> str:
    return content_hash("completion", identity, settings.key_dump(), [m.model_dump(mode="json") for m in probe.messages])
