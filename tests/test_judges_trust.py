"""Judges you can trust, through the real pipeline: one judge call when `full` is the answer's text,
a judge that mostly fails said loudly, an unreachable judge found before any generation."""
from __future__ import annotations

import json

import os
import subprocess
import sys

import pytest

from safemlrm.config import parse_config
from safemlrm.judges.health import JudgeUnreachable, judge_health
from safemlrm.pipeline.run import Runner
from safemlrm.store import Store
from judge_server import JudgeServer
from servers import Fault, FaultServer, free_port
from test_pipeline import config
from run_sql import run_sql


def cfg_for(tmp_path, target_url: str, judge_url: str, *, think_format: str = "none", limit: int = 4):
    cards = {"echo": {"hub_id": "echo-model", "think_format": think_format, "modalities": ["text"]}}
    models = [{"card": "echo", "backend": "openai",
               "options": {"base_url": target_url, "concurrency": 2, "backoff_base": 0.01, "timeout": 10,
                           "max_retries": 1}, "generation": {"max_new_tokens": 16}}]
    judges = [{"name": "rubric", "params": {"base_url": judge_url, "model": "judge", "max_retries": 0,
                                            "backoff_base": 0.01, "timeout": 10}}]
    return config(tmp_path, models, cards, limit=limit, judges=judges)


def verdicts(run_dir) -> list[tuple[str, str, float | None, str]]:
    return run_sql(run_dir, "SELECT completion_key, channel, score, label FROM verdicts ORDER BY 1, 2")


def test_no_reasoning_one_judge_call_two_verdicts(tmp_path):
    with FaultServer() as target, JudgeServer() as judge:
        cfg = parse_config(cfg_for(tmp_path, target.base_url, judge.base_url))
        stats = Runner(cfg, tmp_path / "run", show_progress=False).run()
        rows = verdicts(tmp_path / "run")
        assert judge.requests == 4  # 4 responses, answer == full: one call each
        assert stats.verdicts == 8 and len(rows) == 8
        by_key: dict[str, dict[str, tuple]] = {}
        for ck, ch, score, label in rows:
            by_key.setdefault(ck, {})[ch] = (score, label)
        assert all(set(v) == {"answer", "full"} and v["answer"] == v["full"] for v in by_key.values())
        judge.requests = 0
        again = Runner(cfg, tmp_path / "run", show_progress=False).run()
        assert judge.requests == 0 and again.verdicts == 0


def test_with_reasoning_every_channel_is_its_own_call(tmp_path):
    reasoning = Fault("ok", reasoning="Let me think about GENERIC-INFO first.")
    with FaultServer(default=reasoning) as target, JudgeServer() as judge:
        cfg = parse_config(cfg_for(tmp_path, target.base_url, judge.base_url, think_format="think"))
        Runner(cfg, tmp_path / "run", show_progress=False).run()
        rows = verdicts(tmp_path / "run")
        assert {ch for _, ch, _, _ in rows} == {"reasoning", "answer", "full"}
        assert judge.requests == len(rows) == 12
        assert {score for _, ch, score, _ in rows if ch == "reasoning"} == {2}  # the keyword inside the trace


def test_unreachable_judge_stops_before_generation(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with FaultServer() as target:
        cfg = parse_config(cfg_for(tmp_path, target.base_url, dead))
        with pytest.raises(JudgeUnreachable, match=r"judge rubric \(judge\) at 127\.0\.0\.1:\d+/v1 cannot be reached"):
            Runner(cfg, tmp_path / "run", show_progress=False).run()
        assert target.requests == 0
        assert not (tmp_path / "run" / "store.sqlite").exists()


def test_judge_refusing_the_key_is_found_before_generation(tmp_path):
    with FaultServer() as target, JudgeServer(status=401) as judge:
        cfg = parse_config(cfg_for(tmp_path, target.base_url, judge.base_url))
        with pytest.raises(JudgeUnreachable, match="refuses the API key"):
            Runner(cfg, tmp_path / "run", show_progress=False).run()
        assert target.requests == 0


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "safemlrm.cli", *args], capture_output=True, text=True, env=env)


def test_mostly_unparseable_judge_is_loud_in_run_and_status(tmp_path):
    import yaml

    # 4 responses, one call each (no reasoning); 3 of them garbage twice (first try and retry)
    with FaultServer() as target, JudgeServer().script(*["no verdict here"] * 6) as judge:
        judge.responder = lambda body: "#reason: fine\n#score: 2"
        f = tmp_path / "run.yaml"
        data = cfg_for(tmp_path, target.base_url, judge.base_url)
        data["models"][0]["options"]["concurrency"] = 1
        data["judges"][0]["params"]["concurrency"] = 1
        f.write_text(yaml.safe_dump(data))
        r = cli("run", str(f), "--out", str(tmp_path / "run"), "--no-progress")
        assert r.returncode == 0, r.stderr
        last = r.stdout.strip().splitlines()[-1]
        assert last.startswith("WARNING: judge rubric: 6 of 8 verdicts are unparseable (0 failed calls)"), r.stdout
    with Store(tmp_path / "run", readonly=True) as s:
        (h,) = judge_health(s)
    assert (h.verdicts, h.unparseable, h.failed, h.mostly_unreadable) == (8, 6, 0, True)
    st = cli("status", str(tmp_path / "run"))
    assert st.returncode == 0 and "WARNING: judge rubric" in st.stdout
    rows = json.loads(cli("status", str(tmp_path / "run"), "--format", "json").stdout)
    assert {"stage": "judge", "what": "rubric", "done": 8, "of": 8, "errors": 0, "unparseable": 6} in rows


def test_failed_calls_are_counted_as_failed(tmp_path):
    # HTTP 422 on every call: each item's call fails for the item alone (no retry), an unparseable verdict
    with FaultServer() as target, JudgeServer(status=422) as judge:
        stats = Runner(parse_config(cfg_for(tmp_path, target.base_url, judge.base_url, limit=2)), tmp_path / "run",
                       show_progress=False).run()
        assert judge.requests == 2  # one per response (answer == full), preflight GET not counted
        assert stats.judge_warnings == [
            "WARNING: judge rubric: 4 of 4 verdicts are unparseable (4 failed calls); its figures rest on 0 "
            "verdicts. See `safemlrm status` and the rationales in `safemlrm export`."]
