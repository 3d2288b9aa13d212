"""Split a completion into its reasoning trace and its final answer.

The rules and every family's format live in `formats.py`; a model card chooses its format
(`ModelCard.reasoning_format`). `split_completion` is the R1-style `<think>` split, kept for
callers that have no card.
"""
from __future__ import annotations

from ..records import Completion, Response
from .formats import BUILTIN_FORMATS, ReasoningFormat


def split_completion(completion: Completion, *, think_opened_by_template: bool = False,
                     fmt: ReasoningFormat | None = None) -> Response:
    fmt = fmt or BUILTIN_FORMATS["think"]
    return fmt.with_template_opened(fmt.template_opened or think_opened_by_template).split(completion)
