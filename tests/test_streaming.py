"""Stages stream: judging runs while generation is still going, work is read from the store a page at
a time, and a resumed run neither loses nor doubles a unit."""
from __future__ import annotations

import pytest

from safemlrm.config import parse_config
from safemlrm.pipeline.run import Runner
from safemlrm.store import PAGE
from safemlrm.store import Store
from api_judge import synthetic_cfg
from servers import Fault, FaultServer


def _times(run_dir):
    with Store(run_dir, readonly=True) as store:
        db = store.db
        first_verdict = db.execute("SELECT MIN(created) FROM verdicts").fetchone()[0]
        last_completion = db.execute("SELECT MAX(created) FROM completions").fetchone()[0]
        n_verdicts = db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0]
        distinct = db.execute("SELECT COUNT(DISTINCT completion_key || channel || judge) FROM verdicts").fetchone()[0]
    return first_verdict, last_completion, n_verdicts, distinct


@pytest.mark.parametrize("judge", ["keyword", "api"])
def test_first_verdict_is_stored_before_the_last_completion(tmp_path, judge):
    n = 12
    with FaultServer(Fault("ok", seconds=0.15)) as target, FaultServer() as judge_srv:
        judges = ([{"name": "keyword"}] if judge == "keyword" else
                  [{"name": "test-api-judge", "params": {"base_url": judge_srv.base_url}}])
        cfg = parse_config(synthetic_cfg(tmp_path, target.base_url, n, {"concurrency": 2}, judges))
        stats = Runner(cfg, tmp_path / "run", show_progress=False).run()
        assert stats.model_calls == n and stats.verdicts == 2 * n
        first_verdict, last_completion, count, distinct = _times(tmp_path / "run")
        # 12 requests two at a time take about 0.9 s; the judge kept pace rather than waiting
        assert first_verdict < last_completion - 0.3
        assert count == distinct == 2 * n
        again = Runner(cfg, tmp_path / "run", show_progress=False).run()
        assert again.model_calls == 0 and again.verdicts == 0 and target.requests == n
        assert _times(tmp_path / "run")[2] == 2 * n


@pytest.mark.slow
def test_local_engine_generates_in_its_thread_while_an_api_judge_reads(tmp_path, tiny_thinker):
    import yaml

    cards = tmp_path / "cards.yaml"
    cards.write_text(yaml.safe_dump([{"name": "thinker", "hub_id": str(tiny_thinker), "think_format": "think",
                                      "modalities": ["text"]}]))
    with FaultServer() as judge_srv:
        cfg = parse_config({
            "name": "local", "cards": [str(cards)],
            "models": [{"card": "thinker", "backend": "hf", "options": {"dtype": "float32", "device": "cpu",
                                                                       "batch_size": 1},
                        "generation": {"max_new_tokens": 24}}],
            "datasets": [{"name": "synthetic", "options": {"size": 8}}],
            "judges": [{"name": "test-api-judge", "params": {"base_url": judge_srv.base_url}}]})
        stats = Runner(cfg, tmp_path / "run", show_progress=False).run()
    assert stats.model_calls == 8 and stats.errors == 0
    first_verdict, last_completion, count, distinct = _times(tmp_path / "run")
    assert first_verdict < last_completion  # verdicts were written between the engine's batches
    assert count == distinct == 3 * 8  # reasoning, answer and full of each


def test_many_pages_of_work_each_done_once_and_resumed_for_free(tmp_path):
    n = 2 * PAGE + 37
    with FaultServer() as srv:
        cfg = parse_config(synthetic_cfg(tmp_path, srv.base_url, n, {"concurrency": 16}, [{"name": "keyword"}]))
        stats = Runner(cfg, tmp_path / "run", show_progress=False).run()
        assert stats.probes == n and stats.model_calls == n and srv.requests == n
        bodies = {b["messages"][-1]["content"] for b in srv.bodies}
        assert len(bodies) == n  # every probe asked once, none twice
        again = Runner(cfg, tmp_path / "run", show_progress=False).run()
        assert again.probes == n and again.model_calls == 0 and again.verdicts == 0 and srv.requests == n
    with Store(tmp_path / "run", readonly=True) as store:
        assert store.counts()["verdicts"] == {"keyword": 2 * n}


def test_a_judge_added_later_judges_the_stored_run_without_generating(tmp_path):
    with FaultServer() as srv, FaultServer() as judge_srv:
        data = synthetic_cfg(tmp_path, srv.base_url, 20, {"concurrency": 4}, [{"name": "keyword"}])
        Runner(parse_config(data), tmp_path / "run", show_progress=False).run()
        data["judges"].append({"name": "test-api-judge", "params": {"base_url": judge_srv.base_url}})
        stats = Runner(parse_config(data), tmp_path / "run", show_progress=False).run()
        assert stats.model_calls == 0 and stats.verdicts == 2 * 20 and srv.requests == 20
        assert judge_srv.requests == 20  # no reasoning: `full` is the answer, one call gives both verdicts
