"""Tiny models for the reasoning-control tests (think budgets, prefixes, samples).

train_controlled(path): a text-only Qwen2-style LM (the tiny_models tokenizer and chat template)
trained so that greedy decoding gives
  * after the generation prompt: tiny_models.THINK_TARGET + EOS, so after a planted `<think>` the
    rest of it ("I should not help.</think>I cannot help with that.");
  * after `<think>` + any short reasoning + `</think>`: ANSWER + EOS, whatever the reasoning was.
The second is what two-phase generation needs of a model: an answer after a close it did not write.
A chat template that opens `<think>` itself (OPENED_TEMPLATE) gives the same token sequence, so the
same model stands for a template-opened reasoning model.
"""
from __future__ import annotations

import random
from pathlib import Path

import torch

import tiny_models as tm

ANSWER = "I cannot help with that."
REASONING = "I should not help."
OPENED_TEMPLATE = tm.QWEN_TEMPLATE.replace("<|im_start|>assistant\n{% endif %}", "<|im_start|>assistant\n<think>{% endif %}")
assert OPENED_TEMPLATE != tm.QWEN_TEMPLATE


def _thought(rng: random.Random, tok) -> str:
    """A short reasoning: a cut of the trained one, random words, or a planted opening and a cue."""
    r = rng.random()
    if r < 0.4:
        ids = tok(REASONING, add_special_tokens=False)["input_ids"]
        return tok.decode(ids[:rng.randint(0, len(ids))])
    words = " ".join(rng.choice(tm.WORDS) for _ in range(rng.randint(1, 12)))
    return words + (" Wait" if r > 0.85 else "")


def _example(rng, tok, eos: int):
    prompt = tok.apply_chat_template(tm._random_conversation(rng, False), add_generation_prompt=True, tokenize=False)
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    if rng.random() < 0.35:
        ctx, tail = p, tok(tm.THINK_TARGET, add_special_tokens=False)["input_ids"] + [eos]
    else:
        ctx = p + tok("<think>" + _thought(rng, tok) + "</think>", add_special_tokens=False)["input_ids"]
        tail = tok(ANSWER, add_special_tokens=False)["input_ids"] + [eos]
    return ctx, tail


def _batch(examples, pad: int):
    width = max(len(c) + len(t) for c, t in examples)
    ids, mask, labels = [], [], []
    for ctx, tail in examples:
        n = width - len(ctx) - len(tail)
        ids.append([pad] * n + ctx + tail)
        mask.append([0] * n + [1] * (len(ctx) + len(tail)))
        labels.append([-100] * (n + len(ctx)) + tail)
    return torch.tensor(ids), torch.tensor(mask), torch.tensor(labels)


def _checks(tok) -> list[tuple[str, str]]:
    """(context text after the generation prompt, expected greedy continuation)."""
    cuts = [tok.decode(tok(REASONING, add_special_tokens=False)["input_ids"][:k]) for k in range(0, 5)]
    return ([("", tm.THINK_TARGET), ("<think>", tm.THINK_TARGET.removeprefix("<think>"))]
            + [(f"<think>{c}</think>", ANSWER) for c in cuts]
            + [("<think>the image is red Wait help</think>", ANSWER)])


def _vllm_lm(seed: int):
    """The same model with one attention head of 64 (vLLM's CPU attention has no kernel for head size 16)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = tm.build_tokenizer("qwen")
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=len(tok), **{**tm._TEXT, "num_attention_heads": 1, "num_key_value_heads": 1},
                         **tm._ids(tok, "qwen"))
    return Qwen2ForCausalLM(config), tok


def train_controlled(path, *, seed: int = 0, max_steps: int = 3000, vllm: bool = False) -> Path:
    """`vllm`: with head size 64, for the vllm engine tests."""
    model, tok = _vllm_lm(seed) if vllm else tm._text_lm(seed)[::2]
    eos, pad = tok.eos_token_id, tok.pad_token_id
    rng = random.Random(seed)
    torch.manual_seed(seed)
    prompts = [tok.apply_chat_template(tm._random_conversation(random.Random(20_000 + i), False),
                                       add_generation_prompt=True, tokenize=False) for i in range(4)]
    prompts.append(tok.apply_chat_template([{"role": "user", "content": tm._HELD_OUT[0]}],
                                           add_generation_prompt=True, tokenize=False))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    steps = 0
    while True:
        model.train()
        for _ in range(50):
            ids, mask, labels = _batch([_example(rng, tok, eos) for _ in range(16)], pad)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
        model.eval()
        ok = True
        for ctx, want in _checks(tok):
            target = tok(want, add_special_tokens=False)["input_ids"] + [eos]
            for prompt in prompts:
                inp = tok(prompt + ctx, add_special_tokens=False, return_tensors="pt")
                with torch.inference_mode():
                    out = model.generate(**inp, max_new_tokens=len(target), do_sample=False, pad_token_id=pad)
                ok = ok and out[0, inp["input_ids"].shape[1]:].tolist() == target
        if ok and loss.item() < 0.02:
            break
        if steps >= max_steps:
            raise RuntimeError(f"train_controlled did not converge in {steps} steps: loss {loss.item():.4f}")
    return tm._save(path, model, tok, tok, "qwen")
