"""The contract every model backend meets.

A backend is built from a model card, generation settings and backend options. It never loads
weights in `__init__` or `identity()`: a resumed run that has nothing left to generate must not
pay for a model load. Two ways to generate:

* `mode = "batch"`: `generate(requests)` runs a list through one batched engine (local models).
* `mode = "async"`: `agenerate(request)` is awaited under the runner's concurrency limit (APIs).

Either way a failed request comes back as a Completion with `error` set (never an exception for
one bad item), so the rest of the batch and everything already computed are kept.
"""
from __future__ import annotations

from abc import ABC
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Literal

from ..pipeline.concurrency import LimitSettings
from ..hashing import content_hash
from ..options import check_options
from ..records import Completion, GenerationSettings, ImagePart, Message, Modality, TextPart
from .cards import ModelCard


@dataclass(frozen=True)
class ChatRequest:
    key: str  # the completion key
    probe_key: str
    messages: tuple[Message, ...]  # final messages: the card's prompt convention already applied
    images: dict[str, bytes] = field(default_factory=dict)  # image sha256 -> encoded bytes
    # The last message is the start of the model's own turn (a thought planted by attacks/think_prefix.py),
    # to be continued. Set from the probe; a judge's conversation that ends with the assistant turn it
    # classifies (Llama Guard style) is not continued.
    continues_turn: bool = False


class Backend(ABC):
    mode: ClassVar[Literal["batch", "async"]] = "batch"
    controls_reasoning: bool = False  # can continue a planted thought (models/budget.py); an instance may say so
    registered_name: ClassVar[str]

    def __init__(self, card: ModelCard, settings: GenerationSettings, options: dict[str, Any] | None = None):
        self.card = card
        self.settings = settings
        # checked against the subclass's `Options` (unknown keys and bad values named); the given
        # keys only, coerced, so each backend's own defaults still apply
        checked = check_options("backend", self.registered_name, type(self), dict(options or {}),
                                where=f"model {card.name}", key="options")
        self.options = checked.model_dump(exclude_unset=True)

    @property
    def accepts(self) -> frozenset[Modality]:
        return frozenset(self.card.modalities)

    def identity(self) -> dict[str, Any]:
        """What makes this backend's output what it is, for the completion key. Cheap: no weights."""
        return {
            "backend": self.registered_name,
            "model": self.card.hub_id,
            "revision": self.card.revision,
            "prompt": [self.card.prompt_style, self.card.instruction_text],
            **({"thinking": self.card.thinking} if self.card.thinking is not None else {}),
        }

    def generate(self, requests: list[ChatRequest]) -> list[Completion]:
        raise NotImplementedError(f"backend {self.registered_name} has no batch generate")

    async def agenerate(self, request: ChatRequest) -> Completion:
        raise NotImplementedError(f"backend {self.registered_name} has no async generate")

    # --- what the runner asks of every backend (a subclass overrides what differs) -------------
    @property
    def batch_size(self) -> int:
        """Requests handed to a batch engine per call."""
        return max(1, int(self.options.get("batch_size", 8)))

    @cached_property
    def limits(self) -> LimitSettings:
        """An async backend's concurrency limits (an instance attribute set in __init__ overrides)."""
        return LimitSettings.from_options(self.options, f"model {self.card.name}", default=8)

    def close(self) -> None:  # noqa: B027 - a hook: most backends hold nothing to release
        """Release weights, sessions and connections."""

    async def aclose(self) -> None:
        """close() from inside the event loop; async backends close their sessions here."""
        self.close()


def apply_prompt_convention(card: ModelCard, messages: tuple[Message, ...]) -> tuple[Message, ...]:
    """Add the card's instruction as a system message or before the first user turn."""
    text = card.instruction_text
    if card.prompt_style == "none" or not text:
        return messages
    if card.prompt_style == "system":
        rest = tuple(m for m in messages if m.role != "system")
        return (Message(role="system", content=(TextPart(text=text),)),) + rest
    out, done = [], False
    for m in messages:
        if m.role == "user" and not done:
            parts = list(m.content)
            idx = next((i for i, p in enumerate(parts) if isinstance(p, TextPart)), None)
            if idx is None:
                parts.append(TextPart(text=text))
            else:
                parts[idx] = TextPart(text=f"{text}\n\n{parts[idx].text}")
            m = Message(role=m.role, content=tuple(parts))
            done = True
        out.append(m)
    return tuple(out)


def template_hash(template: str | None) -> str | None:
    return content_hash("chat-template", template) if template else None


def image_parts(messages: tuple[Message, ...]) -> list[ImagePart]:
    return [p for m in messages for p in m.images]
