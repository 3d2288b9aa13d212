"""Reasoning control on the vllm backend: each phase of models/budget.py as a continuation of the
rendered prompt text. The chat template is rendered here with the engine's own tokenizer
(add_generation_prompt, then the assistant turn so far appended as text), not through
`continue_final_message`: a template that drops the reasoning of an assistant message (R1's does)
would otherwise lose the thought before the answer is generated."""
from __future__ import annotations

import io
import time
from dataclasses import replace
from typing import Any

from ..errors import SafeMLRMError
from ..records import Completion, ImagePart, TextPart
from .base import ChatRequest
from .budget import Segment, free_plan, generate_controlled, planted_prefix
from .thinking import template_kwargs


def _conversation(request: ChatRequest) -> tuple[list[dict[str, Any]], list[Any]]:
    """The messages as a Hugging Face chat template reads them, and the request's images (PIL), in order."""
    conv: list[dict[str, Any]] = []
    images: list[Any] = []
    for m in request.messages:
        if len(m.content) == 1 and isinstance(m.content[0], TextPart):
            conv.append({"role": m.role, "content": m.content[0].text})
            continue
        parts: list[dict[str, Any]] = []
        for p in m.content:
            if isinstance(p, TextPart):
                parts.append({"type": "text", "text": p.text})
            elif isinstance(p, ImagePart):
                from PIL import Image

                if p.sha256 not in request.images:
                    raise KeyError(f"image {p.sha256[:12]} is missing from the request")
                images.append(Image.open(io.BytesIO(request.images[p.sha256])).convert("RGB"))
                parts.append({"type": "image"})
        conv.append({"role": m.role, "content": parts})
    return conv, images


class _Tokens:
    """The engine tokenizer's view the control loop needs: decode that keeps reasoning tags, end ids."""

    def __init__(self, backend) -> None:
        self.tok = backend.load().get_tokenizer()
        vocab = self.tok.get_vocab()
        keep = {vocab[t] for t in backend.card.reasoning_format.markers if t in vocab}
        special = set(self.tok.all_special_ids)
        special |= {i for i, t in getattr(self.tok, "added_tokens_decoder", {}).items() if getattr(t, "special", False)}
        self.skip = special - keep
        self.ends = {i for i in (self.tok.eos_token_id, self.tok.pad_token_id) if i is not None} | self.skip

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode([i for i in ids if i not in self.skip], skip_special_tokens=False,
                               clean_up_tokenization_spaces=False)


def vllm_continue(backend, tokens: _Tokens, requests: list[ChatRequest], prefixes: list[str], max_new: int,
                  stop: list[str], min_new: int = 0) -> list[Segment]:
    """Generate after each rendered prompt + `prefixes[i]`, stopping at end of turn or a stop string."""
    tok = tokens.tok
    prompts = []
    for req, prefix in zip(requests, prefixes):
        conv, images = _conversation(req)
        text = tok.apply_chat_template(conv, chat_template=backend.chat_template, add_generation_prompt=True,
                                       tokenize=False, **template_kwargs(backend.card)) + prefix
        # the template writes the BOS itself where it has one: no second one from the tokenizer
        bos = getattr(tok, "bos_token", None)
        prompt: dict[str, Any] = {"prompt_token_ids": tok.encode(text, add_special_tokens=not (bos and text.startswith(bos)))}
        if images:
            prompt["multi_modal_data"] = {"image": images if len(images) > 1 else images[0]}
        prompts.append(prompt)
    # every phase seeded alike (SamplingParams.seed): reruns reproduce
    params = backend._sampling_params(max_tokens=max(1, max_new), stop=stop or None, include_stop_str_in_output=True,
                                      min_tokens=min_new, skip_special_tokens=False)
    segs = []
    for out in backend.load().generate(prompts, params, use_tqdm=False):
        gen = out.outputs[0]
        ids = list(gen.token_ids)
        cut = next((i for i, t in enumerate(ids) if t in tokens.ends), None)  # the end of turn is not the model's text
        segs.append(Segment(ids=ids[:cut] if cut is not None else ids, stopped=gen.finish_reason == "stop"))
    return segs


def generate_vllm_controlled(backend, requests: list[ChatRequest]) -> list[Completion]:
    """A batch under a think budget, or holding planted thoughts (attacks/think_prefix.py)."""
    start = time.perf_counter()
    planted = [planted_prefix(r.messages, r.continues_turn) for r in requests]
    card = backend.card
    if any(p is not None for _, p in planted) and (not card.is_reasoning or card.reasoning_format.open is None):
        raise SafeMLRMError(f"model {card.name}: a think prefix needs a reasoning model with think markers, "
                            f"but its card has think_format: {card.format_name}")
    bare = [replace(r, messages=msgs) for r, (msgs, _) in zip(requests, planted)]
    plan = backend.think_plan or free_plan(backend.settings.max_new_tokens)
    tokens = _Tokens(backend)

    def step(which, prefixes, n, stop, least):
        return vllm_continue(backend, tokens, [bare[i] for i in which], prefixes, n, stop, least)

    done = generate_controlled([p or "" for _, p in planted], plan, card.reasoning_format,
                               backend.settings.max_new_tokens, step, tokens.decode)
    latency = (time.perf_counter() - start) / len(requests)
    return [Completion(key=r.key, probe_key=r.probe_key, model=card.name, text=c.text,
                       finish_reason="length" if c.at_limit else "stop", latency_s=latency,
                       completion_tokens=c.reasoning_tokens + c.answer_tokens,
                       reasoning_tokens=c.reasoning_tokens, answer_tokens=c.answer_tokens)
            for r, c in zip(requests, done)]
