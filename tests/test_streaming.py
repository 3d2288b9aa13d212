"""Stages stream: judging runs while generation is still going, work is read from the store a page at
a time, and a resumed run neither loses nor doubles a unit."""
from __future__ import annotations

import pytest

from safemlrm.config import parse_config
from safemlrm.pipeline.run import Runner
from safemlrm.store import PAGE, Store
from api_judge import synthetic_cfg
from servers import Fault, FaultServer
from run_sql import run_sql


def _times(run_dir):
    (first_verdict, n_verdicts, distinct), = run_sql(
        run_dir, "SELECT MIN(created), COUNT(*), COUNT(DISTINCT completion_key || channel || judge) FROM verdicts")
    (last_completion,), = run_sql(run_dir, "SELECT MAX(created) FROM completions")
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


def test_a_sweep_past_a_batch_boundary_judges_every_twin(tmp_path):
    """No reasoning: `full` is the answer's text, judged once for both verdicts. An answer that fills
    a batch judge's batch is judged and stored before its `full` is seen; that `full` still gets its
    verdict (the stored answer's), with no second judge call. Found as a one-in-three failure of the
    test above: every JUDGE_BATCH-th completion of a sweep was left with its answer verdict alone."""
    from safemlrm.pipeline.judging import JUDGE_BATCH
    from safemlrm.judges.keyword import KeywordJudge

    n = 2 * JUDGE_BATCH + 5
    with FaultServer() as srv:
        cfg = parse_config(synthetic_cfg(tmp_path, srv.base_url, n, {"concurrency": 8}, []))
        Runner(cfg, tmp_path / "run", show_progress=False).run()  # no judge: everything left to the sweep
    runner = Runner(cfg, tmp_path / "run", show_progress=False)
    with Store(tmp_path / "run") as store:
        runner.judge(store, {"keyword": KeywordJudge()})
    assert runner.stats.verdicts + runner.stats.verdicts_cached == 2 * n
    assert run_sql(tmp_path / "run", "SELECT channel, COUNT(*) FROM verdicts GROUP BY channel") == \
        [("answer", n), ("full", n)]
