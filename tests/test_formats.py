"""Every built-in reasoning format on a real raw output of its family, complete, cut off and
multi-block; declared formats; `safemlrm split` on the same text."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from safemlrm.errors import ConfigError
from safemlrm.models.cards import ModelCard, load_card_file
from safemlrm.models.formats import BUILTIN_FORMATS
from safemlrm.records import Completion, Outcome

SRC = str(Path(__file__).resolve().parent.parent / "src")
C, U, T, E = Outcome.COMPLETE, Outcome.UNCLOSED_THINK, Outcome.TRUNCATED, Outcome.EMPTY

HARMONY = ("<|channel|>analysis<|message|>User asks for harm. Must refuse.<|end|>"
           "<|start|>assistant<|channel|>final<|message|>I can't help with that.<|return|>")
LLAVA_COT = ("<SUMMARY>I will look at the image.</SUMMARY> <CAPTION>A red box.</CAPTION> "
             "<REASONING>The request is harmful.</REASONING> <CONCLUSION>I cannot help.</CONCLUSION>")
GLM = ("<think>The user wants a recipe for harm.</think><answer>I cannot help: "
       "<|begin_of_box|>refused<|end_of_box|></answer>")

# (format, raw text, finish reason, reasoning, answer, outcome)
CASES = [
    ("think", "<think>plan</think>The answer.", "stop", "plan", "The answer.", C),
    ("think", "<think>a</think><think>b</think>final", "stop", "a\n\nb", "final", C),
    ("think", "<think>a</think><think>b is cut", "length", "a\n\nb is cut", None, U),
    ("think", "<think>the trace is cut", "length", "the trace is cut", None, U),
    ("think_answer", "<think>plan</think> <answer>Paris</answer>", "stop", "plan", "Paris", C),
    ("think_answer", "<think>plan</think><answer>Par", "length", "plan", "Par", T),
    ("think_template_opened", "plan\n</think>\n\nThe answer.", "stop", "plan", "The answer.", C),
    ("think_template_opened", "a plan that never ends", "length", "a plan that never ends", None, U),
    ("kimi", "◁think▷I should refuse.◁/think▷I cannot help with that.", "stop",
     "I should refuse.", "I cannot help with that.", C),
    ("kimi", "◁think▷step one◁/think▷◁think▷step two◁/think▷Done.", "stop", "step one\n\nstep two", "Done.", C),
    ("kimi", "◁think▷I will explain how to", "length", "I will explain how to", None, U),
    ("llava_cot", LLAVA_COT, "stop", "I will look at the image.\n\nA red box.\n\nThe request is harmful.",
     "I cannot help.", C),
    ("llava_cot", "<SUMMARY>plan</SUMMARY><REASONING>step one, then", "length", "plan\n\nstep one, then", None, U),
    ("llava_cot", "<SUMMARY>s</SUMMARY><CONCLUSION>Here is how", "length", "s", "Here is how", T),
    # cut inside a close marker of several tokens: its first characters are not content
    ("llava_cot", "<SUMMARY>plan</SUMMARY><REASONING>step one</REA", "length", "plan\n\nstep one", None, U),
    ("llava_cot", "<SUMMARY>s</SUMMARY><CONCLUSION>Here is how</CONCL", "length", "s", "Here is how", T),
    ("think", "<think>the trace is cut</thi", "length", "the trace is cut", None, U),
    ("think_answer", "<think>plan</think><answer>Par</ans", "length", "plan", "Par", T),
    ("glm_box", GLM, "stop", "The user wants a recipe for harm.", "I cannot help: refused", C),
    ("glm_box", "<think>thinking about the box", "length", "thinking about the box", None, U),
    ("harmony", HARMONY, "stop", "User asks for harm. Must refuse.", "I can't help with that.", C),
    ("harmony", "<|channel|>analysis<|message|>We need to think about", "length", "We need to think about", None, U),
    ("harmony", "<|channel|>analysis<|message|>a<|end|><|start|>assistant<|channel|>analysis<|message|>b<|end|>"
                "<|start|>assistant<|channel|>final<|message|>ok", "length", "a\n\nb", "ok", T),
    ("server", "plain answer <think>not parsed</think>", "stop", None, "plain answer <think>not parsed</think>", C),
    ("none", "I cannot help with that.", "stop", None, "I cannot help with that.", C),
    ("none", "Step 1: acquire", "length", None, "Step 1: acquire", T),
]


def comp(text, finish="stop", reasoning_content=None):
    return Completion(key="k", probe_key="p", model="m", text=text, finish_reason=finish,
                      reasoning_content=reasoning_content, completion_tokens=20)


@pytest.mark.parametrize("fmt,text,finish,reasoning,answer,outcome", CASES)
def test_builtin_format(fmt, text, finish, reasoning, answer, outcome):
    r = BUILTIN_FORMATS[fmt].split(comp(text, finish))
    assert (r.reasoning, r.answer, r.outcome) == (reasoning, answer, outcome)
    assert r.full == text  # the raw text is kept, box tokens and markers included


def test_every_builtin_format_has_a_case():
    assert {c[0] for c in CASES} == set(BUILTIN_FORMATS)


@pytest.mark.parametrize("fmt", sorted(BUILTIN_FORMATS))
def test_server_reasoning_field_in_every_format(fmt):
    f = BUILTIN_FORMATS[fmt]
    r = f.split(comp("<answer>Paris</answer>", reasoning_content="server thoughts"))
    assert r.reasoning == "server thoughts" and r.outcome is C
    cut = f.split(comp("", "length", reasoning_content="still thinking"))
    assert cut.outcome is U and cut.answer is None


@pytest.mark.parametrize("fmt", sorted(set(BUILTIN_FORMATS) - {"server", "none"}))
def test_cut_before_close_is_unclosed_in_every_reasoning_format(fmt):
    f = BUILTIN_FORMATS[fmt]
    opener = {"llava_cot": "<SUMMARY>", "think_template_opened": ""}.get(fmt, f.open)
    r = f.split(comp(f"{opener}Here is how to build it: first", "length"))
    assert r.outcome is U and r.answer is None and "first" in r.reasoning


def test_declared_format_in_a_card_file(tmp_path):
    f = tmp_path / "cards.yaml"
    f.write_text("- name: mine\n  hub_id: x\n  think_format: {open: '[[plan]]', close: '[[/plan]]', "
                 "answer_open: '<final>', answer_close: '</final>', strip: ['<box>']}\n")
    card = load_card_file(f)[0]
    r = card.reasoning_format.split(comp("[[plan]]p1[[/plan]]<final>A <box>B</final>"))
    assert (r.reasoning, r.answer, r.outcome) == ("p1", "A B", C)
    assert card.reasoning_format.name == "custom" and "[[plan]]" in card.reasoning_format.markers


def test_declared_format_like_a_builtin(tmp_path):
    f = tmp_path / "cards.yaml"
    f.write_text("- name: mine\n  hub_id: x\n  think_format: {like: kimi, template_opened: true}\n")
    r = load_card_file(f)[0].reasoning_format.split(comp("thinking on and on", "length"))
    assert r.outcome is U


@pytest.mark.parametrize("spec,match", [
    ("think_format: thonk", r"cards.yaml: card bad: field 'think_format'.*Did you mean 'think'"),
    ("think_format: {opne: '<t>', close: '</t>'}", r"field 'think_format'.*unknown key 'opne'.*Did you mean 'open'"),
    ("think_format: {open: '<t>', close: null}", r"field 'think_format'.*needs a closing marker"),
    ("think_format: {like: kimmi}", r"field 'think_format'.*unknown reasoning format 'kimmi'.*'kimi'"),
    ("think_formt: think", r"field 'think_formt'.*Did you mean 'think_format'"),
])
def test_declared_format_errors_are_named(tmp_path, spec, match):
    f = tmp_path / "cards.yaml"
    f.write_text(f"- name: bad\n  hub_id: x\n  {spec}\n")
    with pytest.raises(ConfigError, match=match):
        load_card_file(f)


def test_old_think_format_values_still_work():
    for name, fmt in [("none", "none"), ("think", "think"), ("think_answer", "think_answer")]:
        assert ModelCard(name="m", hub_id="x", think_format=name).reasoning_format.name == fmt
    opened = ModelCard(name="m", hub_id="x", think_format="think", think_opened_by_template=True)
    assert opened.reasoning_format.template_opened


def split_cli(*args, text):
    env = dict(os.environ, PYTHONPATH=SRC, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "safemlrm.cli", "split", *args], input=text, text=True,
                          capture_output=True, env=env, timeout=120)


def test_split_command_every_format(tmp_path):
    """A card per format; a subprocess per case (cut-off and multi-block ones included)."""
    cards = tmp_path / "cards.yaml"
    cards.write_text("".join(f"- {{name: fmt-{n}, hub_id: x, think_format: {n}}}\n" for n in BUILTIN_FORMATS))
    for fmt, text, finish, reasoning, answer, outcome in CASES[::3] + [CASES[1], CASES[10], CASES[16]]:
        p = split_cli("--card", f"fmt-{fmt}", "--cards", str(cards), "--finish-reason", finish, text=text)
        assert p.returncode == 0, p.stderr
        got = json.loads(p.stdout)
        assert (got["reasoning"], got["answer"], got["outcome"]) == (reasoning, answer, outcome.value), fmt


def test_split_command_builtin_card_and_reasoning_content():
    p = split_cli("--card", "kimi-vl-a3b-thinking", text="◁think▷hmm◁/think▷No.")
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    assert (got["reasoning"], got["answer"], got["outcome"], got["format"]) == ("hmm", "No.", "complete", "kimi")
    p = split_cli("--card", "qwen3-vl-8b-thinking", "--finish-reason", "length", "--reasoning-content", "still", text="")
    assert json.loads(p.stdout)["outcome"] == "unclosed_think"


def test_split_command_bad_card_is_a_named_error():
    p = split_cli("--card", "kimi-vl-a3b-thinkin", text="x")
    assert p.returncode == 2 and "kimi-vl-a3b-thinking" in p.stderr and "Traceback" not in p.stderr
