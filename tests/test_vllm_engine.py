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
