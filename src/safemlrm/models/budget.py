"""Think budgets: two-phase generation that decides how long a model reasons.

`generation: {think_budget: N}` caps the reasoning at N generated tokens. Phase one writes the
assistant turn's opening marker (unless the chat template already did), then lets the model reason
until it closes its thought, ends its turn, or reaches the cap; phase two writes the card's close
marker after whatever reasoning there is and generates the answer from there. So the model always
answers, even one that never closes its thought by itself. Presets (SafeChain's ZeroThink /
LessThink / MoreThink, the last as s1's budget forcing):

* `zero`: an empty thought is forced: the open and close markers, nothing between.
* `less`: a short fixed opening (LESS_OPENING) then the close.
* `more`: a close (or end of turn) before `think_min_tokens` (default MORE_MIN_TOKENS) is replaced by
  CONTINUE_CUE and the model reasons on; past the minimum it may close, and is closed at
  half of max_new_tokens so that the answer has room.

The answer gets what is left of max_new_tokens. The logic here knows nothing of any engine: it is
one generator (`controlled_steps`) that asks for continuations of a batch of assistant prefixes
(see `Step`); `generate_controlled` drives it with a batch engine's step (hf_control.py,
vllm_control.py), `agenerate_controlled` with an async HTTP client (openai_control.py).
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass

from ..errors import ConfigError
from ..records import GenerationSettings, Message
from .cards import ModelCard, ReasoningFormat

# The project's own wording (the sources' exact strings are not needed to reproduce the effect).
LESS_OPENING = "This is simple enough to answer directly, so I will keep my thinking short."
CONTINUE_CUE = "Wait"
MORE_MIN_TOKENS = 256
# A `more` round that adds no reasoning token (the model closes right after the cue) pushes again;
# this many such rounds in a row end the pushing, so a model that never reasons cannot loop.
MAX_STALLED_ROUNDS = 64


@dataclass(frozen=True)
class ThinkPlan:
    """How one model's reasoning is controlled."""

    cap: int  # most reasoning tokens the model may generate
    min_tokens: int = 0  # fewer than this and a close is replaced by `cue`
    opening: str = ""  # planted at the start of the reasoning, after the open marker
    cue: str = CONTINUE_CUE
    force: bool = True  # close the thought at the cap; False: a thought left open stays open (no budget set)


@dataclass(frozen=True)
class Segment:
    """One continuation from a backend: the tokens generated and whether the model stopped by
    itself (end of turn or a stop string) rather than at the token limit. A server over HTTP gives
    text and a token count instead of ids (`text` set, `ids` empty): it stopped at the stop string
    (left out of `text`) or at the max_tokens it was sent."""

    ids: list[int]
    stopped: bool
    text: str | None = None
    count: int | None = None


# step(items, prefixes, max_new_tokens, stop_strings, min_new_tokens) -> one Segment per prefix:
# `items` are indices into the batch, `prefixes[j]` the text of item j's
# the assistant turn so far (after the rendered generation prompt); the ids stop at, and include
# the first stop string when one was met, and exclude the end-of-turn token; no end of turn may come
# before min_new_tokens.
Step = Callable[[list[int], list[str], int, list[str], int], list[Segment]]
Decode = Callable[[list[int]], str]


def ends_with_planted(messages: tuple[Message, ...]) -> bool:
    """Does a probe's conversation end with a thought planted by attacks/think_prefix.py?"""
    return bool(messages) and messages[-1].role == "assistant"


def planted_prefix(messages: tuple[Message, ...], continues: bool = True) -> tuple[tuple[Message, ...], str | None]:
    """(the messages before a thought planted by attacks/think_prefix.py, its text); (messages, None)
    when the request does not continue its last message."""
    if continues and ends_with_planted(messages):
        return messages[:-1], messages[-1].text
    return messages, None


def _needs_markers(card: ModelCard, backend: str, option: str) -> None:
    fmt = card.reasoning_format
    if not card.is_reasoning:
        mode = "thinking: off" if card.thinking == "off" else f"think_format: {card.format_name}"
        raise ConfigError(f"model {card.name} (backend {backend}): generation.{option} needs a reasoning "
                          f"model, but its card has {mode}")
    if fmt.open is None or fmt.close is None:
        raise ConfigError(f"model {card.name} (backend {backend}): generation.{option} needs think markers "
                          f"to force, but the card's think_format {card.format_name!r} has none")


def think_plan(card: ModelCard, settings: GenerationSettings, backend: str) -> ThinkPlan | None:
    """The plan the settings ask for, or None; a ConfigError naming the option when it cannot apply."""
    budget = settings.think_budget
    if settings.think_prefix is not None:
        _needs_markers(card, backend, "think_prefix")
    if budget is None:
        if settings.think_min_tokens is not None:
            raise ConfigError(f"model {card.name}: generation.think_min_tokens needs think_budget "
                              f"(a number or 'more')")
        return None
    _needs_markers(card, backend, "think_budget")
    room = settings.max_new_tokens
    if budget == "zero":
        plan = ThinkPlan(cap=0)
    elif budget == "less":
        plan = ThinkPlan(cap=0, opening=LESS_OPENING)
    elif budget == "more":
        plan = ThinkPlan(cap=room // 2, min_tokens=settings.think_min_tokens or MORE_MIN_TOKENS)
    else:
        if budget < 0:
            raise ConfigError(f"model {card.name}: generation.think_budget {budget} is negative")
        plan = ThinkPlan(cap=budget, min_tokens=settings.think_min_tokens or 0)
    if plan.cap >= room:
        raise ConfigError(f"model {card.name}: generation.think_budget {budget} leaves no room for the answer "
                          f"within max_new_tokens {room}; raise max_new_tokens above it")
    if plan.min_tokens > plan.cap:
        raise ConfigError(f"model {card.name}: generation.think_min_tokens {plan.min_tokens} exceeds the "
                          f"reasoning cap {plan.cap}")
    return plan


@dataclass
class Controlled:
    """One item's result: the completion text (as the model's turn reads, markers included)."""

    text: str
    reasoning_tokens: int
    answer_tokens: int
    at_limit: bool  # the answer ran out of tokens


def _join(reasoning: str, cue: str) -> str:
    return reasoning + cue if not reasoning or reasoning[-1].isspace() else f"{reasoning} {cue}"


def _until_close(ids: list[int], close: str, decode: Decode) -> tuple[str, int, bool]:
    """(reasoning text before the close marker, tokens wholly before it, closed?)."""
    text = decode(ids)
    at = text.find(close)
    if at < 0:
        return text, len(ids), False
    n = 0
    while n < len(ids) and len(decode(ids[:n + 1])) <= at:
        n += 1
    return text[:at], n, True


def free_plan(max_new_tokens: int) -> ThinkPlan:
    """No budget: the model reasons as long as it likes (a planted opening is all that is controlled)."""
    return ThinkPlan(cap=max_new_tokens - 1, force=False)


def _reasoned(seg: Segment, room: int, close: str, decode: Decode | None) -> tuple[str, int, bool]:
    """Phase one's piece of a segment: (reasoning text before any close, its tokens, ended?)."""
    if seg.text is not None:
        at = seg.text.find(close)
        n = room if seg.count is None else min(seg.count, room)  # no count from the server: the worst case
        return (seg.text if at < 0 else seg.text[:at]), n, at >= 0 or seg.stopped
    assert decode is not None
    ids = seg.ids[:room]  # a batch runs to its longest room; each item keeps its own
    text, k, closed = _until_close(ids, close, decode)
    return text, k, closed or (seg.stopped and len(ids) == len(seg.ids))


def _answered(seg: Segment, room: int, decode: Decode | None) -> tuple[str, int, bool]:
    """Phase two's piece: (answer text, its tokens, ran out of tokens?)."""
    if seg.text is not None:
        return seg.text, (seg.count if seg.count is not None else 0), not seg.stopped
    assert decode is not None
    ids = seg.ids[:room]
    return decode(ids), len(ids), len(ids) >= room and not (seg.stopped and len(ids) == len(seg.ids))


StepCall = tuple[list[int], list[str], int, list[str], int]  # the arguments of one `Step`


def controlled_steps(openings: Sequence[str], plan: ThinkPlan, fmt: ReasoningFormat, max_new_tokens: int,
                     decode: Decode | None = None) -> Generator[StepCall, list[Segment], list[Controlled]]:
    """Both phases for a batch, as a generator that yields each step's arguments and is sent its
    segments (so that one loop serves a batch engine and an async HTTP client alike). `openings`:
    text planted at the start of each item's reasoning (a think prefix; empty for none), before the
    plan's own opening. `decode` turns ids into text; not needed when segments carry text."""
    assert fmt.open is not None and fmt.close is not None
    opened = "" if fmt.template_opened else fmt.open
    n = len(openings)
    reasoning = [o + (" " if o and plan.opening else "") + plan.opening for o in openings]
    used = [0] * n
    closed_by_model = [False] * n
    stalled = [0] * n  # rounds in a row that added no token
    active = [i for i in range(n) if plan.cap > 0]
    while active:  # phase one: reason, in rounds while a `more` plan pushes past early closes
        room = {i: plan.cap - used[i] for i in active}
        segs = yield active, [opened + reasoning[i] for i in active], max(room.values()), [fmt.close], 0
        nxt = []
        for i, seg in zip(active, segs):
            text, k, ended = _reasoned(seg, room[i], fmt.close, decode)
            used[i] += k
            reasoning[i] += text
            closed_by_model[i] = ended
            stalled[i] = stalled[i] + 1 if k == 0 else 0
            if ended and used[i] < plan.min_tokens and stalled[i] < MAX_STALLED_ROUNDS:
                reasoning[i] = _join(reasoning[i], plan.cue)
                nxt.append(i)
        active = nxt
    # phase two: the close marker is ours; the answer is the model's. A model that never learnt to
    # close a thought tends to end its turn right after a close it did not write, so the turn may not
    # end before the answer's first token.
    out: list[Controlled | None] = [None] * n
    answering = [i for i in range(n) if plan.force or closed_by_model[i]]
    for i in set(range(n)) - set(answering):  # no budget and the model never closed: left open, as it was
        out[i] = Controlled(text=opened + reasoning[i], reasoning_tokens=used[i], answer_tokens=0, at_limit=True)
    if answering:
        rooms = {i: max_new_tokens - used[i] for i in answering}
        segs = yield (answering, [opened + reasoning[i] + fmt.close for i in answering], max(rooms.values()), [], 1)
        for i, seg in zip(answering, segs):
            answer, k, at_limit = _answered(seg, rooms[i], decode)
            out[i] = Controlled(text=opened + reasoning[i] + fmt.close + answer, reasoning_tokens=used[i],
                                answer_tokens=k, at_limit=at_limit)
    return out  # type: ignore[return-value]


def generate_controlled(openings: Sequence[str], plan: ThinkPlan, fmt: ReasoningFormat,
                        max_new_tokens: int, step: Step, decode: Decode) -> list[Controlled]:
    """`controlled_steps` driven by a batch engine's `step`."""
    loop = controlled_steps(openings, plan, fmt, max_new_tokens, decode)
    try:
        call = next(loop)
        while True:
            call = loop.send(step(*call))
    except StopIteration as done:
        return done.value


async def agenerate_controlled(openings: Sequence[str], plan: ThinkPlan, fmt: ReasoningFormat,
                               max_new_tokens: int, astep: Callable[..., Awaitable[list[Segment]]],
                               decode: Decode | None = None) -> list[Controlled]:
    """`controlled_steps` driven by an async `astep` (same arguments as `Step`)."""
    loop = controlled_steps(openings, plan, fmt, max_new_tokens, decode)
    try:
        call = next(loop)
        while True:
            call = loop.send(await astep(*call))
    except StopIteration as done:
        return done.value


def refuse_unsupported(card: ModelCard, settings: GenerationSettings, backend: str, why: str) -> None:
    """For a backend that cannot control reasoning: a ConfigError before the first call."""
    for option in ("think_budget", "think_prefix"):
        if getattr(settings, option) is not None:
            raise ConfigError(f"model {card.name}: generation.{option} is not supported by backend {backend}: {why}")


def check_planted(attack: str, probes: Sequence, backends: dict) -> None:
    """Before any model call: a planted thought goes only to backends that can continue one."""
    if not any(ends_with_planted(p.messages) for p in probes):
        return
    for name, backend in backends.items():
        if not backend.controls_reasoning:
            raise ConfigError(f"attack {attack!r} plants a thought (think_prefix where: thought), which backend "
                              f"{backend.registered_name} of model {name} cannot continue; use backend hf or vllm, "
                              f"backend openai with option prefix_continuation, or where: image")
