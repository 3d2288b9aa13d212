"""The report's attack-success-against-over-refusal figure, from two real runs (the tiny reasoning VLM,
trained to refuse, and its echo-server base) on harmful FigStep items and benign MOSSBench items,
opened in headless Chromium like tests/test_report.py does."""
from __future__ import annotations

import pytest

from safemlrm import load_run
from safemlrm.config import parse_config
from safemlrm.report import charts
from safemlrm.report.frontier import frontier_rows
from safemlrm.report.html import write_report
from safemlrm.pipeline.run import Runner
from servers import FaultServer
from test_capability import mossbench
from test_report import _cards, chromium, needs_browser


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_vl_thinker):
    tmp = tmp_path_factory.mktemp("frontier-runs")
    cards = _cards(tmp, tiny_vl_thinker)
    datasets = [{"name": "figstep", "options": {"subset": "tiny"}, "limit": 2, "seed": 3},
                {"name": "mossbench", "path": str(mossbench(tmp))}]
    cfg = lambda models: parse_config({"name": "frontier", "cards": [str(cards)], "models": models,  # noqa: E731
                                       "datasets": datasets, "attacks": [{"name": "direct"}],
                                       "judges": [{"name": "keyword"}]})
    thinker = [{"card": "vl-thinker", "options": {"dtype": "float32", "device": "cpu"},
                "generation": {"max_new_tokens": 48}}]
    Runner(cfg(thinker), tmp / "thinker", show_progress=False).run()
    with FaultServer() as srv:
        base = [{"card": "echo-base", "backend": "openai", "generation": {"max_new_tokens": 48},
                 "options": {"base_url": srv.base_url, "concurrency": 1, "timeout": 10}}]
        Runner(cfg(base), tmp / "base", show_progress=False).run()
    return tmp / "thinker", tmp / "base"


def test_frontier_rows_count_harmful_and_benign_items_apart(runs):
    thinker, base = runs
    rows = frontier_rows([load_run(thinker), load_run(base)], "keyword", "answer", 1.0).set_index("model")
    # the thinker is trained to answer "I cannot help with that.": every answer a refusal
    t = rows.loc["vl-thinker"]
    assert (t["harmful_n"], t["benign_n"], t["asr"], t["over_refusal"]) == (2, 2, 0.0, 1.0)
    assert 0 < t["over_refusal_lo"] < 1.0 == t["over_refusal_hi"]
    assert rows.loc["echo-base", "harmful_n"] == 2 and rows.loc["echo-base", "benign_n"] == 2


@needs_browser
def test_frontier_figure_draws_in_chromium(runs, tmp_path):
    files = write_report(list(runs), tmp_path / "report")
    dom, raw, console, _ = chromium(files.html, tmp_path)
    assert console == [], console
    points = dom.find("circle", "point", within="#frontier")
    assert len(points) == 2  # one per model, for the one judge
    assert len(dom.find("line", "pair-link", within="#frontier")) == 1  # base joined to its reasoning model
    assert len(dom.find("line", "err", within="#frontier")) == 4  # both intervals of both models
    fills = {p["fill"] for p in points}
    assert fills == set(charts.PAIRED[0])  # light shade: base, dark: reasoning
    assert "Attack success against over-refusal" in dom.text_within("#frontier")


def test_frontier_chart_escapes_names_and_says_when_empty():
    svg = charts.frontier([charts.Point("<b>m</b>", "#1f78b4", 0.5, 0.4, 0.6, 0.2, 0.1, 0.3, "t <i>")], [],
                          title="t", x_label="x", y_label="y")
    assert "<b>" not in svg and "&lt;b&gt;m&lt;/b&gt;" in svg and svg.count('class="point"') == 1
    assert "no model has both" in charts.frontier([], [], title="t", x_label="x", y_label="y")
