"""Thinking modes of hybrid models: one checkpoint that reasons or not, by a switch.

A card with a `thinking_switch` can run as `NAME[on]` or `NAME[off]`; the two are a base ->
reasoning pair on identical weights, so the reasoning tax is measured without a second model. The
mode reaches the model as a chat-template argument (`enable_thinking` for Qwen3 and GLM-4.5V:
passed to `apply_chat_template` by `hf` and `vllm`, and in the request's `chat_template_kwargs` by
`openai`), and/or as a system instruction in mode on (InternVL3.5's thinking prompt). The mode is
part of the backend identity, hence of the completion key.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from .cards import ModelCard

_MODE = re.compile(r"^(?P<base>.+)\[(?P<mode>on|off)\]$")


class ThinkingSwitch(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    template_arg: str | None = "enable_thinking"  # chat-template argument set True (on) / False (off)
    request_field: str = "chat_template_kwargs"  # openai: the request field the template argument goes in
    on_instruction: str | None = None  # a system instruction that turns thinking on (InternVL3.5)
    opens_think: bool = False  # in mode on the template writes the opening marker itself


def split_mode_name(name: str) -> tuple[str, str | None]:
    m = _MODE.match(name)
    return (m.group("base"), m.group("mode")) if m else (name, None)


def mode_card(card: ModelCard, mode: str) -> ModelCard:
    """The card of one mode of a hybrid model; `NAME[on]` has `NAME[off]` as its base."""
    from ..errors import UnknownName

    if card.thinking_switch is None:
        raise UnknownName(f"model card {card.name!r} has no thinking_switch, so {card.name}[{mode}] does not exist; "
                          f"add a thinking_switch to its card if the model has a documented switch")
    update: dict[str, Any] = {"name": f"{card.name}[{mode}]", "thinking": mode,
                              "base": f"{card.name}[off]" if mode == "on" else None}
    if mode == "on" and card.thinking_switch.on_instruction and card.prompt_style == "none":
        update.update(prompt_style="system", instruction=card.thinking_switch.on_instruction)
    return card.model_copy(update=update)


def template_kwargs(card: ModelCard) -> dict[str, Any]:
    """Extra chat-template arguments for the card's thinking mode (none when the mode is unset)."""
    switch = card.thinking_switch
    if card.thinking is None or switch is None or not switch.template_arg:
        return {}
    return {switch.template_arg: card.thinking == "on"}


def request_fields(card: ModelCard) -> dict[str, Any]:
    """What an OpenAI-compatible request carries for the mode: {"chat_template_kwargs": {...}}."""
    kw, switch = template_kwargs(card), card.thinking_switch
    return {switch.request_field: kw} if kw and switch is not None else {}
