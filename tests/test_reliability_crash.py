"""A run killed with SIGKILL at many points and resumed each time ends with exactly the store of a
run that was never interrupted: every probe answered once, every verdict whole, the same metrics.

Real processes (`python -m safemlrm.cli run`), real SQLite, two real HTTP servers on 127.0.0.1: the
target and the LLM judge (`rubric`) are FaultServers answering after a small fixed delay, so each
stage lasts long enough to be hit. Kill points are drawn with a seeded generator and aimed at each
stage by watching the store from outside; where each kill actually landed is read from the store
after the process died.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from safemlrm.records import Completion, Response, Verdict
from servers import Fault, FaultServer

SAFEMLRM = [sys.executable, "-m", "safemlrm.cli"]
SEED = 8
EPISODES = 4  # each: a fresh run directory killed 6 times, then resumed to the end
JUDGE_REPLY = "#reason: The text declines.\n#score: 1"
PHASES = ("probes", "generate", "judge", "summary")


def write_config(tmp_path: Path, target: str, judge: str) -> Path:
    cards = tmp_path / "cards.yaml"
    cards.write_text(yaml.safe_dump([{"name": "echo", "hub_id": "echo-model", "think_format": "think"}]))
    fast = {"timeout": 20, "max_retries": 3, "backoff_base": 0.01, "concurrency": 2, "max_concurrency": 2}
    cfg = {
        "name": "crash",
        "cards": [str(cards)],
        "models": [{"card": "echo", "backend": "openai", "options": {"base_url": target, **fast},
                    "generation": {"max_new_tokens": 16}}],
        # FigStep renders an image per item: probe building is a stage of its own
        "datasets": [{"name": "figstep", "options": {"subset": "tiny"}, "limit": 12, "seed": 3}],
        "attacks": [{"name": "vanilla"}, {"name": "figstep"}],
        "judges": [{"name": "keyword"},
                   {"name": "rubric", "params": {"base_url": judge, "model": "judge-model", **fast}}],
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def counts(run_dir: Path) -> dict[str, int] | None:
    """Rows per table as another process sees them (None before the tables exist)."""
    db_path = run_dir / "store.sqlite"
    if not db_path.exists():
        return None
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5) as db:
            return {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                    for t in ("plan", "completions", "verdicts")}
    except sqlite3.Error:
        return None


def phase_of(c: dict[str, int] | None, full: dict[str, int]) -> str:
    if c is None or c["plan"] < full["plan"]:
        return "probes"
    if c["completions"] < full["completions"]:
        return "generate"
    if c["verdicts"] < full["verdicts"]:
        return "judge"
    return "summary"


def launch(cfg: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([*SAFEMLRM, "run", str(cfg), "--out", str(out), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def run_and_kill(cfg: Path, out: Path, ready, delay: float) -> tuple[bool, dict | None]:
    """Start a run; once `ready(counts now, counts at launch)` holds, wait `delay` and SIGKILL it.
    Returns (killed?, counts at death)."""
    at_launch = counts(out) or {"plan": 0, "completions": 0, "verdicts": 0}
    proc = launch(cfg, out)
    deadline = time.monotonic() + 60
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            c = counts(out)
            if c is not None and ready(c, at_launch):
                time.sleep(delay)
                break
            time.sleep(0.003)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            return True, counts(out)
        _, err = proc.communicate()
        assert proc.returncode == 0, err.decode()[-3000:]
        return False, counts(out)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def finish(cfg: Path, out: Path) -> None:
    proc = launch(cfg, out)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-3000:]


def snapshot(run_dir: Path) -> dict:
    """A run's content: every table (timestamps and measured latencies left out), the written
    tables and summary, and the blobs."""
    snap: dict = {}
    with sqlite3.connect(f"file:{run_dir / 'store.sqlite'}?mode=ro", uri=True) as db:
        snap["probes"] = sorted(db.execute("SELECT key, dataset, sample_id, scenario, attack, body FROM probes"))
        snap["plan"] = sorted(db.execute("SELECT model, probe_key, completion_key FROM plan"))
        rows = []
        for key, probe_key, model, error, body in db.execute(
                "SELECT key, probe_key, model, error, body FROM completions"):
            fields = json.loads(body)
            fields.pop("latency_s")  # measured, differs between any two runs
            rows.append((key, probe_key, model, error, json.dumps(fields, sort_keys=True)))
        snap["completions"] = sorted(rows)
        snap["responses"] = sorted(db.execute("SELECT completion_key, outcome, body FROM responses"))
        snap["verdicts"] = sorted(db.execute("SELECT completion_key, channel, judge, cache_key, score, label, "
                                             "by_prefilter, body FROM verdicts"))
        snap["meta"] = sorted((k, v) for k, v in db.execute("SELECT key, value FROM meta")
                              if k not in ("created", "environment"))
    for name in ("metrics.csv", "outcomes.csv", "summary.md"):
        snap[name] = (run_dir / name).read_bytes()
    snap["blobs"] = sorted((p.name, hashlib.sha256(p.read_bytes()).hexdigest())
                           for p in (run_dir / "blobs").rglob("*") if p.is_file() and not p.name.startswith(".tmp-"))
    return snap


def assert_whole(run_dir: Path) -> None:
    """Nothing half-written: each row parses and agrees with its columns, each blob matches its hash."""
    with sqlite3.connect(f"file:{run_dir / 'store.sqlite'}?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        for ck, channel, judge, cache, score, label, pre, body in db.execute(
                "SELECT completion_key, channel, judge, cache_key, score, label, by_prefilter, body FROM verdicts"):
            v = Verdict.model_validate_json(body)
            assert (v.completion_key, v.channel.value, v.judge, v.cache_key, v.score, v.label.value,
                    int(v.by_prefilter)) == (ck, channel, judge, cache, score, label, pre)
        for key, body in db.execute("SELECT key, body FROM completions"):
            assert Completion.model_validate_json(body).key == key
        pairs = db.execute("SELECT COUNT(*) FROM completions c JOIN responses r ON r.completion_key = c.key"
                           ).fetchone()[0]
        assert pairs == db.execute("SELECT COUNT(*) FROM completions").fetchone()[0] == \
            db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        for (body,) in db.execute("SELECT body FROM responses"):
            Response.model_validate_json(body)
        planned = {r[0] for r in db.execute("SELECT completion_key FROM plan")}
        assert planned == {r[0] for r in db.execute("SELECT key FROM completions")}
    for p in (run_dir / "blobs").rglob("*"):
        if p.is_file() and not p.name.startswith(".tmp-"):
            assert hashlib.sha256(p.read_bytes()).hexdigest() == p.name


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_matches_an_uninterrupted_run(tmp_path):
    rng = random.Random(SEED)
    with FaultServer(Fault("ok", seconds=0.04)) as target, \
            FaultServer(Fault("ok", seconds=0.03, content=JUDGE_REPLY)) as judge:
        cfg = write_config(tmp_path, target.base_url, judge.base_url)
        clean = tmp_path / "clean"
        finish(cfg, clean)
        full = counts(clean)
        assert full == {"plan": 24, "completions": 24, "verdicts": 24 * 2 * 2}  # 2 channels x 2 judges
        reference = snapshot(clean)
        assert target.requests == 24 and judge.requests == 24  # answer == full (no reasoning): one call each

        landed: Counter[str] = Counter()
        kills = 0
        for episode in range(EPISODES):
            out = tmp_path / f"killed-{episode}"
            target.reset_counts()
            judge.reset_counts()
            # Aim at each stage in turn. Each aim waits for progress made by the process being killed
            # (c0: the counts when it started), so a kill never lands in the start-up of a resume.
            nc, nv = full["completions"], full["verdicts"]
            k1 = rng.randint(1, nc // 2)
            k2 = rng.randint(k1 + 1, nc - 1)
            v1 = rng.randint(nc * 2 + 1, nv - 20)
            v2 = rng.randint(v1 + 1, nv - 1)
            aims = [
                (lambda c, c0: True, rng.uniform(0.0, 0.15)),  # the store exists: probes are being built
                (lambda c, c0, k=k1: c["completions"] >= max(k, c0["completions"] + 1), 0.0),
                (lambda c, c0, k=k2: c["completions"] >= max(k, c0["completions"] + 1), rng.uniform(0.0, 0.05)),
                (lambda c, c0, v=v1, nc=nc: c["completions"] == nc and c["verdicts"] >= max(v, c0["verdicts"] + 1), 0.0),
                (lambda c, c0, v=v2: c["verdicts"] >= max(v, c0["verdicts"] + 1), 0.0),
                # this process judged the last item: it is tearing down and writing the summary
                (lambda c, c0, nv=nv: c0["verdicts"] < nv and c["verdicts"] == nv, rng.uniform(0.02, 0.5)),
            ]
            for ready, delay in aims:
                killed, at_death = run_and_kill(cfg, out, ready, delay)
                if killed:
                    kills += 1
                    landed[phase_of(at_death, full)] += 1
            finish(cfg, out)

            assert_whole(out)
            got = snapshot(out)
            for part in reference:
                assert got[part] == reference[part], f"episode {episode}: {part} differs from the uninterrupted run"
            # each kill loses at most the requests in flight (2 at a time), never a stored answer
            assert 24 <= target.requests <= 24 + 6 * 2
            assert 24 <= judge.requests <= 24 + 6 * 2  # one judge call serves both channels

    print(f"\n{kills} kills, landed: {dict(landed)}")
    assert kills >= 20
    assert all(landed[p] >= 1 for p in PHASES), landed
