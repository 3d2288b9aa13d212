import pytest

from safemlrm.models.reasoning import split_completion
from safemlrm.records import Completion, Outcome


def comp(text, finish="stop", reasoning_content=None, error=None):
    return Completion(key="k", probe_key="p", model="m", text=text, finish_reason=finish,
                      reasoning_content=reasoning_content, error=error)


def test_think_then_answer():
    r = split_completion(comp("<think>step 1\nstep 2</think>\n\nThe answer."))
    assert (r.reasoning, r.answer, r.outcome) == ("step 1\nstep 2", "The answer.", Outcome.COMPLETE)
    assert r.full == "<think>step 1\nstep 2</think>\n\nThe answer."


def test_cut_at_last_close_tag():
    r = split_completion(comp("<think>a</think> b </think> final"))
    assert r.reasoning == "a\n\nb"  # the blocks joined in order, without the inner tags
    assert r.answer == "final"


def test_answer_tags_unwrapped():
    r = split_completion(comp("<think>plan</think> <answer>Paris</answer>"))
    assert (r.reasoning, r.answer, r.outcome) == ("plan", "Paris", Outcome.COMPLETE)


def test_answer_tag_never_closed_is_truncated():
    r = split_completion(comp("<think>plan</think><answer>Par", finish="length"))
    assert r.answer == "Par" and r.outcome is Outcome.TRUNCATED


def test_no_close_tag_is_unclosed_not_a_seven_character_cut():
    text = "<think>I will explain how to do the harmful thing in detail, step by step"
    r = split_completion(comp(text, finish="length"))
    assert r.outcome is Outcome.UNCLOSED_THINK
    assert r.answer is None
    assert r.reasoning == text[len("<think>"):]
    assert r.full == text


def test_template_opened_think():
    r = split_completion(comp("reasoning that never ends", finish="length"), think_opened_by_template=True)
    assert r.outcome is Outcome.UNCLOSED_THINK and r.answer is None
    r2 = split_completion(comp("reasoning</think>answer"), think_opened_by_template=True)
    assert (r2.reasoning, r2.answer) == ("reasoning", "answer")


def test_plain_answer_has_absent_reasoning():
    r = split_completion(comp("I cannot help with that."))
    assert r.reasoning is None and r.answer == "I cannot help with that." and r.outcome is Outcome.COMPLETE


def test_truncated_plain_answer():
    assert split_completion(comp("Step 1: acquire", finish="length")).outcome is Outcome.TRUNCATED


@pytest.mark.parametrize("text", ["", "   \n\t"])
def test_empty(text):
    r = split_completion(comp(text))
    assert r.outcome is Outcome.EMPTY and r.answer is None and r.reasoning is None


def test_closed_think_with_empty_answer_is_empty():
    r = split_completion(comp("<think>only thoughts</think>   "))
    assert r.outcome is Outcome.EMPTY and r.reasoning == "only thoughts" and r.answer == ""


def test_error():
    r = split_completion(comp("", error="HTTP 503 after 7 attempts"))
    assert r.outcome is Outcome.ERROR and r.answer is None


def test_server_reasoning_field():
    r = split_completion(comp("The answer.", reasoning_content="server-side thoughts"))
    assert (r.reasoning, r.answer, r.outcome) == ("server-side thoughts", "The answer.", Outcome.COMPLETE)
    assert "server-side thoughts" in r.full and "The answer." in r.full


def test_server_reasoning_field_cut_off():
    r = split_completion(comp("", finish="length", reasoning_content="still thinking"))
    assert r.outcome is Outcome.UNCLOSED_THINK and r.answer is None


def test_case_insensitive_tags():
    r = split_completion(comp("<THINK>x</Think>y"))
    assert (r.reasoning, r.answer) == ("x", "y")
