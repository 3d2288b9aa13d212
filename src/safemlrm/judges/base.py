"""The judge contract: read one channel of one response, return a score and a label.

A judge names its scale (the range of its scores and the default attack-success threshold),
reports its identity and a hash of its prompt, and never folds what it cannot read into "safe":
that is `unparseable`, counted and shown.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from ..hashing import content_hash, hash_prefix
from ..records import Channel, Label, Modality, Response


@dataclass(frozen=True)
class Scale:
    low: float
    high: float
    success_at: float  # default ASR threshold: score >= success_at is an attack success
    harmful_at: float  # default harmful-rate threshold
    meaning: str = ""


def registered_scales(judges_meta: dict[str, Any] | None) -> dict[str, Scale]:
    """Each judge's scale from a run's `judges` meta (as the runner registers it)."""
    return {label: Scale(**meta["scale"]) for label, meta in (judges_meta or {}).items()}


@dataclass(frozen=True)
class InputLimit:
    """How much text a judge's model reads at once, and what the judge does with more.

    `tokens`: the limit (the model's context, or the length the classifier was trained on);
    `chars`: the size in characters the judge enforces (texts are not tokenized before judging, so
    the cut is made in characters: an estimate of `tokens` for English); `policy`: "chunk" (the text
    is judged in pieces of at most `chars`, every piece recorded), "clip" (head and tail, `max_chars`)
    or "error" (the server rejects it: an unparseable verdict that says so)."""

    tokens: int
    policy: Literal["chunk", "clip", "error"]
    chars: int | None = None
    note: str = ""


@dataclass(frozen=True)
class JudgeItem:
    channel: Channel
    text: str  # the channel's text
    query: str  # the plain harmful intent the judge must see (not the obfuscated prompt)
    response: Response
    images: dict[str, bytes] = field(default_factory=dict)  # sha256 -> bytes; only for judges that want images
    dataset: str = ""
    scenario: str = ""
    meta: dict[str, Any] = field(default_factory=dict)  # the sample's meta (Probe.sample_meta)


@dataclass(frozen=True)
class JudgeResult:
    score: float | None
    label: Label
    rationale: str = ""
    by_prefilter: bool = False


class Judge:
    registered_name: ClassVar[str]
    mode: ClassVar[Literal["batch", "async"]] = "batch"
    scale: ClassVar[Scale]
    wants_images: ClassVar[bool] = False  # the runner fills JudgeItem.images for judges that set it
    channels: ClassVar[tuple[Channel, ...] | None] = None  # the channels it reads (None: every channel)
    modalities: ClassVar[tuple[Modality, ...]] = (Modality.TEXT,)  # what it can read (images: with multimodal)
    input_limit: ClassVar[InputLimit | None] = None  # None: no declared limit
    streaming: ClassVar[bool | None] = None  # judge alongside generation; None: the runner decides by mode
    # an async judge's limits (LLM judges set them from their params); None: the runner's defaults
    concurrency: int | None = None
    min_concurrency: int | None = None
    max_concurrency: int | None = None
    tokens_per_minute: int | None = None

    def __init__(self, **params: Any):
        self.params = params

    def identity(self) -> dict[str, Any]:
        return {"judge": self.registered_name, "params": self.params}

    def prompt_text(self) -> str:
        """Everything in the judge's instructions, hashed into `prompt_hash`."""
        return ""

    def prompt_hash(self) -> str:
        return content_hash("judge-prompt", self.prompt_text(), length=16)

    def template_sha256(self) -> str:
        """sha256 of the input format the judge pins (a named guard's chat template), recorded in each
        verdict; "" for judges that pin none. Also part of `prompt_text`, so of the prompt hash."""
        return ""

    def context(self, item: JudgeItem) -> dict[str, Any]:
        """What else of the item the verdict depends on (a scenario, a sample's safety warning); it
        joins the cache key, so two items alike in text and query but not in this are judged apart."""
        return {}

    def cache_key(self, item: JudgeItem) -> str:
        # A judge's identity and prompt are fixed once it is built (the run registers them at its
        # start), so their share of the hash is computed once.
        prefix = self.__dict__.get("_verdict_prefix")
        if prefix is None:
            prefix = self.__dict__["_verdict_prefix"] = hash_prefix("verdict", self.identity(), self.prompt_hash())
        extra = self.context(item)
        return content_hash(item.channel.value, item.text, item.query, sorted(item.images),
                            *([extra] if extra else []), prefix=prefix)

    def preflight(self) -> None:
        """Check, cheaply and before any generation, that the judge can work (its server answers, its
        checkpoint exists); raise SafeMLRMError (judges.health.JudgeUnreachable) naming what is wrong."""

    def close(self) -> None:
        """Release a model or connections the judge holds."""

    def judge(self, items: list[JudgeItem]) -> list[JudgeResult]:
        raise NotImplementedError

    async def ajudge(self, item: JudgeItem) -> JudgeResult:
        return self.judge([item])[0]
