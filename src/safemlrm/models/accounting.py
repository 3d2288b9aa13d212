"""Reasoning accounting: the ReasoningAccount (records.py) of one split completion.

Token counts: a backend reports one count for the whole completion; it is shared between the
reasoning and the answer in proportion to their characters (`tokens_exact` false), which keeps the
sum equal to what the model generated. Marker tokens count with the reasoning. Where the backend
counted each phase itself (two-phase generation under a think budget), those counts are exact.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..records import Completion, Outcome, ReasoningAccount, Response

if TYPE_CHECKING:
    from .cards import ModelCard


def _shares(total: int | None, reasoning: str, answer: str) -> tuple[int | None, int | None]:
    if total is None:
        return None, None
    r, a = len(reasoning), len(answer)
    if r + a == 0:
        return 0, 0
    answer_tokens = round(total * a / (r + a))
    return total - answer_tokens, answer_tokens


def account(response: Response, completion: Completion, card: ModelCard | None = None,
            budget: int | None = None) -> Response:
    """`response` with its account filled in."""
    if response.outcome is Outcome.ERROR:
        acc = ReasoningAccount(finish_reason=completion.finish_reason, thinking=card.thinking if card else None,
                               budget=budget)
        return response.model_copy(update={"account": acc})
    reasoning, answer = response.reasoning or "", response.answer or ""
    r_tok, a_tok = _shares(completion.completion_tokens, reasoning, answer)
    if not reasoning:
        r_tok, a_tok = (0, completion.completion_tokens) if completion.completion_tokens is not None else (None, None)
    exact = completion.reasoning_tokens is not None and completion.answer_tokens is not None
    if exact:  # two-phase generation (think budgets, planted thoughts) counted each phase itself
        r_tok, a_tok = completion.reasoning_tokens, completion.answer_tokens
    close_seen = bool(reasoning) and response.outcome is not Outcome.UNCLOSED_THINK
    acc = ReasoningAccount(reasoning_tokens=r_tok, answer_tokens=a_tok, tokens_exact=exact, close_seen=close_seen,
                           finish_reason=completion.finish_reason, thinking=card.thinking if card else None,
                           budget=budget)
    return response.model_copy(update={"account": acc})
