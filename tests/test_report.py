"""The HTML report, rendered from real runs of tiny models and opened in a real headless Chromium.

Two runs make one report: a tiny Qwen2.5-VL reasoning model (transformers, FigStep images) and its
"base", an OpenAI-compatible FaultServer that echoes the prompt; the pair spans the two runs.
Chromium (Debian `chromium`, installed by `make test`) loads the file from disk with no network,
dumps the DOM after the page's script ran, logs console messages to stderr and takes a screenshot.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import yaml

from safemlrm import load_run
from safemlrm.config import parse_config
from safemlrm.judges.base import Judge, JudgeItem, JudgeResult, Scale
from safemlrm.records import Label
from safemlrm.registry import register
from safemlrm.report import charts
from safemlrm.report.html import ReportOptions, script_json, write_report
from safemlrm.pipeline.run import Runner
from servers import Fault, FaultServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("SAFEMLRM_REQUIRE_BROWSER") != "1",
    reason="headless Chromium is not installed (apt-get install chromium; `make test` does it)")

# Each payload would change the page if it ran: the title, or a marker attribute on <html>.
PAYLOADS = (
    "<script>document.title='XSS-script';document.documentElement.setAttribute('data-xss','script')</script>",
    "<img src=x onerror=\"document.title='XSS-img';document.documentElement.setAttribute('data-xss','img')\">",
    "\"><svg onload=\"document.title='XSS-svg';document.documentElement.setAttribute('data-xss','svg')\">",
    "</script><script>document.title='XSS-close'</script><!--",
)


# --- running Chromium -------------------------------------------------------------------------


class Dom(HTMLParser):
    """The dumped DOM as elements (tag, attrs, enclosing element ids and classes) and text by element."""

    VOID = {"meta", "img", "input", "br", "hr", "link", "rect", "line", "source", "area", "col", "wbr"}

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str], tuple[str, ...]]] = []
        self.texts: list[tuple[str, tuple[str, ...]]] = []
        self._stack: list[tuple[str, str]] = []
        self.feed(html)

    def _scope(self) -> tuple[str, ...]:
        return tuple(s for _, s in self._stack)

    def handle_starttag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        self.elements.append((tag, a, self._scope()))
        if tag not in self.VOID:
            self._stack.append((tag, f"#{a['id']}" if "id" in a else "." + ".".join(a.get("class", "").split())))

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, {k: (v or "") for k, v in attrs}, self._scope()))

    def handle_endtag(self, tag):
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i][0] == tag:
                del self._stack[i:]
                break

    def handle_data(self, data):
        if data.strip():
            self.texts.append((data, self._scope()))

    def find(self, tag: str | None = None, cls: str | None = None, within: str | None = None) -> list[dict]:
        out = []
        for t, a, scope in self.elements:
            if tag and t != tag:
                continue
            if cls and cls not in a.get("class", "").split():
                continue
            if within and not any(s == within or s.startswith(within + ".") or within in s.split(".")
                                  for s in scope):
                continue
            out.append(a)
        return out

    def text_within(self, within: str) -> str:
        return "\n".join(t for t, scope in self.texts if within in scope)


def chromium(html: Path, work: Path, *, height: int = 1600) -> tuple[Dom, str, list[str], Path]:
    """(parsed DOM, raw DOM, console lines, screenshot) of a file opened in headless Chromium."""
    assert CHROMIUM, "chromium is not installed"
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
            "--enable-logging=stderr", "--v=0", "--hide-scrollbars", f"--window-size=1400,{height}"]
    url = html.resolve().as_uri()
    dump = subprocess.run([*base, f"--user-data-dir={work / 'profile-dom'}", "--dump-dom", url],
                          capture_output=True, text=True, timeout=120)
    assert dump.returncode == 0, dump.stderr[-2000:]
    shot = work / "screenshot.png"
    snap = subprocess.run([*base, f"--user-data-dir={work / 'profile-shot'}", f"--screenshot={shot}", url],
                          capture_output=True, text=True, timeout=120)
    assert snap.returncode == 0 and shot.exists(), snap.stderr[-2000:]
    console = [line for line in (dump.stderr + snap.stderr).splitlines() if ":CONSOLE" in line]
    return Dom(dump.stdout), dump.stdout, console, shot


# --- the runs ---------------------------------------------------------------------------------


@register("judge", "test-quoting-judge")
class QuotingJudge(Judge):
    """Quotes what it read in its rationale, as an LLM judge does: rationales carry model text."""

    scale = Scale(low=1, high=5, success_at=5, harmful_at=4, meaning="1 refuses ... 5 complies fully")

    def judge(self, items: list[JudgeItem]) -> list[JudgeResult]:
        out = []
        for it in items:
            unsafe = "cannot" not in it.text
            out.append(JudgeResult(score=5 if unsafe else 1, label=Label.UNSAFE if unsafe else Label.REFUSAL,
                                   rationale=f"read {it.text[:300]!s} for query {it.query[:300]!s}"))
        return out


def _cards(tmp: Path, thinker_dir: Path) -> Path:
    f = tmp / "cards.yaml"
    f.write_text(yaml.safe_dump([
        {"name": "vl-thinker", "hub_id": str(thinker_dir), "think_format": "think_answer", "base": "echo-base"},
        {"name": "echo-base", "hub_id": "echo-model", "think_format": "none"}]))
    return f


def _cfg(cards: Path, models: list[dict], datasets: list[dict], attacks: list[dict], judges: list[dict]):
    return parse_config({"name": "report-test", "cards": [str(cards)], "models": models, "datasets": datasets,
                         "attacks": attacks, "judges": judges})


FIGSTEP = [{"name": "figstep", "options": {"subset": "tiny"}, "limit": 4, "seed": 3}]
ATTACKS = [{"name": "figstep"}, {"name": "vanilla"}]
KEYWORD_JUDGES = [{"name": "keyword"}, {"name": "keyword", "params": {"variant": "study"}}]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_vl_thinker) -> tuple[Path, Path]:
    """Run A: the tiny reasoning VLM. Run B: its base, an echo server whose first request fails."""
    tmp = tmp_path_factory.mktemp("report-runs")
    cards = _cards(tmp, tiny_vl_thinker)
    thinker = [{"card": "vl-thinker", "backend": "hf", "options": {"dtype": "float32", "device": "cpu", "batch_size": 8},
                "generation": {"max_new_tokens": 48}}]
    Runner(_cfg(cards, thinker, FIGSTEP, ATTACKS, KEYWORD_JUDGES), tmp / "thinker", show_progress=False).run()
    with FaultServer() as srv:
        srv.script(503)  # max_retries 0: one planned item ends as an error, shown in the outcome counts
        base = [{"card": "echo-base", "backend": "openai", "generation": {"max_new_tokens": 48},
                 "options": {"base_url": srv.base_url, "concurrency": 1, "max_retries": 0, "timeout": 10}}]
        Runner(_cfg(cards, base, FIGSTEP, ATTACKS, KEYWORD_JUDGES), tmp / "base", show_progress=False).run()
    return tmp / "thinker", tmp / "base"


# --- tests ------------------------------------------------------------------------------------


@needs_browser
def test_report_from_two_runs_draws_in_chromium(runs, tmp_path):
    thinker, base = runs
    files = write_report([thinker, base], tmp_path / "report")
    assert files.samples_embedded == files.samples_total == 16
    dom, raw, console, shot = chromium(files.html, tmp_path)
    assert console == [], console  # no script error, no CSP violation, no failed load
    assert dom.find("html")[0].get("data-browser-ready") == "1"  # the sample browser's script ran to the end

    # headline: per judge (2), bars for 2 models x 2 attacks, each with an interval whisker
    bars = dom.find("rect", "bar", within="#headline")
    assert len(bars) == 2 * 2 * 2
    assert len(dom.find("line", "err", within="#headline")) == 8
    primary = [b for b in bars if b["data-group"] in ("figstep", "vanilla")][:4]
    assert {(b["data-series"], b["data-group"]) for b in primary} == {
        ("echo-base", "figstep"), ("echo-base", "vanilla"), ("vl-thinker", "figstep"), ("vl-thinker", "vanilla")}
    # reasoning tax: one bar per (pair, attack) per judge; the echo base complies, the thinker refuses
    assert len(dom.find("rect", "bar", within="#tax")) == 2 * 2
    # blind spots: a cell per scenario and (pair, attack), per judge; self-correction: a 2x2 per
    # (reasoning model, attack) per judge
    scenarios = len(set(load_run(thinker).planned["scenario"]))
    assert len(dom.find("rect", "cell", within="#blind")) == 2 * 2 * scenarios
    assert len(dom.find("rect", "cell", within="#selfcorr")) == 2 * 2 * 4
    assert dom.find("rect", "seg", within="#scores")
    segs = {s["data-segment"] for s in dom.find("rect", "seg", within="#outcomes")}
    assert {"complete", "error"} <= segs  # the failed request is counted, not dropped

    # the sample browser drew the first page, images are embedded thumbnails, blurred by default
    cards = dom.find("article", "sample", within="#samples")
    assert len(cards) == 16
    thumbs = dom.find("img", "thumb")
    assert thumbs and all(t["src"].startswith("data:image/jpeg;base64,") and "blur" in t["class"].split()
                          for t in thumbs)
    assert dom.find("button", "reveal")  # text judged unsafe (the echo's answers) starts hidden
    assert "I cannot help with that." in dom.text_within("#samples")  # text judged safe is shown

    # nothing is loaded from elsewhere: every src is a data URI, every link an in-page anchor
    assert all(a["src"].startswith("data:") for t, a, _ in dom.elements if "src" in a)
    assert all(a["href"].startswith("#") for t, a, _ in dom.elements if "href" in a)
    csp = next(a["content"] for a in dom.find("meta") if a.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp and "script-src 'sha256-" in csp and "unsafe-inline" not in csp

    # the screenshot shows the headline bars: the base model's colour fills a block of pixels
    import numpy as np
    from PIL import Image

    top = np.asarray(Image.open(shot).convert("RGB"))[:700].astype(int)
    light = charts.PAIRED[0][0]
    want = np.array([int(light[i:i + 2], 16) for i in (1, 3, 5)])
    hits = int((np.abs(top - want).max(axis=2) <= 6).sum())
    assert hits > 1500, f"only {hits} pixels of the base model's bar colour in the chart area"
    assert len(np.unique(top.reshape(-1, 3), axis=0)) > 50  # not a blank page

    # the Markdown summary and the tables sit beside the report
    md = files.summary.read_text()
    assert "## Run thinker" in md and "## Run base" in md and "## Reasoning tax" in md
    names = {p.name for p in files.tables}
    assert {"metrics.csv", "outcomes.csv", "reasoning_tax-keyword.csv", "items-thinker.csv", "items-base.csv"} <= names
    import pandas as pd
    tax = pd.read_csv(files.html.parent / "tables" / "reasoning_tax-keyword.csv")
    row = tax[(tax["scenario"] == "ALL") & (tax["attack"] == "vanilla")].iloc[0]
    assert (row["base"], row["reasoning"], row["asr_base"], row["asr_reasoning"]) == ("echo-base", "vl-thinker", 1.0, 0.0)


@needs_browser
def test_untrusted_text_is_escaped_and_never_runs(tmp_path):
    """Payloads in questions, scenario names, sample ids, model responses, reasoning and judge
    rationales: none runs in Chromium, and each is shown as text."""
    data = tmp_path / "bench.jsonl"
    with data.open("w") as f:
        for i, p in enumerate(PAYLOADS):
            f.write(json.dumps({"id": f"id{i}{p}", "question": f"Q{i} {p}", "cat": f"S{i % 2}{p}"}) + "\n")
    cards = tmp_path / "cards.yaml"
    cards.write_text(yaml.safe_dump([{"name": "echo", "hub_id": "echo-model", "think_format": "think"}]))
    reasoning = "thinking " + PAYLOADS[1] + PAYLOADS[0]
    with FaultServer(Fault("ok", reasoning=reasoning)) as srv:
        cfg = _cfg(cards, [{"card": "echo", "alias": "echo" + PAYLOADS[2], "backend": "openai",
                            "options": {"base_url": srv.base_url}}],
                   [{"name": "jsonl", "path": str(data),
                     "options": {"intent": "question", "scenario": "cat", "fields": ["question"]}}],
                   [{"name": "vanilla"}], [{"name": "test-quoting-judge"}, {"name": "keyword"}])
        Runner(cfg, tmp_path / "run", show_progress=False).run()
    files = write_report([tmp_path / "run"], tmp_path / "report", ReportOptions(hide_unsafe=False))
    dom, raw, console, _ = chromium(files.html, tmp_path)

    assert console == [], console
    assert "XSS" not in raw.split("</title>", 1)[0]  # document.title never changed
    html_el = dom.find("html")[0]
    assert "data-xss" not in html_el and html_el.get("data-browser-ready") == "1"
    # no element the payloads would have made, and no inline event handler anywhere
    assert not [a for t, a, _ in dom.elements if t == "img" and a.get("src") == "x"]
    assert not [(t, a) for t, a, _ in dom.elements if any(k.startswith("on") for k in a)]
    assert [a.get("type") for t, a, _ in dom.elements if t == "script"] == ["application/json", "application/json", None]
    # ... while every payload is on the page as text: in the samples, the filters and the charts
    shown = dom.text_within("#samples")
    for p in PAYLOADS:
        assert p in shown, p
    assert "echo" + PAYLOADS[2] in dom.text_within("#f-model")
    assert f"S0{PAYLOADS[0]}" in dom.text_within("#f-scenario")
    assert "read echo: Q1 " + PAYLOADS[1] in shown  # a rationale quoting the response
    assert any(p in t for p in PAYLOADS for t, scope in dom.texts if ".chart.chart-bars" in scope)
    assert PAYLOADS[0] in files.summary.read_text().replace("&lt;", "<").replace("&gt;", ">")


def test_script_json_cannot_close_its_element():
    payload = {"a": "</script><script>alert(1)</script><!-- & \u2028", "n": float("nan"), "i": [1, 2.5]}
    text = str(script_json(payload))
    assert not set("<>&") & set(text)
    assert json.loads(text) == {"a": payload["a"], "n": None, "i": [1, 2.5]}


def test_charts_escape_labels_and_count_shapes():
    name = "<script>alert(1)</script>"
    svg = charts.grouped_bars(["vanilla", "figstep" + name], [
        charts.Series(name, "#1f78b4", [(0.5, 0.3, 0.7, name), (0.0, 0.0, 0.2, "")]),
        charts.Series("b", "#a6cee3", [(float("nan"), None, None, ""), (1.0, 0.8, 1.0, "")])],
        title="t", y_label="ASR")
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    root = ET.fromstring(str(svg))  # well-formed XML: attributes and text escaped by the serializer
    ns = "{http://www.w3.org/2000/svg}"
    assert len([r for r in root.iter(f"{ns}rect") if r.get("class") == "bar"]) == 3  # the NaN point has no bar
    assert len([ln for ln in root.iter(f"{ns}line") if ln.get("class") == "err"]) == 3
    zero = [r for r in root.iter(f"{ns}rect") if r.get("class") == "bar"][1]
    assert float(zero.get("height")) > 0  # a measured zero stays visible

    heat = charts.heatmap(["s1", name], ["pair"], {("s1", "pair"): charts.Cell(4.0, "4.0x", "t", True),
                                                  (name, "pair"): charts.Cell(0.25, "0.2x", name)}, title="h")
    cells = [r for r in ET.fromstring(str(heat)).iter(f"{ns}rect") if "cell" in (r.get("class") or "")]
    assert [c.get("class") for c in cells] == ["cell flagged", "cell"]
    assert charts.ratio_colour(1.0) == "#ffffff" and charts.ratio_colour(float("nan")) == charts.NA_FILL
    hot, cold = charts.ratio_colour(8.0), charts.ratio_colour(0.125)
    assert int(hot[1:3], 16) > int(hot[5:7], 16) and int(cold[5:7], 16) > int(cold[1:3], 16)


def test_sample_cap_keeps_every_setting_and_says_so(runs, tmp_path):
    thinker, _ = runs
    files = write_report([thinker], tmp_path / "r", ReportOptions(max_samples=3))
    assert (files.samples_embedded, files.samples_total) == (3, 8)
    html = files.html.read_text()
    assert "3 of 8 planned items are embedded" in html and "at most 3 per model and run" in html
    data = json.loads(html.split('<script type="application/json" id="sample-data">', 1)[1].split("</script>", 1)[0])
    assert {s["attack"] for s in data["samples"]} == {"figstep", "vanilla"}  # taken in turn, not the first 3
    # images are embedded as thumbnails (the FigStep image is 760 px square)
    import base64
    import io

    from PIL import Image
    images = json.loads(html.split('id="image-data">', 1)[1].split("</script>", 1)[0])
    assert images
    for uri in images.values():
        with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as im:
            assert max(im.size) == 240


def test_report_cli_and_its_errors(runs, tmp_path):
    thinker, base = runs
    cli = [sys.executable, "-m", "safemlrm.cli", "report"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    ok = subprocess.run([*cli, str(thinker), str(base), "--out", str(tmp_path / "r"), "--no-blur",
                         "--show-unsafe", "--judge", "keyword:study"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    html = (tmp_path / "r" / "report.html").read_text()
    data = json.loads(html.split('id="sample-data">', 1)[1].split("</script>", 1)[0])
    assert data["options"] == {"blur_images": False, "hide_unsafe": False} and data["primary_judge"] == "keyword:study"
    for args, message in (([str(tmp_path / "nope")], "not a safemlrm run directory"),
                          ([str(thinker), "--judge", "gpt-judge"], "--judge 'gpt-judge' has no verdicts"),
                          ([str(thinker), str(thinker)], "is given twice"),
                          ([str(thinker), "--channel", "thoughts"], "--channel must be one of")):
        bad = subprocess.run([*cli, *args, "--out", str(tmp_path / "x")], capture_output=True, text=True, env=env)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


@pytest.mark.slow
@needs_browser
def test_thousands_of_items_make_a_small_usable_report(tmp_path):
    from api_judge import synthetic_cfg

    with FaultServer() as srv:
        cfg = parse_config(synthetic_cfg(tmp_path, srv.base_url, 2000, {"concurrency": 32}, [{"name": "keyword"}]))
        Runner(cfg, tmp_path / "run", show_progress=False).run()
    files = write_report([tmp_path / "run"], tmp_path / "report")
    assert (files.samples_embedded, files.samples_total) == (200, 2000)
    assert files.html.stat().st_size < 1_000_000  # the cap keeps the page light; the tables hold everything
    import pandas as pd
    assert len(pd.read_parquet(files.html.parent / "tables" / "items-run.parquet")["completion_key"].unique()) == 2000
    dom, _, console, _ = chromium(files.html, tmp_path)
    assert console == [], console
    assert len(dom.find("article", "sample")) == 20  # one page of the browser
    assert "200 of 2000 planned items are embedded" in dom.text_within("#sample-cap").replace("\n", " ")


def test_report_of_a_run_without_verdicts(tmp_path):
    """A run with no judge yet (or mid-way) still reports what it has: outcomes and samples."""
    cards = tmp_path / "cards.yaml"
    cards.write_text(yaml.safe_dump([{"name": "echo", "hub_id": "echo-model", "think_format": "none",
                                      "modalities": ["text"]}]))
    with FaultServer() as srv:
        cfg = _cfg(cards, [{"card": "echo", "backend": "openai", "options": {"base_url": srv.base_url}}],
                   [{"name": "figstep", "options": {"subset": "tiny"}, "limit": 2}], [{"name": "vanilla"}], [])
        Runner(cfg, tmp_path / "run", show_progress=False).run()
    files = write_report([tmp_path / "run"], tmp_path / "report")
    html = files.html.read_text()
    assert "No verdicts in these runs yet." in html and 'class="chart chart-stacked"' in html
    assert files.samples_embedded == 2 and "outcomes.csv" in {p.name for p in files.tables}
