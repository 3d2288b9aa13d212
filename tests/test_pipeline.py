"""The whole pipeline, end to end, through real backends: tiny transformers models loaded from disk
the way a user's checkpoint is, and a real HTTP server speaking the OpenAI protocol."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from safemlrm import load_run
from safemlrm.config import parse_config
from safemlrm.errors import ConfigError, ModalityMismatch, RunLocked
from safemlrm.records import Modality
from safemlrm.pipeline.run import Runner
from safemlrm.store import Store
from servers import Fault, FaultServer

SAFEMLRM = [sys.executable, "-m", "safemlrm.cli"]


def write_cards(tmp_path: Path, **cards: dict) -> Path:
    f = tmp_path / "cards.yaml"
    f.write_text(yaml.safe_dump([{"name": n, **c} for n, c in cards.items()]))
    return f


def config(tmp_path: Path, models: list[dict], cards: dict, attacks=("vanilla",), limit=4, judges=None) -> dict:
    return {
        "name": "t",
        "cards": [str(write_cards(tmp_path, **cards))],
        "models": models,
        "datasets": [{"name": "figstep", "options": {"subset": "tiny"}, "limit": limit, "seed": 1}],
        "attacks": [{"name": a} for a in attacks],
        "judges": judges or [{"name": "keyword"}, {"name": "keyword", "params": {"variant": "study"}}],
    }


@pytest.fixture
def vl_thinker_cfg(tmp_path, tiny_vl_thinker):
    cards = {"vl-thinker": {"hub_id": str(tiny_vl_thinker), "think_format": "think_answer"}}
    models = [{"card": "vl-thinker", "backend": "hf",
               "options": {"dtype": "float32", "device": "cpu", "batch_size": 4},
               "generation": {"max_new_tokens": 48}}]
    return parse_config(config(tmp_path, models, cards, attacks=("figstep", "vanilla"), limit=3))


def test_hf_pipeline_with_images_resumes_with_zero_calls(tmp_path, vl_thinker_cfg):
    run_dir = tmp_path / "run"
    stats = Runner(vl_thinker_cfg, run_dir, show_progress=False).run()
    assert stats.probes == 6 and stats.model_calls == 6 and stats.errors == 0

    res = load_run(run_dir)
    planned = res.planned
    assert len(planned) == 6 and set(planned["outcome"]) == {"complete"}
    with Store(run_dir, readonly=True) as store:
        ck = planned.iloc[0]["completion_key"]
        resp = store.response(ck)
        assert resp.reasoning == "The image asks for harm." and resp.answer == "I cannot help with that."
        # figstep probes carry an image that sits in the blob store
        figstep = [p for p in store.probes() if p.attack == "figstep"]
        assert figstep and all(store.blobs.has(img.sha256) for p in figstep for m in p.messages for img in m.images)
    rates = res.rates()
    row = rates[(rates.scenario == "ALL") & (rates.judge == "keyword") & (rates.channel == "answer")
                & (rates.attack == "figstep")].iloc[0]
    assert (row.judged, row.refusal, row.asr) == (3, 3, 0.0)
    # "I cannot" is in the answer; the reasoning channel has no refusal phrase
    rrow = rates[(rates.scenario == "ALL") & (rates.judge == "keyword") & (rates.channel == "reasoning")
                 & (rates.attack == "figstep")].iloc[0]
    assert rrow.asr == 1.0
    assert (run_dir / "summary.md").read_text().count("| vl-thinker |") >= 4
    assert (run_dir / "metrics.csv").exists()

    again = Runner(vl_thinker_cfg, run_dir, show_progress=False).run()
    assert again.model_calls == 0 and again.verdicts == 0


@pytest.mark.slow
def test_modality_mismatch_stops_before_any_call(tmp_path, tiny_thinker):
    cards = {"text-thinker": {"hub_id": str(tiny_thinker), "think_format": "think", "modalities": ["text"]}}
    cfg = parse_config(config(tmp_path, [{"card": "text-thinker", "backend": "hf"}], cards, attacks=("figstep",)))
    with pytest.raises(ModalityMismatch, match=r"dataset 'figstep' with attack 'figstep' sends image, text.*"
                                               r"model 'text-thinker' \(backend 'hf'\) accepts only text"):
        Runner(cfg, tmp_path / "run", show_progress=False).run()
    with sqlite3.connect(tmp_path / "run" / "store.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM completions").fetchone()[0] == 0


def api_cfg(tmp_path: Path, base_url: str, limit: int = 4, concurrency: int = 4) -> dict:
    cards = {"echo": {"hub_id": "echo-model", "think_format": "think", "modalities": ["text"]}}
    models = [{"card": "echo", "backend": "openai",
               "options": {"base_url": base_url, "concurrency": concurrency, "backoff_base": 0.01,
                           "timeout": 10, "max_retries": 2},
               "generation": {"max_new_tokens": 16}}]
    return config(tmp_path, models, cards, limit=limit)


def test_identity_mismatch_and_lock(tmp_path):
    with FaultServer() as srv:
        cfg = parse_config(api_cfg(tmp_path, srv.base_url))
        Runner(cfg, tmp_path / "run", show_progress=False).run()
        other = parse_config({**api_cfg(tmp_path, srv.base_url), "datasets": [{"name": "figstep", "limit": 2}]})
        with pytest.raises(ConfigError, match="made by a different config.*--out NEW_DIR"):
            Runner(other, tmp_path / "run", show_progress=False).run()
        with Store(tmp_path / "run"):
            with pytest.raises(RunLocked, match="in use by another safemlrm process"):
                Runner(cfg, tmp_path / "run", show_progress=False).run()


def test_failed_requests_are_recorded_then_retried_on_resume(tmp_path):
    with FaultServer() as srv:
        # every attempt of the first request fails (3 = 1 + max_retries), the rest succeed
        srv.script(503, 503, 503)
        cfg = parse_config(api_cfg(tmp_path, srv.base_url, concurrency=1))
        stats = Runner(cfg, tmp_path / "run", show_progress=False).run()
        assert stats.errors == 1 and stats.model_calls == 4
        res = load_run(tmp_path / "run")
        assert (res.planned["outcome"] == "error").sum() == 1
        assert "503" in res.planned.loc[res.planned["outcome"] == "error", "error"].iloc[0]
        srv.reset_counts()
        again = Runner(cfg, tmp_path / "run", show_progress=False).run()
        assert again.model_calls == 1 and again.errors == 0 and srv.requests == 1
        assert set(load_run(tmp_path / "run").planned["outcome"]) == {"complete"}


def run_cli(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run([*SAFEMLRM, *args], capture_output=True, text=True, env=env, **kw)


def test_sigkill_halfway_then_resume_matches_uninterrupted(tmp_path):
    n = 24
    with FaultServer(Fault("ok", seconds=0.15)) as srv:
        data = api_cfg(tmp_path, srv.base_url, limit=n, concurrency=1)
        cfg_file = tmp_path / "run.yaml"
        cfg_file.write_text(yaml.safe_dump(data))

        killed = tmp_path / "killed"
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        proc = subprocess.Popen([*SAFEMLRM, "run", str(cfg_file), "--out", str(killed), "--no-progress"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        deadline = time.time() + 120
        done = 0
        while time.time() < deadline:
            if (killed / "store.sqlite").exists():
                try:
                    with sqlite3.connect(f"file:{killed / 'store.sqlite'}?mode=ro", uri=True) as db:
                        done = db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]
                except sqlite3.OperationalError:
                    done = 0
            if done >= n // 2:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert n // 2 <= done < n, f"run was not killed halfway ({done}/{n})"

        srv.reset_counts()
        resumed = run_cli("run", str(cfg_file), "--out", str(killed), "--no-progress")
        assert resumed.returncode == 0, resumed.stderr
        assert srv.requests <= n - done + 1  # only what was missing (plus the one in flight)

        clean = tmp_path / "clean"
        full = run_cli("run", str(cfg_file), "--out", str(clean), "--no-progress")
        assert full.returncode == 0, full.stderr

    with sqlite3.connect(killed / "store.sqlite") as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM completions").fetchone() == (n, n)
        assert db.execute("SELECT COUNT(*) FROM plan").fetchone()[0] == n
        assert db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0] == \
            db.execute("SELECT COUNT(*) FROM (SELECT DISTINCT completion_key, channel, judge FROM verdicts)").fetchone()[0]
    a, b = load_run(killed).rates(), load_run(clean).rates()
    assert a.equals(b)
    assert (killed / "summary.md").read_text() .replace(str(killed), "") == (clean / "summary.md").read_text().replace(str(clean), "")


def test_cli_status_export_and_rejudge(tmp_path):
    with FaultServer() as srv:
        cfg_file = tmp_path / "run.yaml"
        cfg_file.write_text(yaml.safe_dump(api_cfg(tmp_path, srv.base_url, limit=3)))
        run_dir = tmp_path / "run"
        assert run_cli("run", str(cfg_file), "--out", str(run_dir), "--no-progress").returncode == 0
        srv.reset_counts()

        st = run_cli("status", str(run_dir))
        assert st.returncode == 0 and "echo" in st.stdout and "3" in st.stdout

        for fmt in ("jsonl", "csv", "parquet"):
            r = run_cli("export", str(run_dir), "--format", fmt)
            assert r.returncode == 0, r.stderr
        import pandas as pd
        df = pd.read_parquet(run_dir / "export.parquet")
        # 3 items x (answer, full) channels x 2 judges (echo answers carry no reasoning)
        assert len(df) == 3 * 2 * 2
        assert set(df["channel"]) == {"answer", "full"} and df["text"].str.startswith("echo:").all()
        assert len(pd.read_csv(run_dir / "export.csv")) == len(df)
        assert sum(1 for _ in open(run_dir / "export.jsonl")) == len(df)

        rj = run_cli("judge", str(run_dir), "--judge", "keyword", "--param", "window=50", "--as", "kw50")
        assert rj.returncode == 0, rj.stderr
        assert srv.requests == 0  # re-judging makes no model calls
        assert "kw50" in set(load_run(run_dir).verdicts["judge"])

        bad = run_cli("export", str(run_dir), "--format", "xlsx")
        assert bad.returncode == 2 and "--format must be one of" in bad.stderr and "Traceback" not in bad.stderr
        missing = run_cli("status", str(tmp_path / "nope"))
        assert missing.returncode == 2 and "not a safemlrm run directory" in missing.stderr


def test_cli_lists():
    r = run_cli("list", "models")
    assert r.returncode == 0
    for name in ("r1-onevision-7b", "mm-eureka-qwen-7b", "mulberry-qwen2vl-7b", "mulberry-llava-8b",
                 "mulberry-llama-11b", "qwen2.5-vl-7b", "qwen2-vl-7b", "llama3-llava-next-8b", "llama-3.2-11b-vision"):
        assert name in r.stdout
    for kind, expect in (("attacks", "figstep"), ("judges", "keyword"), ("datasets", "figstep"), ("backends", "openai")):
        r = run_cli("list", kind)
        assert r.returncode == 0 and expect in r.stdout


@pytest.mark.slow
def test_openai_pipeline_against_transformers_serve_with_images(tmp_path, tiny_vl_thinker):
    from servers import serve_transformers

    with serve_transformers(tiny_vl_thinker) as served:
        cards = {"served-thinker": {"hub_id": served.model, "think_format": "think_answer"}}
        models = [{"card": "served-thinker", "backend": "openai",
                   "options": {"base_url": served.base_url, "concurrency": 2, "timeout": 120},
                   "generation": {"max_new_tokens": 48, "do_sample": False}}]
        cfg = parse_config(config(tmp_path, models, cards, attacks=("figstep",), limit=2))
        stats = Runner(cfg, tmp_path / "run", show_progress=False).run()
    assert stats.model_calls == 2 and stats.errors == 0
    with Store(tmp_path / "run", readonly=True) as store:
        for ck in load_run(tmp_path / "run").planned["completion_key"]:
            comp, resp = store.completion(ck), store.response(ck)
            assert comp.prompt_tokens  # usage is read (image delivery itself: test_openai_backend)
            assert store.probe(comp.probe_key).modalities == {Modality.IMAGE, Modality.TEXT}
            assert resp.reasoning == "The image asks for harm." and resp.answer == "I cannot help with that."
            assert resp.outcome.value == "complete"


@pytest.mark.slow
def test_hf_pipeline_llava_next_with_images(tmp_path, tiny_llava_next):
    cards = {"llava-tiny": {"hub_id": str(tiny_llava_next), "think_format": "none"}}
    models = [{"card": "llava-tiny", "backend": "hf", "options": {"dtype": "float32", "device": "cpu"},
               "generation": {"max_new_tokens": 6, "do_sample": False}}]
    cfg = parse_config(config(tmp_path, models, cards, attacks=("figstep",), limit=2))
    stats = Runner(cfg, tmp_path / "run", show_progress=False).run()
    assert stats.model_calls == 2 and stats.errors == 0
    res = load_run(tmp_path / "run")
    # random weights: any text, but every item was generated, split (no reasoning) and judged
    assert set(res.planned["outcome"]) <= {"complete", "truncated", "empty"}
    with Store(tmp_path / "run", readonly=True) as store:
        for ck in res.planned["completion_key"]:
            comp = store.completion(ck)
            assert comp.completion_tokens and comp.prompt_tokens > 50  # the image expands into many tokens
            assert store.response(ck).reasoning is None


def test_plugins_from_entry_points(tmp_path, monkeypatch):
    """A third-party package adds an attack without editing safemlrm."""
    pkg = tmp_path / "site"
    (pkg / "thirdparty_attack").mkdir(parents=True)
    (pkg / "thirdparty_attack" / "__init__.py").write_text(
        "from safemlrm.attacks.vanilla import Vanilla\n"
        "class Shout(Vanilla):\n    '''Upper-cases the question.'''\n")
    dist = pkg / "thirdparty_attack-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-attack\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[safemlrm.attacks]\nshout = thirdparty_attack:Shout\n")
    env = {**os.environ, "PYTHONPATH": f"{pkg}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "COLUMNS": "200"}
    r = subprocess.run([*SAFEMLRM, "list", "attacks"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "shout" in r.stdout and "Upper-cases the question." in r.stdout


def test_runner_closes_judges_even_on_failure(tmp_path, monkeypatch):
    from safemlrm.judges.keyword import KeywordJudge

    closed = []
    monkeypatch.setattr(KeywordJudge, "close", lambda self: closed.append(self.variant))
    with FaultServer() as srv:
        cfg = parse_config(api_cfg(tmp_path, srv.base_url, limit=2))
        Runner(cfg, tmp_path / "run", show_progress=False).run()
        assert set(closed) == {"refusal", "study"}
        closed.clear()
        with Store(tmp_path / "run"):  # the run fails on the lock: judges are still released
            with pytest.raises(RunLocked):
                Runner(cfg, tmp_path / "run", show_progress=False).run()
        assert set(closed) == {"refusal", "study"}
