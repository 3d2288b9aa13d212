"""Reasoning control through a whole run: a think budget and a think prefix from a config."""
import pytest

pytest.importorskip("torch")

from conftest import _tiny  # noqa: E402
from safemlrm import load_run  # noqa: E402
from safemlrm.attacks.think_prefix import DEFENCE_PRESETS  # noqa: E402
from safemlrm.config import parse_config  # noqa: E402
from safemlrm.errors import ConfigError  # noqa: E402
from safemlrm.runner import Runner  # noqa: E402
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
    with pytest.raises(ConfigError, match="think_prefix.*backend openai.*use backend hf, or where: image"):
        Runner(parse_config(raw), tmp_path / "run", show_progress=False).run()
