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
from typing import Any, ClassVar, Literal

from ..hashing import content_hash
from ..records import Completion, GenerationSettings, ImagePart, Message, Modality, TextPart
from .cards import ModelCard


@dataclass(frozen=True)
class ChatRequest:
    key: str  # the completion key
    probe_key: str
    messages: tuple[Message, ...]  # final messages: the card's prompt convention already applied
    images: dict[str, bytes] = field(default_factory=dict)  # image sha256 -> encoded bytes


class Backend(ABC):
    mode: ClassVar[Literal["batch", "async"]] = "batch"
    registered_name: ClassVar[str]

    def __init__(self, card: ModelCard, settings: GenerationSettings, options: dict[str, Any] | None = None):
        self.card = card
        self.settings = settings
        self.options = dict(options or {})

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

    def close(self) -> None:
        """Release weights, sessions and connections."""


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
