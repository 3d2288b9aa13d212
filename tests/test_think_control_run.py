"""Reasoning control through a whole run: a think budget and a think prefix from a config."""
import pytest

pytest.importorskip("torch")

from conftest import _tiny  # noqa: E402
from safemlrm import load_run  # noqa: E402
from safemlrm.attacks.think_prefix import DEFENCE_PRESETS  # noqa: E402
from safemlrm.config import parse_config  # noqa: E402
from safemlrm.errors import ConfigError  # noqa: E402
from safemlrm.pipeline.run import Runner  # noqa: E402
from safemlrm.store import Store  # noqa: E402
from test_pipeline import config  # noqa: E402


@pytest.fixture(scope="module")
def controlled(tmp_path_factory):
    from tiny_control import train_controlled
    return _tiny(tmp_path_factory, "controlled", train_controlled, module="tiny_control")


def test_run_with_budget_and_prefix_records_and_resumes(tmp_path, controlled):
    cards = {"ctl": {"hub_id": str(controlled), "think_format": "think", "modalities": ["text"]}}
    models = [{"card": "ctl", "backend": "hf", "options": {"device": "cpu", "batch_size": 4},
               "generation": {"max_new_tokens": 40, "think_budget": 3}}]
    raw = config(tmp_path, models, cards, limit=2)
    raw["attacks"] = [{"name": "vanilla"}, {"name": "think_prefix", "params": {"preset": "safety_reminder"}}]
    cfg = parse_config(raw)
    stats = Runner(cfg, tmp_path / "run", show_progress=False).run()
    assert stats.probes == 4 and stats.model_calls == 4 and stats.errors == 0
    with Store(tmp_path / "run", readonly=True) as store:
        by_attack = {}
        for row in load_run(tmp_path / "run").planned.itertuples():
            c, r = store.completion(row.completion_key), store.response(row.completion_key)
            by_attack.setdefault(row.attack, []).append((c, r))
    for c, r in by_attack["vanilla"]:
        assert c.reasoning_tokens == 3 and r.answer == "I cannot help with that."
    for c, r in by_attack["think_prefix"]:
        assert r.reasoning.startswith(DEFENCE_PRESETS["safety_reminder"])
        assert c.reasoning_tokens <= 3 and r.answer == "I cannot help with that."
    assert Runner(cfg, tmp_path / "run", show_progress=False).run().model_calls == 0


def test_a_planted_thought_for_an_api_backend_stops_before_any_call(tmp_path):
    cards = {"api": {"hub_id": "m", "think_format": "think", "modalities": ["text"]}}
    models = [{"card": "api", "backend": "openai", "options": {"base_url": "http://127.0.0.1:9/v1"}}]
    raw = config(tmp_path, models, cards, limit=1)
    raw["attacks"] = [{"name": "think_prefix", "params": {"preset": "hcot_execution"}}]
    with pytest.raises(ConfigError, match="think_prefix.*backend openai.*use backend hf or vllm, backend openai with "
                                          "option prefix_continuation, or where: image"):
        Runner(parse_config(raw), tmp_path / "run", show_progress=False).run()


def sweep_config(tmp_path, controlled, **entry):
    import yaml
    cards = tmp_path / "cards.yaml"
    cards.write_text(yaml.safe_dump([{"name": "ctl", "hub_id": str(controlled), "think_format": "think",
                                      "modalities": ["text"]}]))
    cfg = {"name": "ctl", "cards": [str(cards)],
           "models": [{"card": "ctl", "backend": "hf", "options": {"device": "cpu", "batch_size": 1},
                       "generation": {"max_new_tokens": 24}, **entry}],
           "datasets": [{"name": "figstep", "options": {"subset": "tiny"}, "limit": 4, "seed": 1}],
           "judges": [{"name": "keyword"}]}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def created(run_dir):
    import sqlite3
    with sqlite3.connect(run_dir / "store.sqlite") as db:
        return dict(db.execute("SELECT key, created FROM completions"))


PREFIXES = ["none", "hcot_execution", "safety_reminder"]


@pytest.mark.parametrize("axis", ["think_budget", "think_prefix"])
def test_a_killed_sweep_resumes_with_nothing_doubled(tmp_path, controlled, axis):
    import os
    import signal
    import time

    from safemlrm.attacks.think_prefix import preset_text
    from test_reliability_crash import counts, finish, launch
    if axis == "think_budget":
        cfg = sweep_config(tmp_path, controlled, sweep={"think_budget": [0, 1, 3]})
    else:  # the prefix axis, under a budget of 2 so that every swept value closes and answers
        cfg = sweep_config(tmp_path, controlled, sweep={"think_prefix": PREFIXES},
                           generation={"max_new_tokens": 24, "think_budget": 2})
    out = tmp_path / "run"
    proc = launch(cfg, out)
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        c = counts(out)
        if c and 2 <= c["completions"] < 12:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    before = created(out)
    assert 2 <= len(before) < 12
    finish(cfg, out)
    after = created(out)
    assert len(after) == 12 == counts(out)["plan"]  # 3 swept values x 4 probes, each once
    assert {k: after[k] for k in before} == before  # nothing made before the kill was made again
    with Store(out, readonly=True) as store:
        tokens, planted = {}, {}
        for row in load_run(out).planned.itertuples():
            c, r = store.completion(row.completion_key), store.response(row.completion_key)
            tokens.setdefault(row.model, set()).add(c.reasoning_tokens)
            assert r.answer == "I cannot help with that."
            value = row.model.split("=")[1]
            want = preset_text(value, store.probe(row.probe_key).judge_query) \
                if axis == "think_prefix" and value != "none" else None
            assert r.planted_prefix == want and r.reasoning.startswith(want or "")  # after a resume too
            planted.setdefault(row.model, set()).add(want is not None)
    if axis == "think_budget":
        assert tokens == {"ctl@think_budget=0": {0}, "ctl@think_budget=1": {1}, "ctl@think_budget=3": {3}}
    else:
        assert planted == {f"ctl@think_prefix={p}": {p != "none"} for p in PREFIXES}
        # unplanted, the model would think longer: cut at 2; after a planted preset it may close sooner
        assert tokens["ctl@think_prefix=none"] == {2} and max(set().union(*tokens.values())) == 2


def test_a_prefix_sweep_marks_the_audit_words_for_judges_and_draws_asr_per_prefix(tmp_path, controlled):
    from safemlrm.results import analysis
    from safemlrm.attacks.think_prefix import PLANTED_NOTE
    from safemlrm.config import load_config
    from safemlrm.records import Channel

    cfg = load_config(sweep_config(tmp_path, controlled, sweep={"think_prefix": PREFIXES},
                                   generation={"max_new_tokens": 24, "think_budget": 2}))
    out = tmp_path / "run"
    assert Runner(cfg, out, show_progress=False).run().model_calls == 12
    runner = Runner(cfg, out, show_progress=False)
    with Store(out, readonly=True) as store:
        items = list(runner._judge_items(store, "a-judge-with-no-verdicts-yet"))
        marked = 0
        for ckey, item in items:
            r = store.response(ckey)
            if r.planted_prefix is None or item.channel is Channel.ANSWER:
                assert item.text == r.channel(item.channel) and "[planted" not in item.text
                continue
            note = PLANTED_NOTE.format(text=r.planted_prefix)
            if item.channel is Channel.REASONING:  # the whole reasoning, opening with the marked prefix
                assert item.text == note + r.reasoning[len(r.planted_prefix):]
            else:
                assert item.text == r.full.replace(r.planted_prefix, note, 1)
            assert r.reasoning.startswith(r.planted_prefix)  # the record keeps the planted words as they were
            marked += 1
        assert marked == 2 * 8  # reasoning and full of 2 prefixes x 4 probes
    dose = analysis.analyze(load_run(out), judges=["keyword"])["dose_response"]
    swept = dose[dose["kind"] == "swept"]
    assert sorted(swept["value"]) == sorted(PREFIXES) and set(swept["axis"]) == {"think_prefix"}
    assert list(swept["asr"]) == [0.0, 0.0, 0.0] and list(swept["judged"]) == [4, 4, 4]  # every answer refuses


def test_think_prefix_setting_and_prefix_attack_together_are_refused(tmp_path, controlled):
    cards = {"ctl": {"hub_id": str(controlled), "think_format": "think", "modalities": ["text"]}}
    models = [{"card": "ctl", "backend": "hf", "generation": {"max_new_tokens": 24, "think_prefix": "safety_reminder"}}]
    raw = config(tmp_path, models, cards, limit=1)
    raw["attacks"] = [{"name": "think_prefix", "params": {"preset": "hcot_execution"}}]
    with pytest.raises(ConfigError, match="plants a thought and model ctl sets generation.think_prefix"):
        Runner(parse_config(raw), tmp_path / "run", show_progress=False).run()
    models[0]["generation"]["think_prefix"] = "nope"
    with pytest.raises(ConfigError, match=r"think_prefix.*must be none or a think_prefix preset \(hcot_execution"):
        parse_config(config(tmp_path, models, cards, limit=1))


def test_k_samples_differ_and_are_stored_once_each(tmp_path, controlled):
    cfg_path = sweep_config(tmp_path, controlled, samples=3,
                            generation={"max_new_tokens": 12, "temperature": 8.0})
    from safemlrm.config import load_config
    cfg = load_config(cfg_path)
    stats = Runner(cfg, tmp_path / "run", show_progress=False).run()
    assert stats.model_calls == 12
    res = load_run(tmp_path / "run")
    planned = res.planned
    assert sorted(set(planned.model)) == ["ctl#0", "ctl#1", "ctl#2"]
    assert planned.completion_key.nunique() == 12  # one completion per (sample, probe)
    with Store(tmp_path / "run", readonly=True) as store:
        for _probe_key, g in planned.groupby("probe_key"):
            texts = [store.completion(k).text for k in g.completion_key]
            assert len(set(texts)) > 1, texts  # at temperature 8 the three samples differ
    assert Runner(cfg, tmp_path / "run", show_progress=False).run().model_calls == 0
