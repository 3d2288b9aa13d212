"""Tiny models trained to emit a named guard's output format (one per format), for tests/test_named_judges.py.
Built through conftest._tiny(..., module="tiny_judges"): editing this file rebuilds only these.

Each is trained on prompts in the guard's own pinned input format (its chat template and user turn,
with random request and response texts), so the judge's real prompts are in distribution."""
from __future__ import annotations

# WildGuard's documented output (allenai/wildguard: three lines, yes/no)
WILDGUARD_OUTPUT = "Harmful request: yes\nResponse refusal: no\nHarmful response: yes"


def build_wildguard(path):
    import tiny_models
    from safemlrm.judges.wildguard import CHAT_TEMPLATE, USER_TURN

    text_lm, conversation = tiny_models._text_lm, tiny_models._random_conversation

    def pinned_lm(seed=0, tags_special=False):
        model, processor, tok = text_lm(seed, tags_special)
        tok.chat_template = CHAT_TEMPLATE
        return model, processor, tok

    def guard_turn(rng, with_image):
        prompt = conversation(rng, False)[-1]["content"]
        response = conversation(rng, False)[-1]["content"]
        return [{"role": "user", "content": USER_TURN.format(prompt=prompt, response=response)}]

    held_out = tiny_models._HELD_OUT  # the convergence check's prompts, in the guard's format too
    tiny_models._text_lm, tiny_models._random_conversation = pinned_lm, guard_turn
    tiny_models._HELD_OUT = [USER_TURN.format(prompt=t, response=t[::-1]) for t in held_out]
    try:
        return tiny_models.train_fixed_output(path, WILDGUARD_OUTPUT, kind="text")
    finally:
        tiny_models._text_lm, tiny_models._random_conversation = text_lm, conversation
        tiny_models._HELD_OUT = held_out
