"""The vllm backend on a real vLLM engine (CPU build), on a tiny random Qwen2 built here. Runs in the
environment `make test-vllm` makes (vLLM pins its own torch); skipped where vLLM is not installed."""
from __future__ import annotations

import os

import pytest

vllm = pytest.importorskip("vllm", reason="vLLM is not installed here: `make test-vllm` runs this file")

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine in this process: quicker, simpler
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB

from safemlrm.config import parse_config  # noqa: E402
from safemlrm.models.base import ChatRequest  # noqa: E402
from safemlrm.models.cards import ModelCard  # noqa: E402
from safemlrm.models.vllm import VLLMBackend, to_openai_messages  # noqa: E402
from safemlrm.records import GenerationSettings, Message, TextPart  # noqa: E402
from safemlrm.pipeline.run import Runner  # noqa: E402


@pytest.fixture(scope="module")
def qwen2_dir(tmp_path_factory):
    """A random Qwen2 with head size 64 (vLLM's CPU attention has no kernel for the 16 of tiny_thinker)."""
    from tiny_models import build_vllm_lm

    return build_vllm_lm(tmp_path_factory.mktemp("qwen2-h64"))


@pytest.fixture(scope="module")
def backend(qwen2_dir):
    card = ModelCard(name="tiny", hub_id=str(qwen2_dir), think_format="none", modalities=("text",))
    b = VLLMBackend(card, GenerationSettings(max_new_tokens=12, do_sample=False),
                    {"dtype": "float32", "max_model_len": 512, "enforce_eager": True, "max_num_seqs": 8})
    yield b
    b.close()


def _req(i: int, text: str) -> ChatRequest:
    return ChatRequest(key=f"k{i}", probe_key=f"p{i}", messages=(Message(role="user", content=(TextPart(text=text),)),))


def test_backend_matches_raw_llm_chat(backend):
    prompts = ["how to make a box", "tell me about the red chart", "explain the steps"]
    got = backend.generate([_req(i, p) for i, p in enumerate(prompts)])
    raw = backend.llm.chat([to_openai_messages(_req(0, p).messages, {}) for p in prompts],
                           vllm.SamplingParams(max_tokens=12, temperature=0.0), use_tqdm=False)
    assert [c.text for c in got] == [r.outputs[0].text for r in raw]
    assert all(c.error is None and c.completion_tokens == 12 and c.finish_reason == "length" for c in got)
    assert [c.prompt_tokens for c in got] == [len(r.prompt_token_ids) for r in raw]
    assert [c.key for c in got] == ["k0", "k1", "k2"]


def test_run_with_vllm_backend_stores_and_resumes(tmp_path, qwen2_dir):
    import yaml

    cards = tmp_path / "cards.yaml"
    cards.write_text(yaml.safe_dump([{"name": "tiny", "hub_id": str(qwen2_dir), "think_format": "none",
                                      "modalities": ["text"]}]))
    cfg = parse_config({
        "name": "v", "cards": [str(cards)], "datasets": [{"name": "synthetic", "options": {"size": 5}}],
        "models": [{"card": "tiny", "backend": "vllm", "generation": {"max_new_tokens": 8, "do_sample": False},
                    "options": {"dtype": "float32", "max_model_len": 512, "enforce_eager": True}}]})
    stats = Runner(cfg, tmp_path / "run", show_progress=False).run()
    assert stats.model_calls == 5 and stats.errors == 0
    again = Runner(cfg, tmp_path / "run", show_progress=False).run()
    assert again.model_calls == 0


# --- think budgets on the engine (models/vllm_control.py) -----------------------------------------


@pytest.fixture(scope="module")
def controlled_dir(tmp_path_factory):
    """tiny_control's trained thinker, with head size 64 for vLLM's CPU attention."""
    from conftest import _tiny
    from tiny_control import train_controlled

    return _tiny(tmp_path_factory, "controlled-vllm", lambda p: train_controlled(p, vllm=True), module="tiny_control")


@pytest.fixture(scope="module")
def thinker(controlled_dir):
    card = ModelCard(name="ctl", hub_id=str(controlled_dir), modalities=("text",))
    b = VLLMBackend(card, GenerationSettings(max_new_tokens=40, do_sample=False),
                    {"dtype": "float32", "max_model_len": 512, "enforce_eager": True, "max_num_seqs": 8})
    yield b
    b.close()


def _with(backend, **settings):
    """The same engine under other settings (one engine per module: a load takes seconds)."""
    b = VLLMBackend(backend.card, GenerationSettings(max_new_tokens=40, do_sample=False, **settings),
                    {"dtype": "float32", "max_model_len": 512, "enforce_eager": True})
    b.llm = backend.load()
    return b


PROMPTS = ["how do I pick a lock", "tell me about a red box and a blue chart please", "x"]


@pytest.mark.parametrize("budget", [1, 3])
def test_think_budget_is_obeyed_exactly_on_vllm(thinker, budget):
    from safemlrm.models.reasoning import split_completion
    from tiny_control import ANSWER, REASONING

    b = _with(thinker, think_budget=budget)
    tok = b.load().get_tokenizer()
    full = tok(REASONING, add_special_tokens=False)["input_ids"]
    out = b.generate([_req(i, p) for i, p in enumerate(PROMPTS)])
    for c in out:
        assert c.error is None, c.error
        assert c.reasoning_tokens == budget  # the model would think longer: cut at exactly N
        assert c.text.startswith("<think>") and c.text.count("</think>") == 1
        r = split_completion(c)
        assert r.reasoning == tok.decode(full[:budget]).strip() and r.answer == ANSWER  # answered after the close
        assert c.answer_tokens == len(tok(ANSWER, add_special_tokens=False)["input_ids"])
        assert c.completion_tokens == c.reasoning_tokens + c.answer_tokens


def test_unbudgeted_vllm_thinker_and_zero(thinker):
    from safemlrm.models.reasoning import split_completion
    from tiny_control import ANSWER
    from tiny_models import THINK_TARGET

    plain = thinker.generate([_req(0, PROMPTS[0])])[0]
    assert plain.text == THINK_TARGET  # the trained turn, through LLM.chat
    zero = _with(thinker, think_budget="zero").generate([_req(i, p) for i, p in enumerate(PROMPTS)])
    for c in zero:
        r = split_completion(c)
        assert r.reasoning == "" and r.answer == ANSWER and c.reasoning_tokens == 0
    roomy = _with(thinker, think_budget=30).generate([_req(0, PROMPTS[0])])[0]
    assert roomy.text == THINK_TARGET  # a budget above the natural length changes nothing


def test_a_planted_prefix_opens_the_vllm_reasoning(thinker):
    from safemlrm.models.reasoning import split_completion
    from tiny_control import ANSWER

    planted = ChatRequest(key="pk", probe_key="pp", continues_turn=True, messages=_req(0, PROMPTS[0]).messages + (
        Message(role="assistant", content=(TextPart(text="I should"),)),))
    c = thinker.generate([planted])[0]
    assert c.text == "<think>I should not help.</think>" + ANSWER
    assert split_completion(c).reasoning.startswith("I should")
    tok = thinker.load().get_tokenizer()
    assert c.reasoning_tokens == len(tok(" not help.", add_special_tokens=False)["input_ids"])  # its own tokens only
