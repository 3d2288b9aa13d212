"""Model cards: what safemlrm knows about a model before it loads it.

A card names the checkpoint, how the model expects to be prompted, how its output splits into
reasoning and answer, and which base model it was trained from (the reasoning-tax pairs).
Built-in cards live in `safemlrm/cards/*.yaml`; a user adds cards with `cards: FILE` in a run
config or `--cards FILE` on the command line, in the same YAML form.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal


from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from .. import yamlio
from ..errors import ConfigError, UnknownName, did_you_mean
from ..records import Modality
from .formats import BUILTIN_FORMATS, ReasoningFormat, builtin_format, declared_format
from .thinking import ThinkingSwitch, mode_card, split_mode_name

# The R1-style instruction the MM-Eureka and Mulberry checkpoints were trained to follow
# (a protocol parameter: the models expect this exact wording).
STUDY_INSTRUCTION = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with "
    "the answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> "
    "tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>"
)
NAMED_INSTRUCTIONS = {"study": STUDY_INSTRUCTION}

PromptStyle = Literal["none", "system", "prepend"]
ThinkingMode = Literal["on", "off"]


class ModelCard(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    hub_id: str  # Hub id, local path, or pkg://<package>/<file> for weights shipped in a Python package
    revision: str | None = None
    family: str = "auto"
    base: str | None = None  # name of the base model's card
    prompt_style: PromptStyle = "none"
    instruction: str | None = None  # text, or the name of a known instruction ("study")
    # a built-in format's name (formats.BUILTIN_FORMATS) or a mapping declaring one
    think_format: str | ReasoningFormat = "think"
    think_opened_by_template: bool = False  # the chat template opens <think> in the prompt
    thinking: ThinkingMode | None = None  # a hybrid model's mode; None: the checkpoint's default
    thinking_switch: ThinkingSwitch | None = None  # how the mode reaches the model (hybrids only)
    verified: bool = False  # True only where Hub id and format were checked against the published card/template
    license: str = ""
    modalities: tuple[Modality, ...] = (Modality.TEXT, Modality.IMAGE)
    trust_remote_code: bool = False  # off unless the user turns it on for this named model
    chat_template: str | None = None  # overrides the checkpoint's template
    notes: str = ""

    @field_validator("think_format", mode="before")
    @classmethod
    def _format(cls, v: Any) -> Any:
        if isinstance(v, ReasoningFormat):
            return v
        try:
            if isinstance(v, str):
                builtin_format(v)  # an unknown name fails here, with did-you-mean
                return v
            if isinstance(v, dict):
                return declared_format(v)
        except UnknownName as e:  # the card loader adds file, card and field
            raise ValueError(str(e)) from None
        raise ValueError("must be a format name or a mapping of format fields")

    @model_validator(mode="after")
    def _check(self) -> ModelCard:
        if self.prompt_style != "none" and not self.instruction:
            raise ValueError(f"prompt_style {self.prompt_style!r} needs an instruction")
        if self.thinking is not None and self.thinking_switch is None:
            raise ValueError("thinking: on|off needs a thinking_switch (how the mode reaches the model)")
        return self

    @property
    def reasoning_format(self) -> ReasoningFormat:
        """The parser every split of this model's output uses."""
        fmt = self.think_format if isinstance(self.think_format, ReasoningFormat) else BUILTIN_FORMATS[self.think_format]
        if self.thinking == "off":  # the template closed the reasoning itself: nothing is opened
            return fmt.with_template_opened(False)
        opened = fmt.template_opened or self.think_opened_by_template
        if self.thinking == "on" and self.thinking_switch and self.thinking_switch.opens_think:
            opened = True
        return fmt.with_template_opened(opened)

    @property
    def format_name(self) -> str:
        return self.think_format.name if isinstance(self.think_format, ReasoningFormat) else self.think_format

    @property
    def instruction_text(self) -> str | None:
        if self.instruction is None:
            return None
        return NAMED_INSTRUCTIONS.get(self.instruction, self.instruction)

    @property
    def is_reasoning(self) -> bool:
        if self.thinking is not None:
            return self.thinking == "on"
        return self.reasoning_format.reasoning


def _parse_cards(data: object, source: str) -> list[ModelCard]:
    if not isinstance(data, list):
        raise ConfigError(f"{source}: a card file holds a YAML list of cards")
    cards = []
    for i, item in enumerate(data):
        try:
            cards.append(ModelCard.model_validate(item))
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            name = item.get("name", f"#{i}") if isinstance(item, dict) else f"#{i}"
            hint = ""
            if first["type"] == "extra_forbidden":
                hint = did_you_mean(str(first["loc"][-1]), ModelCard.model_fields)
            raise ConfigError(f"{source}: card {name}: field '{where}': {first['msg']}{hint}") from None
    return cards


def load_card_file(path: str | Path) -> list[ModelCard]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"card file not found: {p}") from None
    data = yamlio.loads(text, str(p))
    return _parse_cards(data, str(p))


class CardCatalog:
    def __init__(self, cards: list[ModelCard] | None = None):
        self._cards: dict[str, ModelCard] = {}
        for card in cards or []:
            self.add(card)

    @classmethod
    def builtin(cls) -> CardCatalog:
        cat = cls()
        for entry in sorted(resources.files("safemlrm.cards").iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".yaml"):
                for card in _parse_cards(yamlio.loads(entry.read_text(encoding="utf-8"), entry.name), entry.name):
                    cat.add(card)
        return cat

    def add(self, card: ModelCard) -> None:
        self._cards[card.name] = card  # a user's card replaces a built-in of the same name

    def extend_from(self, path: str | Path) -> None:
        for card in load_card_file(path):
            self.add(card)

    def get(self, name: str) -> ModelCard:
        base, mode = split_mode_name(name)
        if mode is not None and base in self._cards:  # `card[on]` / `card[off]`: a hybrid's two modes
            return mode_card(self._cards[base], mode)
        try:
            return self._cards[name]
        except KeyError:
            raise UnknownName(f"unknown model card {name!r}.{did_you_mean(name, self._cards)}"
                              f" `safemlrm list models` shows the known cards.") from None

    def __iter__(self):
        return iter(self._cards.values())

    def __contains__(self, name: str) -> bool:
        return name in self._cards

    def pairs(self) -> list[tuple[ModelCard, ModelCard]]:
        """(base, reasoning model) pairs among the known cards; a hybrid is its own pair, off -> on."""
        pairs = [(self.get(c.base), c) for c in self if c.base and (c.base in self or split_mode_name(c.base)[0] in self)]
        return pairs + [(mode_card(c, "off"), mode_card(c, "on")) for c in self
                        if c.thinking_switch is not None and c.thinking is None]
