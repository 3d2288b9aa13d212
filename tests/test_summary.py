"""The end-of-run summary counted in SQLite (safemlrm.results.summary) against the pandas tables of
`load_run` (the analysis path) on a hand-built store: the same numbers, row for row, with pending
items, failed requests, unparseable verdicts, absent channels, two judges and two attacks."""
from __future__ import annotations

import math

import pandas as pd
import pytest
from test_analysis import build, probe

from safemlrm import load_run
from safemlrm.records import Completion, Outcome, Response
from safemlrm.report.markdown import render_summary, write_summary
from safemlrm.store import Store
from safemlrm.results.summary import error_cause, summarize, summary_of


def add_failures(run_dir) -> None:
    """Three failed requests (two causes) and two items never generated, on model `think`."""
    with Store(run_dir) as store:
        for sample, error in [("x1", "HTTP 503 after 7 attempts: upstream"), ("x2", "HTTP 503 after 7 attempts: again"),
                              ("x3", "timeout after 7 attempts")]:
            p = probe(sample, "s1", "vanilla")
            store.add_probes([p])
            ckey = f"think-{sample}"
            store.add_plan([("think", p.key, ckey)])
            store.add_completion(Completion(key=ckey, probe_key=p.key, model="think", text="", error=error),
                                 Response(completion_key=ckey, reasoning=None, answer=None, full="",
                                          outcome=Outcome.ERROR))
        for sample in ("p1", "p2"):
            p = probe(sample, "s2", "jb")
            store.add_probes([p])
            store.add_plan([("think", p.key, f"think-{sample}")])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("summary") / "run"
    build(d)
    add_failures(d)
    return d


def test_sql_rates_equal_the_pandas_rates(run_dir):
    with Store(run_dir, readonly=True) as store:
        s = summarize(store)
    res = load_run(run_dir)
    # 12 (model, attack, judge, channel) groups, each with ALL, s1 and s2
    assert len(s.rates) == 36
    pd.testing.assert_frame_equal(s.rates, res.rates(), check_dtype=False)
    # thresholds given explicitly move both alike
    with Store(run_dir, readonly=True) as store:
        s4 = summarize(store, asr_threshold=4, confidence=0.9)
    pd.testing.assert_frame_equal(s4.rates, res.rates(asr_threshold=4, confidence=0.9), check_dtype=False)
    # the figures themselves: think, vanilla, rubric on the answer channel over all scenarios.
    # planned 7 + 3 failed = 10; answers for a b c d e (judged), f unparseable; u has none
    r = s.rates.set_index(["model", "attack", "judge", "channel", "scenario"]).loc[
        ("think", "vanilla", "rubric", "answer", "ALL")]
    assert (r.planned, r.judged, r.unparseable, r.absent, r.success) == (10, 5, 1, 4, 2)
    assert r.asr == pytest.approx(0.4) and r.asr_all == pytest.approx(0.2)
    jb = s.rates.set_index(["model", "attack", "judge", "channel", "scenario"]).loc[
        ("think", "jb", "rubric", "full", "s2")]
    assert (jb.planned, jb.judged, jb.absent) == (3, 1, 2)  # h judged, p1 and p2 pending


def test_sql_outcomes_and_errors(run_dir):
    with Store(run_dir, readonly=True) as store:
        s = summarize(store)
    res = load_run(run_dir)
    pd.testing.assert_frame_equal(s.outcomes, res.outcomes().rename_axis(columns=None), check_dtype=False)
    think = s.outcomes.set_index(["model", "attack"])
    assert think.loc[("think", "vanilla"), ["complete", "unclosed_think", "error", "pending"]].tolist() == [6, 1, 3, 0]
    assert think.loc[("think", "jb"), ["complete", "pending"]].tolist() == [2, 2]
    assert s.failed == 3
    assert s.errors.to_dict("records") == [
        {"model": "think", "cause": "HTTP 503 after 7 attempts", "count": 2},
        {"model": "think", "cause": "timeout after 7 attempts", "count": 1}]
    assert error_cause(None) == "unknown"


def test_the_report_summary_from_frames_is_the_sql_summary(run_dir):
    """The report reads each run once (into frames); its per-run summary is the one counted in SQL."""
    with Store(run_dir, readonly=True) as store:
        s = summarize(store)
    f = summary_of(load_run(run_dir))
    for table in ("rates", "outcomes", "errors"):
        pd.testing.assert_frame_equal(getattr(f, table), getattr(s, table), check_dtype=False)
    assert render_summary(f) == render_summary(s)


def test_summary_files(run_dir, tmp_path):
    with Store(run_dir) as store:
        s = write_summary(store)
    text = (run_dir / "summary.md").read_text()
    assert text == render_summary(s)
    assert "3 planned item(s) have no response" in text
    assert "| think | HTTP 503 after 7 attempts | 2 |" in text
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert len(metrics) == len(s.rates)
    row = metrics[(metrics.model == "think") & (metrics.judge == "keyword") & (metrics.scenario == "ALL")].iloc[0]
    assert row.success == 6 and row.planned == 10 and math.isclose(row.asr, 6 / 7)


def test_empty_run(tmp_path):
    with Store(tmp_path / "empty") as store:
        s = summarize(store)
    assert s.rates.empty and s.outcomes.empty and s.failed == 0
    assert "_no verdicts yet_" in render_summary(s)
