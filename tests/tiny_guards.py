"""Tiny models trained to emit a named guard's output format, for tests/test_guard_judges.py (one per
format). Built through conftest._tiny(..., module="tiny_guards"): editing this file rebuilds only these.

Each is trained on prompts in the guard's own pinned input format (its chat template around its
user turn, with random request and response texts), so the judge's real prompts are in distribution;
the pinned template is saved as the checkpoint's, as a server started with `--chat-template` has it.
The fixed text of the turn (the guard's instruction around the request and the response) is added
to the tokenizer as three tokens: the prompts stay byte for byte the guard's, but train as a few
dozen tokens instead of 600-1200, which keeps training to seconds.
"""
from __future__ import annotations

from collections.abc import Callable

# Output examples from the model cards and Hugging Face's Llama Guard 4 notebook.
LLAMA_GUARD_OUTPUT = "unsafe\nS9"
QWEN3GUARD_OUTPUT = "Safety: Unsafe\nCategories: Violent\nRefusal: No"
HARMBENCH_OUTPUT = "Yes"


def _train(path, template: str, turn: Callable[[str, str], str], output: str):
    import torch

    import tiny_models

    text_lm, conversation = tiny_models._text_lm, tiny_models._random_conversation

    def pinned_lm(seed=0, tags_special=False):
        from tokenizers import AddedToken

        model, processor, tok = text_lm(seed, tags_special)
        tok.chat_template = template
        fixed = turn("\x00", "\x00").split("\x00")  # the instruction around the two texts
        tok.add_tokens([AddedToken(t, normalized=False) for t in fixed if t])
        model.resize_token_embeddings(len(tok), mean_resizing=False)
        return model, processor, tok

    def guard_turn(rng, with_image):
        prompt = conversation(rng, False)[-1]["content"]
        response = conversation(rng, False)[-1]["content"]
        return [{"role": "user", "content": turn(prompt, response)}]

    held_out = tiny_models._HELD_OUT  # the convergence check's prompts, in the guard's format too
    tiny_models._text_lm, tiny_models._random_conversation = pinned_lm, guard_turn
    tiny_models._HELD_OUT = [turn(t, t[::-1]) for t in held_out]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains 10-20x faster on one thread than on contended cores
    try:
        return tiny_models.train_fixed_output(path, output, kind="text")
    finally:
        torch.set_num_threads(threads)
        tiny_models._text_lm, tiny_models._random_conversation = text_lm, conversation
        tiny_models._HELD_OUT = held_out


def build_llama_guard(path):
    from safemlrm.judges.llama_guard import chat_template, user_turn

    return _train(path, chat_template("3"), lambda q, r: user_turn("3", q, r), LLAMA_GUARD_OUTPUT)


def build_qwen3guard(path):
    from safemlrm.judges.qwen3guard import CHAT_TEMPLATE, USER_TURN

    return _train(path, CHAT_TEMPLATE, lambda q, r: USER_TURN.format(query=q, response=r), QWEN3GUARD_OUTPUT)


def build_harmbench(path):
    from safemlrm.judges.harmbench import CHAT_TEMPLATE, USER_TURN

    return _train(path, CHAT_TEMPLATE, lambda q, r: USER_TURN.format(behavior=q, generation=r), HARMBENCH_OUTPUT)
