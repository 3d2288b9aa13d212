"""Reasoning control on the hf backend: each phase of models/budget.py as a continuation of the
assistant turn, rendered with the model's chat template and tokenized with its own processor."""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from ..records import Completion
from ..errors import SafeMLRMError
from .budget import Segment, free_plan, generate_controlled, planted_prefix


def _images(conv: list[dict[str, Any]]) -> list[Any]:
    return [b["image"] for m in conv if isinstance(m["content"], list) for b in m["content"] if "image" in b]


def hf_continue(backend, items: list, prefixes: list[str], max_new: int, stop: list[str],
                min_new: int = 0) -> list[Segment]:
    """Generate after each rendered prompt + `prefixes[i]`, stopping at end of turn or a stop string."""
    import torch

    torch.manual_seed(backend.settings.seed)  # every phase seeded alike: reruns reproduce
    convs = [backend._conversation(it.request, True) for it in items]
    rendered = backend._render(convs, tokenize=False)
    texts = [t + p for t, p in zip(rendered, prefixes)]
    tok = backend._tokenizer_of(backend.processor)
    # the template writes the BOS itself where it has one (as apply_chat_template's tokenizing does)
    kw: dict[str, Any] = dict(padding=True, return_tensors="pt",
                              add_special_tokens=not (tok.bos_token and texts[0].startswith(tok.bos_token)))
    if backend.text_only:
        inputs = dict(tok(texts, **kw))
    else:
        images = [_images(c) for c in convs]
        inputs = dict(backend.processor(text=texts, images=images if any(images) else None, **kw))
    model = backend.model
    inputs = {k: (v.to(model.device, model.dtype) if torch.is_floating_point(v) else v.to(model.device))
              if hasattr(v, "to") else v for k, v in inputs.items()}
    gen = backend._generation_kwargs(max(1, max_new))
    if stop:
        gen.update(stop_strings=stop, tokenizer=tok)
    if min_new:
        gen["min_new_tokens"] = min_new
    with torch.inference_mode():
        out = model.generate(**inputs, **gen)
    ends = backend._eos_ids() | {tok.pad_token_id}  # a sequence stopped at a string is padded after it
    segs = []
    for ids in out[:, inputs["input_ids"].shape[1]:].tolist():
        cut = next((i for i, t in enumerate(ids) if t in ends), None)
        kept = ids[:cut] if cut is not None else ids
        hit = bool(stop) and any(x in backend.decode(kept) for x in stop)
        segs.append(Segment(ids=kept[:max_new], stopped=cut is not None or hit))
    return segs


def generate_hf_controlled(backend, items: list) -> list[Completion]:
    """A batch under a think budget, or holding planted thoughts (attacks/think_prefix.py)."""
    start = time.perf_counter()
    planted = [planted_prefix(it.request.messages, it.request.continues_turn) for it in items]
    if any(p is not None for _, p in planted) and (not backend.card.is_reasoning
                                                  or backend.card.reasoning_format.open is None):
        raise SafeMLRMError(f"model {backend.card.name}: a think prefix needs a reasoning model with think "
                            f"markers, but its card has think_format: {backend.card.format_name}"
                            + (" (thinking: off)" if backend.card.thinking == "off" else ""))
    bare = [replace(it, request=replace(it.request, messages=msgs)) for it, (msgs, _) in zip(items, planted)]
    plan = backend.think_plan or free_plan(backend.settings.max_new_tokens)

    def step(which, prefixes, n, stop, least):
        return hf_continue(backend, [bare[i] for i in which], prefixes, n, stop, least)

    done = generate_controlled([p or "" for _, p in planted], plan, backend.card.reasoning_format,
                               backend.settings.max_new_tokens, step, backend.decode)
    latency = (time.perf_counter() - start) / len(items)
    return [Completion(key=it.request.key, probe_key=it.request.probe_key, model=backend.card.name, text=c.text,
                       finish_reason="length" if c.at_limit else "stop", latency_s=latency,
                       completion_tokens=c.reasoning_tokens + c.answer_tokens,
                       reasoning_tokens=c.reasoning_tokens, answer_tokens=c.answer_tokens)
            for it, c in zip(items, done)]
