"""Think budgets and planted thoughts over HTTP (models/openai_control.py), against a real HTTP server
(FaultServer's Thinker: a deterministic reasoning "model" that continues an assistant prefix the way
vLLM's server and llama.cpp's do, and starts a new turn where a server would)."""
from __future__ import annotations

import asyncio

import pytest

from safemlrm.errors import ConfigError
from safemlrm.models.base import ChatRequest
from safemlrm.models.cards import ModelCard
from safemlrm.models.openai_api import OpenAIBackend
from safemlrm.models.reasoning import split_completion
from safemlrm.records import Completion, GenerationSettings, Message, Outcome, TextPart
from servers import FaultServer, Thinker, fault_server  # noqa: F401

REASONING = "I should not help with that request at all."
ANSWER = "I cannot help with that."
TURN = f"<think>{REASONING}</think>{ANSWER}"
CARD = ModelCard(name="th", hub_id="org/th", modalities=("text",))  # think_format: think
FAST = {"backoff_base": 0.01, "backoff_max": 0.05, "timeout": 5, "max_retries": 1}


def chat(text="how do I pick a lock", planted=None) -> ChatRequest:
    msgs = (Message(role="user", content=(TextPart(text=text),)),)
    if planted:
        msgs += (Message(role="assistant", content=(TextPart(text=planted),)),)
    return ChatRequest(key="ck", probe_key="pk", messages=msgs, continues_turn=bool(planted))


def run(srv: FaultServer, req: ChatRequest, card: ModelCard = CARD, server: str = "vllm", **settings) -> Completion:
    b = OpenAIBackend(card, GenerationSettings(max_new_tokens=30, **settings),
                      {"base_url": srv.base_url, "prefix_continuation": server, **FAST})

    async def go():
        try:
            return await b.agenerate(req)
        finally:
            await b.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize("server", ["vllm", "llamacpp"])
@pytest.mark.parametrize("budget", [1, 3])
def test_budget_over_http_is_obeyed_and_answered(server, budget):
    with FaultServer(thinker=Thinker(TURN, continues=server)) as srv:
        c = run(srv, chat(), server=server, think_budget=budget)
    assert c.error is None, c.error
    r = split_completion(c)
    assert c.reasoning_tokens == budget and r.reasoning == " ".join(REASONING.split()[:budget])
    assert r.answer == ANSWER and r.outcome is Outcome.COMPLETE and c.text.count("</think>") == 1
    assert c.answer_tokens == len(ANSWER.split()) and c.completion_tokens == budget + c.answer_tokens
    first, second = srv.bodies
    assert first["max_tokens"] == budget and first["stop"] == ["</think>"]
    assert first["messages"][-1] == {"role": "assistant", "content": "<think>"}
    assert second["messages"][-1]["content"] == "<think>" + r.reasoning + "</think>" and "stop" not in second
    assert second["max_tokens"] == 30 - budget
    if server == "vllm":
        assert first["continue_final_message"] is True and first["add_generation_prompt"] is False
        assert second["min_tokens"] == 1
    else:  # llama.cpp continues a final assistant message by itself: no vLLM-only fields
        assert not {"continue_final_message", "add_generation_prompt", "min_tokens"} & (set(first) | set(second))


def test_zero_less_and_a_roomy_budget_over_http():
    from safemlrm.models.budget import LESS_OPENING

    with FaultServer(thinker=Thinker(TURN, continues="vllm")) as srv:
        zero = run(srv, chat(), think_budget="zero")
        assert len(srv.bodies) == 1  # no reasoning phase at all
        less = run(srv, chat(), think_budget="less")
        roomy = run(srv, chat(), think_budget=20)
    assert split_completion(zero).reasoning == "" and split_completion(zero).answer == ANSWER
    assert zero.reasoning_tokens == 0
    assert split_completion(less).reasoning == LESS_OPENING and split_completion(less).answer == ANSWER
    assert roomy.text == TURN and roomy.reasoning_tokens == len(REASONING.split())


def test_template_opened_cards_send_the_marker_but_record_the_turn_as_the_template_reads():
    card = CARD.model_copy(update={"name": "opened", "think_opened_by_template": True})
    with FaultServer(thinker=Thinker(TURN, continues="vllm")) as srv:
        c = run(srv, chat(), card=card, think_budget=2)
    assert srv.bodies[0]["messages"][-1]["content"] == "<think>"  # the template writes no generation prompt here
    assert c.text == "I should</think>" + ANSWER  # as the split of a template-opened card reads it
    assert split_completion(c, think_opened_by_template=True).reasoning == "I should"


def test_a_planted_thought_is_continued_over_http():
    with FaultServer(thinker=Thinker(TURN, continues="vllm")) as srv:
        c = run(srv, chat(planted="Safety first."))
    r = split_completion(c)
    assert r.reasoning == "Safety first. " + REASONING and r.answer == ANSWER
    assert c.reasoning_tokens == len(REASONING.split())  # the planted words are not the model's
    assert srv.bodies[0]["messages"][-1]["content"] == "<think>Safety first."


def test_a_server_that_does_not_continue_would_start_a_new_turn():
    """What prefix_continuation guards against: a server (or one started with --no-prefill-assistant)
    that renders the assistant prefix as a finished turn answers from the start, ignoring the budget's
    thought. The Thinker plays such a server when it does not continue."""
    with FaultServer(thinker=Thinker(TURN, continues=None)) as srv:
        c = run(srv, chat(), think_budget=2)
    assert c.text.endswith("</think>" + TURN)  # phase two got a whole new turn, not an answer


def test_no_continuation_refuses_budget_and_prefix_naming_option_and_backend(fault_server):
    for setting in ({"think_budget": 8}, {"think_prefix": "safety_reminder"}):
        with pytest.raises(ConfigError, match=r"model th: generation\.think_\w+ is not supported by backend openai.*"
                                              r"set the option prefix_continuation"):
            OpenAIBackend(CARD, GenerationSettings(max_new_tokens=30, **setting), {"base_url": fault_server.base_url})
    assert fault_server.requests == 0  # refused before the first call
    with pytest.raises(ConfigError, match=r"options.prefix_continuation': must be one of vllm, llamacpp, none"):
        OpenAIBackend(CARD, GenerationSettings(), {"base_url": fault_server.base_url, "prefix_continuation": "tgi"})
    with pytest.raises(ConfigError, match=r"model base \(backend openai\): generation.think_budget needs a reasoning"):
        OpenAIBackend(ModelCard(name="base", hub_id="b", think_format="none"), GenerationSettings(think_budget=4),
                      {"base_url": fault_server.base_url, "prefix_continuation": "vllm"})
    plain = OpenAIBackend(CARD, GenerationSettings(), {"base_url": fault_server.base_url})
    cont = OpenAIBackend(CARD, GenerationSettings(), {"base_url": fault_server.base_url, "prefix_continuation": "vllm"})
    assert not plain.controls_reasoning and cont.controls_reasoning
    assert "prefix_continuation" not in plain.identity() and cont.identity()["prefix_continuation"] == "vllm"


def test_a_failed_phase_is_a_completion_error():
    with FaultServer(thinker=Thinker(TURN, continues="vllm")) as srv:
        srv.script("ok", 400)  # the reasoning phase answers, the answer phase is refused
        c = run(srv, chat(), think_budget=2)
    assert c.error is not None and c.error.startswith("HTTP 400") and c.text == ""
