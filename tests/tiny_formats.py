"""Tiny checkpoints that write their family's real reasoning format, for the format tests.

Each builder makes a model from a config (no download), with a chat template in its family's
convention, and trains it until greedy decoding of any prompt gives the family's raw output (a few
hundred steps: seconds on idle cores, minutes on a busy shared machine). Cached by conftest under module="tiny_formats" (editing this file rebuilds only these).

  build_hybrid_lm(path)         a text LM whose template honours enable_thinking (Qwen3 style): it
                                reasons and complies in mode on, refuses without reasoning in mode off
"""
from __future__ import annotations

import random
from pathlib import Path

import torch
from PIL import Image

import tiny_models as tm

HYBRID_ON = "<think>The user asks for steps. I will give them.</think>Sure, here is how to do it."
HYBRID_OFF = "I cannot help with that."

# Qwen3 / GLM-4.5V hybrids: enable_thinking=false writes an empty think block into the prompt.
HYBRID_TEMPLATE = tm.QWEN_TEMPLATE.replace(
    "<|im_start|>assistant\n{% endif %}",
    "<|im_start|>assistant\n{% if enable_thinking is defined and enable_thinking is false %}"
    "<think>\n\n</think>\n\n{% endif %}{% endif %}")


def _batch(processor, tok, convs, target, kwargs):
    pad = {"padding": True} if processor is tok else {"processor_kwargs": {"padding": True}}
    inputs = dict(processor.apply_chat_template(convs, add_generation_prompt=True, tokenize=True, return_dict=True,
                                                return_tensors="pt", **pad, **kwargs))
    if target is None:
        return inputs, None
    tail = torch.tensor(target).expand(inputs["input_ids"].shape[0], -1)
    for key in ("attention_mask", "mm_token_type_ids"):
        if key in inputs:
            inputs[key] = torch.cat([inputs[key], torch.full_like(tail, 1 if key == "attention_mask" else 0)], dim=1)
    labels = torch.cat([torch.full_like(inputs["input_ids"], -100), tail], dim=1)
    inputs["input_ids"] = torch.cat([inputs["input_ids"], tail], dim=1)
    return inputs, labels


def train_outputs(model, processor, tok, cases: list[tuple[dict, str]], *, with_image: bool, seed: int = 0,
                  max_steps: int = 1500) -> None:
    """Train until greedy decoding gives each case's target (then EOS) under its template kwargs."""
    tok.padding_side = "left"
    targets = [(kw, tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]) for kw, t in cases]
    rng = random.Random(seed)
    torch.manual_seed(seed)
    held_out = [tm._random_conversation(random.Random(10_000 + i), with_image) for i in range(6)]
    image = Image.new("RGB", (90, 60), (10, 200, 10))
    held_out += [[{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": t}]
                   if with_image else t}] for t in tm._HELD_OUT]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    steps = 0
    while True:
        model.train()
        for _ in range(25):
            for kw, target in targets:
                inputs, labels = _batch(processor, tok, [tm._random_conversation(rng, with_image) for _ in range(6)],
                                        target, kw)
                loss = model(**inputs, labels=labels).loss
                opt.zero_grad()
                loss.backward()
                opt.step()
            steps += 1
        model.eval()
        ok = loss.item() < 0.01
        for kw, target in targets:
            inputs, _ = _batch(processor, tok, held_out, None, kw)
            with torch.inference_mode():
                out = model.generate(**inputs, max_new_tokens=len(target) + 2, do_sample=False)
            ok = ok and all(o[:len(target)] == target for o in out[:, inputs["input_ids"].shape[1]:].tolist())
        if ok:
            return
        if steps >= max_steps:
            raise RuntimeError(f"train_outputs did not converge in {steps} steps: loss {loss.item():.4f}")


def build_hybrid_lm(path) -> Path:
    model, _, tok = tm._text_lm(0)
    tok.chat_template = HYBRID_TEMPLATE
    train_outputs(model, tok, tok, [({"enable_thinking": True}, HYBRID_ON), ({"enable_thinking": False}, HYBRID_OFF)],
                  with_image=False)
    return tm._save(path, model, tok, tok, "qwen")
