"""Each named judge served: its tiny checkpoint (trained to the guard's output format, saved with
the pinned template a server must be started with) behind a real `transformers serve`, judged
through the `openai` judge backend, gives the same verdict as through `hf` (test_guard_judges.py,
test_reasoning_judges.py). qwen3guard's served test is in test_guard_judges.py. Not here yet:
llama-guard and harmbench-cls, whose served replies differ from the hf ones (the tiny Llama Guard
writes its own assistant header, the tiny HarmBench classifier repeats its prompt): an open defect."""
from __future__ import annotations

import pytest

from safemlrm.judges.guardreasoner_vl import GuardReasonerVLJudge
from safemlrm.judges.reasoningshield import ReasoningShieldJudge
from safemlrm.judges.strongreject import StrongRejectJudge
from safemlrm.records import Channel, Label

# (checkpoint name, builder module, builder, judge, the item's channel, expected (score, label))
CASES = [
    ("strongreject-format", "tiny_reasoning_judges", "build_strongreject", StrongRejectJudge, Channel.ANSWER,
     (0.875, Label.UNSAFE)),
    ("reasoningshield-format", "tiny_reasoning_judges", "build_reasoningshield", ReasoningShieldJudge,
     Channel.REASONING, (0.5, Label.UNSAFE)),
    ("guardreasoner-vl-format", "tiny_reasoning_judges", "build_guardreasoner_vl", GuardReasonerVLJudge,
     Channel.ANSWER, (1, Label.UNSAFE)),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, module, builder, cls, channel, expected", CASES, ids=[c[0] for c in CASES])
def test_a_named_judge_against_transformers_serve(tmp_path_factory, name, module, builder, cls, channel, expected):
    import importlib

    from conftest import _tiny
    from servers import serve_transformers

    path = _tiny(tmp_path_factory, name, getattr(importlib.import_module(module), builder), module=module)
    from test_reasoning_judges import TRACE, item
    it = item(TRACE, channel=channel) if channel is Channel.REASONING else item()
    with serve_transformers(path) as served:
        judge = cls(base_url=served.base_url, model=served.model, concurrency=1, timeout=120)
        (r,) = judge.judge([it])
    assert (r.score, r.label) == expected, r.rationale
    assert judge.calls == 1  # read at the first attempt: the served format is the trained one
