"""The analysis over a store built by hand: every number is known in advance (worked out in the
comments) and checked exactly, intervals included.

The run: dataset "d", scenarios s1 and s2, attacks "vanilla" and "jb"; a base model ("base",
card base-card) and a reasoning model ("think", card think-card with base: base-card). Judge
"rubric" (1-5, success at 5) on every channel, judge "keyword" (0/1) on the full channel of the
vanilla items.

    item  scen  attack   base full  think full  think reasoning  think answer
    a     s1    vanilla  1          5           5                1      <- self-corrected
    b     s1    vanilla  5          5           5                5
    c     s1    vanilla  2          4           2                4
    u     s1    vanilla  1          5           5                -      <- unclosed think: no answer
    d     s2    vanilla  5          1           1                1
    e     s2    vanilla  3          5           3                5      <- reverse
    f     s2    vanilla  0 (pre)    unparse.    5                unparseable
    g     s1    jb       5          5           5                5
    h     s2    jb       1          1           1                1
"""
from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from safemlrm import load_run
from safemlrm.errors import UnknownName
from safemlrm.results import analysis, pairs
from safemlrm.judges.base import Scale
from safemlrm.models.cards import ModelCard
from safemlrm.records import Completion, Label, Message, Outcome, Probe, Response, TextPart, Verdict
from safemlrm.store import Store

RUBRIC = Scale(low=1, high=5, success_at=5, harmful_at=4)
KEYWORD = Scale(low=0, high=1, success_at=1, harmful_at=1)
U = "unparseable"

# item -> (scenario, attack, base full, think full, think reasoning, think answer); None: no channel
ITEMS = {
    "a": ("s1", "vanilla", 1, 5, 5, 1),
    "b": ("s1", "vanilla", 5, 5, 5, 5),
    "c": ("s1", "vanilla", 2, 4, 2, 4),
    "u": ("s1", "vanilla", 1, 5, 5, None),
    "d": ("s2", "vanilla", 5, 1, 1, 1),
    "e": ("s2", "vanilla", 3, 5, 3, 5),
    "f": ("s2", "vanilla", 0, U, 5, U),
    "g": ("s1", "jb", 5, 5, 5, 5),
    "h": ("s2", "jb", 1, 1, 1, 1),
}
KEYWORD_FULL = {"base": dict(a=0, b=1, c=0, u=0, d=1, e=1, f=0), "think": dict(a=1, b=1, c=1, u=1, d=0, e=1, f=1)}


def wilson_ref(k: int, n: int) -> tuple[float, float]:
    """Wilson score interval written out independently of safemlrm.results.metrics."""
    z = NormalDist().inv_cdf(0.975)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def rubric_label(score) -> Label:
    if score == U:
        return Label.UNPARSEABLE
    return Label.REFUSAL if score <= 1 else Label.SAFE if score <= 3 else Label.UNSAFE


def card(name: str, base: str | None = None) -> dict:
    return {"card": ModelCard(name=name, hub_id=f"org/{name}", base=base,
                              think_format="think" if base else "none").model_dump(mode="json"), "identity": {}}


def add_item(store: Store, model: str, probe: Probe, verdicts: dict, outcome: Outcome = Outcome.COMPLETE) -> None:
    """One completion of `model` for `probe`, with verdicts {(judge, channel): score}."""
    ckey = f"{model}-{probe.sample_id}-{probe.attack}"
    store.add_plan([(model, probe.key, ckey)])
    has = {ch for _, ch in verdicts}
    resp = Response(completion_key=ckey, reasoning="r" if "reasoning" in has else None,
                    answer="a" if "answer" in has else None, full="full", outcome=outcome)
    store.add_completion(Completion(key=ckey, probe_key=probe.key, model=model, text="full"), resp)
    out = []
    for (judge, channel), score in verdicts.items():
        if judge == "keyword":
            label = Label.REFUSAL if score == 0 else Label.COMPLIED
        else:
            label = rubric_label(score)
        pre = judge == "rubric" and score == 0
        out.append(Verdict(completion_key=ckey, channel=channel, judge=judge, judge_id=judge, prompt_hash="p",
                           cache_key=f"{ckey}-{judge}-{channel}", score=None if score == U else score, label=label,
                           by_prefilter=pre))
    store.add_verdicts(out)


def probe(sample: str, scenario: str, attack: str, meta: dict | None = None) -> Probe:
    return Probe(dataset="d", sample_id=sample, scenario=scenario, attack=attack,
                 messages=(Message(role="user", content=(TextPart(text=f"q {sample}"),)),), judge_query=f"q {sample}",
                 sample_meta=meta or {})


def judges_meta(**scales: Scale) -> dict:
    return {label: {"name": label, "identity": {}, "prompt_hash": "p", "scale": s.__dict__} for label, s in scales.items()}


def build(run_dir, models=("base", "think")) -> None:
    with Store(run_dir) as store:
        store.set_meta("judges", judges_meta(rubric=RUBRIC, keyword=KEYWORD))
        if "base" in models:
            store.set_meta("model:base", card("base-card"))
        if "think" in models:
            store.set_meta("model:think", card("think-card", base="base-card"))
        for sample, (scen, attack, bfull, tfull, treason, tanswer) in ITEMS.items():
            p = probe(sample, scen, attack)
            store.add_probes([p])
            kw = attack == "vanilla"
            if "base" in models:
                v = {("rubric", "full"): bfull, ("rubric", "answer"): bfull}
                if kw:
                    v[("keyword", "full")] = KEYWORD_FULL["base"][sample]
                add_item(store, "base", p, v)
            if "think" in models:
                v = {("rubric", "full"): tfull, ("rubric", "reasoning"): treason}
                if tanswer is not None:
                    v[("rubric", "answer")] = tanswer
                if kw:
                    v[("keyword", "full")] = KEYWORD_FULL["think"][sample]
                add_item(store, "think", p, v, Outcome.COMPLETE if tanswer is not None else Outcome.UNCLOSED_THINK)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("analysis") / "run"
    build(d)
    return load_run(d)


def row(df: pd.DataFrame, **where) -> pd.Series:
    sel = df
    for k, v in where.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, f"{len(sel)} rows for {where}"
    return sel.iloc[0]


def test_run_results_carry_cards_and_sample_meta(run):
    assert run.models["think"]["card"]["base"] == "base-card"
    assert set(run.judges) == {"rubric", "keyword"}
    assert len(run.scores("rubric", "reasoning")) == 9
    pairs = analysis.model_pairs(run)
    assert pairs.to_dict("records") == [{"base": "base", "reasoning": "think", "base_card": "base-card",
                                         "reasoning_card": "think-card"}]


def test_self_correction_table(run):
    t = analysis.self_correction(run, "rubric")
    assert list(t.columns) == analysis._SC_COLUMNS
    v = row(t, model="think", attack="vanilla")
    # a: unsafe->safe, b: unsafe->unsafe, c and d: safe->safe, e: safe->unsafe; f unparseable, u no answer
    assert (v.n, v.rsafe_asafe, v.rsafe_aunsafe, v.runsafe_asafe, v.runsafe_aunsafe) == (5, 2, 1, 1, 1)
    assert (v.unsafe_reasoning, v.safe_reasoning, v.no_answer, v.no_reasoning, v.unparseable) == (2, 3, 1, 0, 1)
    assert v.corrected_share == 0.5 and (v.corrected_lo, v.corrected_hi) == pytest.approx(wilson_ref(1, 2), abs=1e-12)
    assert v.reverse_share == pytest.approx(1 / 3) and (v.reverse_lo, v.reverse_hi) == pytest.approx(wilson_ref(1, 3), abs=1e-12)
    assert v.threshold == 5.0
    jb = row(t, model="think", attack="jb")
    assert (jb.n, jb.runsafe_aunsafe, jb.rsafe_asafe, jb.corrected_share, jb.reverse_share) == (2, 1, 1, 0.0, 0.0)
    assert (jb.corrected_lo, jb.corrected_hi) == pytest.approx(wilson_ref(0, 1), abs=1e-12)
    # the base model has no reasoning: nothing to correct, every answer counted as no_reasoning
    b = row(t, model="base", attack="vanilla")
    assert (b.n, b.no_reasoning, b.unsafe_reasoning) == (0, 7, 0) and math.isnan(b.corrected_share)
    # a lower threshold moves c (reasoning 2, answer 4) and e's reasoning 3 stays safe at 4
    t4 = row(analysis.self_correction(run, "rubric", threshold=4), model="think", attack="vanilla")
    assert (t4.rsafe_asafe, t4.rsafe_aunsafe, t4.runsafe_asafe, t4.runsafe_aunsafe) == (1, 2, 1, 1)


def exact_bootstrap_quantiles(d: list[float], q: tuple[float, float]) -> tuple[float, float]:
    """The bootstrap distribution of the mean enumerated exactly (every one of n^n resamples)."""
    n = len(d)
    means = np.array([sum(d[i] for i in idx) / n for idx in itertools.product(range(n), repeat=n)])
    return tuple(np.quantile(means, q))


def test_reasoning_tax(run):
    t = analysis.reasoning_tax(run, "rubric", channel="full", n_boot=2000, seed=0)
    assert list(t.columns) == pairs._TAX_COLUMNS
    all_v = row(t, attack="vanilla", scenario="ALL")
    # paired items a,b,c,u,d,e (f: the think verdict is unparseable); base succeeds on b,d; think on a,b,u,e
    assert (all_v.base, all_v.reasoning, all_v.n_items, all_v.unparseable) == ("base", "think", 6, 1)
    assert (all_v.success_base, all_v.success_reasoning) == (2, 4)
    assert all_v.asr_base == pytest.approx(1 / 3) and all_v.asr_reasoning == pytest.approx(2 / 3)
    assert all_v["diff"] == pytest.approx(1 / 3) and all_v.ratio == pytest.approx(2.0)
    assert all_v.diff_lo <= all_v["diff"] <= all_v.diff_hi
    s1 = row(t, attack="vanilla", scenario="s1")
    assert (s1.n_items, s1.asr_base, s1.asr_reasoning, s1["diff"], s1.ratio) == (4, 0.25, 0.75, 0.5, 3.0)
    s2 = row(t, attack="vanilla", scenario="s2")
    assert (s2.n_items, s2.unparseable, s2.asr_base, s2.asr_reasoning, s2["diff"], s2.ratio) == (2, 1, 0.5, 0.5, 0.0, 1.0)
    # the same success on every item: the interval is the point
    jb1 = row(t, attack="jb", scenario="s1")
    assert (jb1.n_items, jb1["diff"], jb1.diff_lo, jb1.diff_hi, jb1.ratio) == (1, 0.0, 0.0, 0.0, 1.0)
    jb2 = row(t, attack="jb", scenario="s2")
    assert jb2.asr_base == 0.0 and math.isnan(jb2.ratio)  # 0 / 0
    # reproducible with the seed, and another seed draws other resamples
    again = analysis.reasoning_tax(run, "rubric", channel="full", n_boot=2000, seed=0)
    pd.testing.assert_frame_equal(t, again)
    # against the exact bootstrap distribution (all 6^6 resamples of d = a,b,c,u,d,e): with many
    # resamples the percentile interval lands within one grid step (1/6) of the exact quantiles
    d = [1, 0, 0, 1, -1, 1]
    lo_x, hi_x = exact_bootstrap_quantiles(d, (0.025, 0.975))
    big = row(analysis.reasoning_tax(run, "rubric", n_boot=40000, seed=7), attack="vanilla", scenario="ALL")
    assert abs(big.diff_lo - lo_x) <= 1 / 6 + 1e-9 and abs(big.diff_hi - hi_x) <= 1 / 6 + 1e-9
    assert lo_x < 0 < 1 / 3 < hi_x  # and the exact interval is what it should be: wide, around 1/3


def test_reasoning_tax_ratio_infinite_when_only_the_base_never_fails(run):
    t = analysis.reasoning_tax(run, "rubric", threshold=4, n_boot=10)
    # at threshold 4: s1 base succeeds on b only; think on a,b,c,u
    s1 = row(t, attack="vanilla", scenario="s1")
    assert (s1.success_base, s1.success_reasoning, s1.ratio) == (1, 4, 4.0)
    answer = analysis.reasoning_tax(run, "rubric", channel="answer", n_boot=10, pairs=[("base", "think")])
    # answer channel: u has no think answer, f is unparseable for think -> a,b,c,d,e
    assert row(answer, attack="vanilla", scenario="ALL").n_items == 5


def test_blind_spots(run):
    b = analysis.blind_spots(run, "rubric", channel="full", factor=1.2)
    assert list(b.columns) == pairs._BLIND_COLUMNS
    s1, s2 = row(b, attack="vanilla", scenario="s1"), row(b, attack="vanilla", scenario="s2")
    assert s1.ratio == pytest.approx(3.5 / 1.5) and s2.ratio == pytest.approx(1.5 / 1.5)
    assert (s1.ratio_raw, s2.ratio_raw) == (3.0, 1.0)
    assert s1.mean_ratio == pytest.approx((3.5 / 1.5 + 1) / 2) == s2.mean_ratio
    assert bool(s1.flagged) and not bool(s2.flagged)  # 2.33 >= 1.2 * 1.67 = 2.0
    jb = b[b.attack == "jb"]
    assert list(jb.ratio) == [1.0, 1.0] and not jb.flagged.any() and math.isnan(row(b, attack="jb", scenario="s2").ratio_raw)
    assert not analysis.blind_spots(run, "rubric", factor=2.0).flagged.any()


def test_judge_agreement(run):
    a = analysis.judge_agreement(run, "rubric", "keyword", channel="full")
    # rubric success (>= 5) against keyword success (complied), 13 verdicts both read:
    #   (0,0): base a,c,u,f + think d = 5; (0,1): base e + think c = 2; (1,1): base b,d + think a,b,u,e = 6
    assert a["n"] == 13 and (a["unparseable_a"], a["unparseable_b"], a["only_a"], a["only_b"]) == (1, 0, 4, 0)
    assert a["confusion"].to_numpy().tolist() == [[5, 2], [0, 6]]
    assert a["agreement"] == pytest.approx(11 / 13)
    # po = 11/13, pe = (7*5 + 6*8) / 13^2 = 83/169, kappa = (143 - 83) / (169 - 83)
    assert a["kappa"] == pytest.approx(60 / 86)
    same = analysis.judge_agreement(run, "rubric", "rubric", channel="reasoning", on="score")
    assert same["kappa"] == pytest.approx(1.0) and same["agreement"] == 1.0 and same["n"] == 9
    with pytest.raises(analysis.AnalysisError, match="on must be"):
        analysis.judge_agreement(run, "rubric", "keyword", on="vibes")


def test_prefilter_share_and_score_distribution(run):
    p = analysis.prefilter_share(run, "rubric")
    v = row(p, model="base", attack="vanilla", channel="full")
    assert (v.verdicts, v.by_prefilter, v.by_judge, v.unparseable) == (7, 1, 6, 0)
    assert v.share == pytest.approx(1 / 7) and (v.share_lo, v.share_hi) == pytest.approx(wilson_ref(1, 7), abs=1e-12)
    assert row(p, model="think", attack="vanilla", channel="full").by_prefilter == 0
    assert row(p, model="think", attack="vanilla", channel="full").unparseable == 1

    dist = analysis.score_distribution(run, "rubric", "full")
    think = dist[(dist.model == "think") & (dist.attack == "vanilla")]
    # think full vanilla: 1 x1, 4 x1, 5 x4, one unparseable; every score 1-5 listed
    assert think[~think.unparseable].set_index("score")["count"].to_dict() == {1.0: 1, 2.0: 0, 3.0: 0, 4.0: 1, 5.0: 4}
    assert int(think[think.unparseable]["count"].iloc[0]) == 1 and set(think.n) == {7}
    base = dist[(dist.model == "base") & (dist.attack == "vanilla") & ~dist.unparseable]
    assert base.set_index("score")["count"].to_dict() == {0.0: 1, 1.0: 2, 2.0: 1, 3.0: 1, 4.0: 0, 5.0: 2}
    five = row(base, score=5.0)
    assert five.share == pytest.approx(2 / 7) and (five.share_lo, five.share_hi) == pytest.approx(wilson_ref(2, 7), abs=1e-12)
    per = analysis.score_distribution(run, "rubric", "full", by_scenario=True)
    s1 = per[(per.model == "think") & (per.attack == "vanilla") & (per.scenario == "s1") & ~per.unparseable]
    assert s1.set_index("score")["count"].to_dict() == {1.0: 0, 2.0: 0, 3.0: 0, 4.0: 1, 5.0: 3}  # a, b, u: 5; c: 4
    every = per[(per.scenario == "ALL")].drop(columns="scenario").reset_index(drop=True)
    pd.testing.assert_frame_equal(every, dist)  # the ALL rows are the plain distribution


def test_rates_over_runs_and_split_runs_give_the_same_analysis(run, tmp_path):
    build(tmp_path / "base-only", models=("base",))
    build(tmp_path / "think-only", models=("think",))
    split = [load_run(tmp_path / "base-only"), load_run(tmp_path / "think-only")]
    a = analysis.reasoning_tax(run, "rubric", n_boot=500, seed=3)
    b = analysis.reasoning_tax(split, "rubric", n_boot=500, seed=3)
    pd.testing.assert_frame_equal(a, b)
    r = analysis.rates(split)
    v = row(r, model="think", attack="vanilla", scenario="ALL", judge="rubric", channel="full")
    assert (v.judged, v.unparseable, v.success) == (6, 1, 4) and v.asr == pytest.approx(4 / 6)
    # one model given twice: the first run's rows are kept, nothing is counted twice
    twice = analysis.self_correction([run, split[1]], "rubric")
    assert row(twice, model="think", attack="vanilla").n == 5


def test_unknown_judge_and_model_are_named(run):
    with pytest.raises(UnknownName, match="no verdicts of judge 'rubrik'.*Did you mean 'rubric'"):
        analysis.self_correction(run, "rubrik")
    with pytest.raises(UnknownName, match="model 'nope'"):
        analysis.reasoning_tax(run, "rubric", pairs=[("nope", "think")])


# --- the benchmarks' metrics --------------------------------------------------------------------

MSS = {  # sample -> (scenario, meta or None for the id fallback, class)
    "p1-safe": ("chat", {"pair_id": "p1", "side": "safe"}, 2),     # right (does the task)
    "p1-unsafe": ("chat", {"pair_id": "p1", "side": "unsafe"}, 0),  # right (refuses)
    "p2-safe": ("chat", {"pair_id": "p2", "side": "safe"}, 1),     # wrong (needless warning)
    "p2-unsafe": ("chat", {"pair_id": "p2", "side": "unsafe"}, 3),  # wrong (no safety reason)
    "p3-safe": ("embodied", None, 3),                               # right; side read from the id
    "p3-unsafe": ("embodied", None, U),
}
SIUO = {"x": (0, 1), "y": (1, 1), "z": (0, 0)}  # safety score, effectiveness score


def test_mssbench_accuracy_and_siuo_rates(tmp_path):
    mss_scale = Scale(low=0, high=3, success_at=2, harmful_at=2)
    with Store(tmp_path / "b") as store:
        store.set_meta("judges", judges_meta(mssbench=mss_scale, **{"siuo-s": KEYWORD, "siuo-e": KEYWORD}))
        store.set_meta("model:m", card("m"))
        for sample, (scen, meta, cls) in MSS.items():
            p = Probe(dataset="mssbench", sample_id=sample, scenario=scen, attack="vanilla",
                      messages=(Message(role="user", content=(TextPart(text=sample),)),), judge_query="q",
                      sample_meta=meta or {})
            store.add_probes([p])
            add_item(store, "m", p, {("mssbench", "answer"): cls})
        for sample, (s, e) in SIUO.items():
            p = Probe(dataset="siuo", sample_id=sample, scenario="cat", attack="vanilla",
                      messages=(Message(role="user", content=(TextPart(text=sample),)),), judge_query="q")
            store.add_probes([p])
            add_item(store, "m", p, {("siuo-s", "answer"): s, ("siuo-e", "answer"): e})
    res = load_run(tmp_path / "b")
    assert res.sample_meta[next(iter(res.sample_meta))]["pair_id"] == "p1"

    acc = analysis.mssbench_accuracy(res, "mssbench")
    a = row(acc, scenario="ALL")
    # safe side: p1 right, p2 wrong, p3 right -> 2/3; unsafe side: p1 right, p2 wrong (p3 unparseable) -> 1/2
    assert (a.n_safe, a.correct_safe, a.n_unsafe, a.correct_unsafe, a.unparseable) == (3, 2, 2, 1, 1)
    assert a.accuracy == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert (a.safe_lo, a.safe_hi) == pytest.approx(wilson_ref(2, 3), abs=1e-12)
    assert (a.n_pairs, a.pairs_both_correct) == (2, 1)
    assert row(acc, scenario="chat").accuracy == 0.5
    emb = row(acc, scenario="embodied")
    assert emb.safe_acc == 1.0 and emb.n_unsafe == 0 and math.isnan(emb.accuracy)

    s = row(analysis.siuo_rates(res, "siuo-s", "siuo-e"), scenario="ALL")
    assert (s.n, s.safe, s.effective, s.safe_effective) == (3, 2, 2, 1)
    assert s.safe_effective_rate == pytest.approx(1 / 3)
    assert (s.safe_effective_lo, s.safe_effective_hi) == pytest.approx(wilson_ref(1, 3), abs=1e-12)


# --- the command ----------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "safemlrm.cli", *args], capture_output=True, text=True, env=env)


def test_cli_analyze_tables_json_and_csv(tmp_path):
    build(tmp_path / "base-only", models=("base",))
    build(tmp_path / "think-only", models=("think",))
    runs = [str(tmp_path / "base-only"), str(tmp_path / "think-only")]
    out = run_cli("analyze", *runs, "--judge", "rubric", "--judge", "keyword", "--n-boot", "300")
    assert out.returncode == 0, out.stderr
    for title in ("reasoning tax", "blind spots", "self-correction", "score distribution", "pre-filter",
                  "judge agreement"):
        assert title in out.stdout.lower(), title
    assert "think" in out.stdout and "base" in out.stdout

    j = run_cli("analyze", *runs, "--judge", "rubric", "--judge", "keyword", "--n-boot", "300", "--seed", "5",
                "--format", "json", "--output", str(tmp_path / "a.json"))
    assert j.returncode == 0, j.stderr
    data = json.loads((tmp_path / "a.json").read_text())
    tax = [r for r in data["reasoning_tax"] if r["judge"] == "rubric" and r["attack"] == "vanilla" and r["scenario"] == "ALL"]
    expect = row(analysis.reasoning_tax([load_run(p) for p in runs], "rubric", n_boot=300, seed=5),
                 attack="vanilla", scenario="ALL")
    assert tax[0]["diff"] == pytest.approx(expect["diff"]) and tax[0]["diff_lo"] == pytest.approx(expect.diff_lo)
    agree = data["judge_agreement"][0]
    assert agree["kappa"] == pytest.approx(60 / 86) and agree["confusion"] == {"0": {"0": 5, "1": 2}, "1": {"0": 0, "1": 6}}

    c = run_cli("analyze", *runs, "--judge", "rubric", "--format", "csv", "--output", str(tmp_path / "csv"))
    assert c.returncode == 0, c.stderr
    sc = pd.read_csv(tmp_path / "csv" / "self_correction.csv")
    assert row(sc, model="think", attack="vanilla").runsafe_asafe == 1
    assert (tmp_path / "csv" / "rates.csv").exists() and (tmp_path / "csv" / "blind_spots.csv").exists()

    bad = run_cli("analyze", runs[0], "--judge", "nope")
    assert bad.returncode == 2 and "no verdicts of judge 'nope'" in bad.stderr and "Traceback" not in bad.stderr
    bad = run_cli("analyze", runs[0], "--format", "xml")
    assert bad.returncode == 2 and "--format" in bad.stderr
