"""The vllm backend's parts that need no vLLM: options, message conversion, identity, the lazy import's
error, and `safemlrm serve-hint`. The engine itself is tested by tests/test_vllm_engine.py in the
separate environment `make test-vllm` builds (vLLM pins its own torch)."""
from __future__ import annotations

import base64
import importlib.util
import os
import subprocess
import sys

import pytest
import yaml

from safemlrm import registry
from safemlrm.errors import ConfigError, SafeMLRMError
from safemlrm.models.base import ChatRequest
from safemlrm.models.cards import ModelCard
from safemlrm.models.vllm import VLLMBackend, checkpoint_chat_template, serve_hint, to_openai_messages
from safemlrm.records import GenerationSettings, ImagePart, Message, TextPart

CARD = ModelCard(name="vl", hub_id="org/vl-7b", revision="abc123")


def test_registered_and_listed_without_vllm():
    assert registry.get("backend", "vllm") is VLLMBackend
    assert VLLMBackend.mode == "batch"


@pytest.mark.parametrize("options, message", [
    ({"tensor_parallel": 2}, r"model vl: invalid backend 'vllm' options\n  key 'options.tensor_parallel': unknown "
                             r"key. Did you mean 'tensor_parallel_size'\? Keys here: path, tensor_parallel_size"),
    ({"tensor_parallel_size": 0}, r"key 'options.tensor_parallel_size': Input should be greater than or equal to 1, "
                                  r"got 0"),
    ({"max_model_len": "8k"}, r"key 'options.max_model_len': Input should be a valid integer.*got '8k'"),
    ({"gpu_memory_utilization": 1.5}, r"'options.gpu_memory_utilization': Input should be less than or equal to 1, "
                                      r"got 1.5"),
    ({"dtype": "fp8"}, r"'options.dtype': must be one of auto, float16, bfloat16, float32, not 'fp8'"),
    ({"enforce_eager": "yes"}, r"'options.enforce_eager': Input should be a valid boolean, got 'yes'"),
])
def test_bad_options_name_model_and_option(options, message):
    with pytest.raises(ConfigError, match=message):
        VLLMBackend(CARD, GenerationSettings(), options)


def test_engine_and_sampling_arguments():
    b = VLLMBackend(CARD.model_copy(update={"trust_remote_code": True}),
                    GenerationSettings(max_new_tokens=64, do_sample=False, seed=7),
                    {"tensor_parallel_size": 2, "max_model_len": 8192, "max_images": 2})
    kw = b.engine_kwargs()
    assert kw["model"] == "org/vl-7b" and kw["revision"] == "abc123" and kw["tensor_parallel_size"] == 2
    assert kw["max_model_len"] == 8192 and kw["limit_mm_per_prompt"] == {"image": 2} and kw["trust_remote_code"]
    assert kw["seed"] == 7 and "max_num_seqs" not in kw
    assert b.sampling_kwargs() == {"max_tokens": 64, "seed": 7, "skip_special_tokens": True, "temperature": 0.0}
    assert "temperature" not in VLLMBackend(CARD, GenerationSettings(), {}).sampling_kwargs()  # model default


def test_messages_become_openai_parts_with_data_urls():
    png = b"\x89PNG\r\n\x1a\nfake"
    msgs = (Message(role="system", content=(TextPart(text="be careful"),)),
            Message(role="user", content=(ImagePart(sha256="f" * 64), TextPart(text="what is this?"))))
    out = to_openai_messages(msgs, {"f" * 64: png})
    assert out[0] == {"role": "system", "content": "be careful"}
    image, text = out[1]["content"]
    assert text == {"type": "text", "text": "what is this?"}
    assert image["type"] == "image_url"
    prefix = "data:image/png;base64,"
    assert image["image_url"]["url"].startswith(prefix)
    assert base64.b64decode(image["image_url"]["url"][len(prefix):]) == png
    with pytest.raises(KeyError, match="image fffffffffff"):
        to_openai_messages(msgs, {})


def test_identity_needs_no_vllm_and_follows_the_chat_template(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text('{"chat_template": "{{ messages }}"}')
    b = VLLMBackend(CARD, GenerationSettings(), {"path": str(tmp_path)})
    assert checkpoint_chat_template(str(tmp_path)) == "{{ messages }}"
    ident = b.identity()
    assert ident["backend"] == "vllm" and ident["model_id"] == str(tmp_path) and ident["chat_template"]
    (tmp_path / "chat_template.jinja").write_text("{{ other }}")  # the file form wins, as in transformers
    assert b.identity()["chat_template"] != ident["chat_template"]
    carded = VLLMBackend(CARD.model_copy(update={"chat_template": "{{ card }}"}), GenerationSettings(),
                         {"path": str(tmp_path)})
    assert carded.chat_template == "{{ card }}"


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_generate_without_vllm_says_how_to_get_it():
    b = VLLMBackend(CARD, GenerationSettings(), {})
    req = ChatRequest(key="k", probe_key="p", messages=(Message(role="user", content=(TextPart(text="hi"),)),))
    with pytest.raises(SafeMLRMError, match=r"pip install 'safemlrm\[vllm\]'.*backend: openai.*serve-hint"):
        b.generate([req])


def test_serve_hint_command_and_entry():
    command, entry = serve_hint(CARD, {"tensor_parallel_size": 2, "max_model_len": 8192, "dtype": "bfloat16",
                                       "device": "cuda"}, port=8123)
    assert command.startswith("vllm serve org/vl-7b --host 127.0.0.1 --port 8123 --served-model-name vl "
                              "--revision abc123 --tensor-parallel-size 2 --max-model-len 8192 --dtype bfloat16")
    assert """--limit-mm-per-prompt '{"image":1}'""" in command
    assert entry["backend"] == "openai" and entry["options"]["base_url"] == "http://127.0.0.1:8123/v1"
    assert entry["options"]["model"] == "vl"
    assert entry["options"]["prefix_continuation"] == "vllm"  # the card reasons (think): budgets work over HTTP
    base = ModelCard(name="b", hub_id="org/b", think_format="none")
    assert "prefix_continuation" not in serve_hint(base, {})[1]["options"]


def test_serve_hint_cli(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({
        "name": "h", "datasets": [{"name": "figstep"}],
        "models": [{"card": "r1-onevision-7b", "backend": "vllm", "options": {"max_model_len": 8192}},
                   {"card": "qwen2.5-vl-7b", "alias": "base"}]}))
    r = subprocess.run([sys.executable, "-m", "safemlrm.cli", "serve-hint", str(cfg), "--port", "9000"],
                       capture_output=True, text=True, env={**os.environ, "COLUMNS": "300"})
    assert r.returncode == 0, r.stderr
    assert "vllm serve Fancy-MLLM/R1-Onevision-7B --host 127.0.0.1 --port 9000" in r.stdout
    assert "--port 9001 --served-model-name qwen2.5-vl-7b" in r.stdout
    blocks = [b for b in r.stdout.split("\n\n") if b.strip()]
    assert len(blocks) == 2
    entry = yaml.safe_load(blocks[1].split("\n", 2)[2])["models"][0]  # after the comment and the command
    assert entry["alias"] == "base" and entry["backend"] == "openai"
    assert entry["options"]["base_url"] == "http://127.0.0.1:9001/v1"
    assert "generation" not in entry and "--seed" not in r.stdout  # nothing added that would make another run


def test_think_budget_plans_on_vllm_and_bad_ones_are_refused_before_any_load():
    from safemlrm.models.budget import LESS_OPENING

    thinker = ModelCard(name="th", hub_id="org/th", modalities=("text",))  # think_format: think (the default)
    b = VLLMBackend(thinker, GenerationSettings(max_new_tokens=64, think_budget=16), {})
    assert b.think_plan.cap == 16 and b.controls_reasoning and b.llm is None
    assert VLLMBackend(thinker, GenerationSettings(max_new_tokens=64, think_budget="less"), {}).think_plan.opening \
        == LESS_OPENING
    assert VLLMBackend(thinker, GenerationSettings(), {}).think_plan is None
    base = ModelCard(name="base", hub_id="org/b", think_format="none")
    with pytest.raises(ConfigError, match=r"model base \(backend vllm\): generation.think_budget needs a reasoning "
                                          r"model, but its card has think_format: none"):
        VLLMBackend(base, GenerationSettings(think_budget=8), {})
    with pytest.raises(ConfigError, match=r"model base \(backend vllm\): generation.think_prefix needs a reasoning"):
        VLLMBackend(base, GenerationSettings(think_prefix="safety_reminder"), {})
    with pytest.raises(ConfigError, match="think_budget 64 leaves no room for the answer within max_new_tokens 64"):
        VLLMBackend(thinker, GenerationSettings(max_new_tokens=64, think_budget=64), {})
    with pytest.raises(ConfigError, match="think_min_tokens 32 exceeds the reasoning cap 16"):
        VLLMBackend(thinker, GenerationSettings(max_new_tokens=64, think_budget=16, think_min_tokens=32), {})
