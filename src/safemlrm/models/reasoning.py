"""Split a completion into its reasoning trace and its final answer.

The raw text is never changed or thrown away: `full` is kept as returned. Rules:

* A server that separates reasoning itself (`reasoning_content`) is taken at its word.
* Otherwise the text is cut at the *last* `</think>`: what precedes it (less an opening `<think>`)
  is the reasoning, what follows is the answer. An `<answer>...</answer>` wrapper is unwrapped.
* `<think>` opened and never closed is `unclosed_think`: the whole text after the tag is reasoning
  and there is no answer. It is never cut at an arbitrary offset and never counted as an answer.
  A model whose chat template opens the `<think>` in the prompt (`think_opened_by_template`) is
  read the same way when its output has no `</think>`.
* Hitting the length limit after the reasoning closed (or with none) is `truncated`.
* Nothing but whitespace is `empty`; a failed call is `error`.
"""
from __future__ import annotations

import re

from ..records import Completion, Outcome, Response

_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
_ANSWER = re.compile(r"<answer>(.*?)(</answer>|$)", re.IGNORECASE | re.DOTALL)


def _unwrap_answer(text: str) -> tuple[str, bool]:
    """Return (answer, closed). Text outside an <answer> wrapper is kept only when there is none."""
    m = _ANSWER.search(text)
    if not m:
        return text.strip(), True
    return m.group(1).strip(), bool(m.group(2))


def _strip_open(reasoning: str) -> str:
    m = _THINK_OPEN.search(reasoning)
    if m and not reasoning[: m.start()].strip():
        reasoning = reasoning[m.end():]
    return reasoning.strip()


def _answer_outcome(answer: str, closed: bool, at_limit: bool) -> Outcome:
    """The outcome of an answer given after the reasoning closed: cut short, empty, or complete."""
    if at_limit or not closed:
        return Outcome.TRUNCATED
    return Outcome.EMPTY if not answer else Outcome.COMPLETE


def split_completion(completion: Completion, *, think_opened_by_template: bool = False) -> Response:
    key = completion.key
    if completion.error is not None:
        return Response(completion_key=key, reasoning=None, answer=None, full=completion.text or "",
                        outcome=Outcome.ERROR)
    text = completion.text or ""
    at_limit = completion.finish_reason == "length"

    if completion.reasoning_content is not None:  # the server split it for us
        reasoning = completion.reasoning_content.strip()
        answer, closed = _unwrap_answer(text)
        full = f"<think>\n{completion.reasoning_content}\n</think>\n{text}"
        if not reasoning and not answer:
            outcome = Outcome.EMPTY
        elif not answer and at_limit:
            outcome = Outcome.UNCLOSED_THINK
        else:
            outcome = _answer_outcome(answer, closed, at_limit)
        return Response(completion_key=key, reasoning=reasoning or None,
                        answer=None if outcome is Outcome.UNCLOSED_THINK else answer, full=full, outcome=outcome)

    if not text.strip():
        return Response(completion_key=key, reasoning=None, answer=None, full=text, outcome=Outcome.EMPTY)

    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        last = closes[-1]
        reasoning = _strip_open(text[: last.start()])
        answer, closed = _unwrap_answer(text[last.end():])
        return Response(completion_key=key, reasoning=reasoning, answer=answer, full=text,
                        outcome=_answer_outcome(answer, closed, at_limit))

    opened = _THINK_OPEN.search(text)
    if opened or think_opened_by_template:
        reasoning = text[opened.end():].strip() if opened else text.strip()
        return Response(completion_key=key, reasoning=reasoning, answer=None, full=text,
                        outcome=Outcome.UNCLOSED_THINK)

    # No reasoning tags at all: the whole text is the answer and reasoning is absent.
    answer, closed = _unwrap_answer(text)
    outcome = Outcome.TRUNCATED if at_limit or not closed else Outcome.COMPLETE
    return Response(completion_key=key, reasoning=None, answer=answer, full=text, outcome=outcome)
