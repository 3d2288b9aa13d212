"""One rule for every figure: the run's `metrics:` block, overridable per command, read the same way by
the run summary (metrics.csv), `safemlrm analyze`, the report's tables and `tis compare`.

The run is test_analysis's hand-built store (real SQLite): model `think`, rubric 1-5 verdicts on the
answer channel a=1, b=5, c=4, d=1, e=5 (u has no answer, f is unparseable), so ASR is 2/5 at the
rubric's own threshold (5) and 3/5 at a configured 4.
"""
from __future__ import annotations

import pandas as pd
import pytest
from test_analysis import build

from safemlrm import load_run
from safemlrm.results.analysis import analyze
from safemlrm.report.html import write_report
from safemlrm.report.markdown import write_summary
from safemlrm.store import Store
from safemlrm.tis.compare import compare_results

WHERE = dict(model="think", dataset="d", attack="vanilla", scenario="ALL", judge="rubric", channel="answer")


def _asr(frame: pd.DataFrame) -> float:
    sel = frame
    for k, v in WHERE.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, sel
    return float(sel.iloc[0]["asr"])


def every_figure(run_dir, tmp_path, **analyze_kw) -> dict[str, float]:
    with Store(run_dir) as store:
        write_summary(store)
    res = load_run(run_dir)
    write_report([run_dir], tmp_path / "report")
    cmp = compare_results(res, res, judge="rubric", before_model="think", after_model="think")
    return {"metrics.csv": _asr(pd.read_csv(run_dir / "metrics.csv")),
            "analyze": _asr(analyze(res, ["rubric"], n_boot=10, **analyze_kw)["rates"]),
            "report": _asr(pd.read_csv(tmp_path / "report" / "tables" / "metrics.csv")),
            "tis compare": float(cmp.safety[cmp.safety["attack"] == "vanilla"].iloc[0]["asr_after"])}


@pytest.mark.parametrize("metrics, want", [({}, 2 / 5), ({"asr_threshold": 4}, 3 / 5)],
                         ids=["judge default", "configured 4"])
def test_the_same_run_gives_the_same_asr_everywhere(tmp_path, metrics, want):
    run_dir = tmp_path / "run"
    build(run_dir)
    with Store(run_dir) as store:
        store.set_meta("config", {"name": "r", "metrics": metrics})
    figures = every_figure(run_dir, tmp_path)
    assert figures == pytest.approx({k: want for k in figures}), figures


def test_a_command_overrides_the_run_and_self_correction_has_its_own_setting(tmp_path):
    run_dir = tmp_path / "run"
    build(run_dir)
    with Store(run_dir) as store:
        store.set_meta("config", {"name": "r", "metrics": {"asr_threshold": 4}})
    res = load_run(run_dir)
    assert _asr(analyze(res, ["rubric"], n_boot=10, threshold=5)["rates"]) == pytest.approx(2 / 5)

    def unsafe_reasoning(**kw) -> int:
        sc = analyze(res, ["rubric"], n_boot=10, **kw)["self_correction"]
        return int(sc[(sc["model"] == "think") & (sc["attack"] == "vanilla")].iloc[0]["unsafe_reasoning"])

    # think's reasoning/answer pairs with both judged: a 5/1, b 5/5, c 2/4, d 1/1, e 3/5
    assert unsafe_reasoning() == 2  # the ASR threshold in force (4): a, b
    assert unsafe_reasoning(unsafe_threshold=3) == 3  # its own cut-off: a, b, e
    with Store(run_dir) as store:
        store.set_meta("config", {"name": "r", "metrics": {"asr_threshold": 4, "unsafe_threshold": 2}})
    res = load_run(run_dir)
    assert unsafe_reasoning() == 4  # the run's own setting: a, b, c, e
