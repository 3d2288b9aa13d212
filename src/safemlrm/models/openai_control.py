"""Reasoning control over HTTP (`backend: openai` with option `prefix_continuation`): each phase of
models/budget.py as one chat request whose last message is the assistant turn so far, which the
server continues instead of opening a new turn.

* `vllm`: vLLM's OpenAI server, with `continue_final_message: true, add_generation_prompt: false`
  in the body (and `min_tokens`, which it honours, for the answer's first token).
* `llamacpp`: llama.cpp's server, which continues a final assistant message by default (assistant
  prefill; not when started with `--no-prefill-assistant`).

Phase one sends max_tokens = the reasoning left in the budget and stop = [the close marker]; phase
two sends the thought with the close marker and gets the answer. Servers answer with the new text
only and count its tokens in `usage.completion_tokens`. The assistant message passes through the
server's chat template, which writes no generation prompt here, so an opening marker the template
would write itself (think_opened_by_template) is written by us; a template that drops the reasoning
of an assistant message (DeepSeek-R1's drops all before `</think>`) must be replaced on the server.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from ..records import Completion, Message, TextPart
from .base import ChatRequest
from .budget import Segment, agenerate_controlled, free_plan, planted_prefix


def continuation_body(backend, request: ChatRequest, turn: str, max_new: int, stop: list[str],
                      min_new: int) -> dict[str, Any]:
    """The chat body that has the server continue the assistant turn `turn`."""
    fmt = backend.card.reasoning_format
    lead = fmt.open if fmt.template_opened and fmt.open and not turn.startswith(fmt.open) else ""
    msgs = request.messages + (Message(role="assistant", content=(TextPart(text=lead + turn),)),)
    body = backend.build_body(replace(request, messages=msgs))
    body["max_tokens"] = max(1, max_new)
    if stop:
        body["stop"] = stop
    else:
        body.pop("stop", None)
    if backend.prefix_continuation == "vllm":
        body.update(continue_final_message=True, add_generation_prompt=False)
        if min_new:
            body["min_tokens"] = min_new
    return body


async def generate_openai_controlled(backend, request: ChatRequest, started: float) -> Completion:
    """One request under a think budget, or holding a planted thought (attacks/think_prefix.py)."""
    from .openai_api import RequestFailed, _Fail

    msgs, planted = planted_prefix(request.messages, request.continues_turn)
    bare = replace(request, messages=msgs, continues_turn=False)
    plan = backend.think_plan or free_plan(backend.settings.max_new_tokens)
    prompt_tokens: list[int | None] = []
    server_time = [0.0]

    async def astep(which, prefixes, n, stop, least):
        segs = []
        for turn in prefixes:  # one request: one item
            out, took = await backend.send(request, continuation_body(backend, bare, turn, n, stop, least))
            prompt_tokens.append(out["prompt_tokens"])
            server_time[0] += took
            # a server with a reasoning parser may move the continued thought into its own field
            text = (out["reasoning_content"] or "") + out["text"] if stop else out["text"]
            segs.append(Segment(ids=[], stopped=out["finish_reason"] == "stop", text=text,
                                count=out["completion_tokens"]))
        return segs

    try:
        done = (await agenerate_controlled([planted or ""], plan, backend.card.reasoning_format,
                                           backend.settings.max_new_tokens, astep))[0]
    except (RequestFailed, _Fail) as e:
        return backend._completion(request, time.perf_counter() - started, error=str(e))
    return backend._completion(request, server_time[0], text=done.text,
                               finish_reason="length" if done.at_limit else "stop",
                               prompt_tokens=prompt_tokens[0] if prompt_tokens else None,
                               completion_tokens=done.reasoning_tokens + done.answer_tokens,
                               reasoning_tokens=done.reasoning_tokens, answer_tokens=done.answer_tokens)
