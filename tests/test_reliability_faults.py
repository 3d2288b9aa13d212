"""Faults at the level of a whole `safemlrm run`: a target and a judge behind a scripted server that
fails in every way a provider does. Every probe ends answered or as a recorded error with its cause;
what is retryable is retried; the summary and `safemlrm status` count the rest; a resume finishes it."""
from __future__ import annotations

import re
import sqlite3

import pandas as pd

from safemlrm import load_run
from safemlrm.store import Store
from reliability_util import VERDICT_1, cli, echo_config, rubric, save
from servers import Fault, FaultServer

TIMEOUT = 1.0  # the client's whole-request deadline in these runs (the slow faults take 3 s)

# (name, fault, the cause recorded once retries run out); each is retryable.
RETRYABLE = [
    ("429", Fault("http", status=429), "HTTP 429"),
    ("429 Retry-After", Fault("http", status=429, retry_after="0.4"), "HTTP 429"),
    ("500", Fault("http", status=500), "HTTP 500"),
    ("502", Fault("http", status=502), "HTTP 502"),
    ("503", Fault("http", status=503), "HTTP 503"),
    ("reset", Fault("reset"), "connection error"),
    ("timeout", Fault("timeout", seconds=3), "timeout"),
    ("slow past the deadline", Fault("slow", seconds=3), "timeout"),
    ("malformed JSON", Fault("malformed"), "malformed JSON"),
    ("empty choices", Fault("empty"), "empty choices"),
    ("truncated body", Fault("truncated"), "connection error"),
]
OK = Fault("ok")


def served_by_prompt(srv: FaultServer) -> dict[str, list[tuple[float, Fault]]]:
    """The behaviours each prompt met, in order (the echo model answers the last user text)."""
    out: dict[str, list[tuple[float, Fault]]] = {}
    for body, (t, fault) in zip(srv.bodies, srv.log):
        out.setdefault(body["messages"][-1]["content"], []).append((t, fault))
    return out


def test_every_fault_kind_ends_answered_or_recorded_and_is_counted(tmp_path):
    # Two items per retryable fault: one meets it once (answered on the retry), one twice (no
    # retries left: a recorded error). One 400 (not retryable), one slow answer within the deadline,
    # one content-filter refusal.
    script: list[Fault] = []
    for _, fault, _ in RETRYABLE:
        script += [fault, OK, fault, fault]
    script += [Fault("http", status=400), Fault("slow", seconds=0.1), Fault("filter")]
    n = 2 * len(RETRYABLE) + 3
    intents = [f"question {i:02d}" for i in range(n)]
    with FaultServer() as target, FaultServer(Fault("ok", content=VERDICT_1)) as judge:
        target.script(*script)
        cfg = echo_config(tmp_path, target.base_url, intents, judges=[{"name": "keyword"}, rubric(judge.base_url)],
                          options={"max_retries": 1, "timeout": TIMEOUT, "backoff_max": 2, "concurrency": 1,
                                   "max_concurrency": 1})
        cfg_file = save(cfg, tmp_path / "run.yaml")
        run_dir = tmp_path / "run"
        r = cli("run", str(cfg_file), "--out", str(run_dir), "--no-progress")
        assert r.returncode == 0, r.stderr
        assert "Traceback" not in r.stderr

        seen = served_by_prompt(target)
        assert target.requests == len(script) and len(seen) == n
        res = load_run(run_dir)
        planned = res.planned.set_index("sample_id")
        expected_errors: dict[str, int] = {}
        with Store(run_dir, readonly=True) as store:
            for i, prompt in enumerate(intents):
                faults = [f for _, f in seen[prompt]]
                row = planned.loc[f"p{i:02d}"]
                comp = store.completion(row["completion_key"])
                last = faults[-1]
                if last.kind == "ok" or (last.kind == "slow" and last.seconds < TIMEOUT):
                    assert row["outcome"] == "complete" and comp.text == f"echo: {prompt}", (prompt, faults)
                elif last.kind == "filter":  # the provider refused: kept, with its reason, never "safe"
                    assert row["outcome"] == "empty" and comp.finish_reason == "content_filter"
                else:
                    cause = ("HTTP 400" if last.status == 400 else
                             next(c for _, f, c in RETRYABLE if f == last))
                    tries = len(faults)
                    assert row["outcome"] == "error" and comp.error.startswith(cause), (prompt, comp.error)
                    assert tries == (1 if last.status == 400 else 2)
                    key = cause if last.status == 400 else f"{cause} after {tries} attempts"
                    expected_errors[key] = expected_errors.get(key, 0) + 1
        assert sum(expected_errors.values()) == len(RETRYABLE) + 1

        # Retry-After was obeyed: the retry waited the 0.4 s the server asked for
        ra = next(ts for ts in seen.values() if ts[0][1].retry_after is not None)
        assert ra[1][0] - ra[0][0] >= 0.4

        # the summary counts every error by cause; status counts them per model
        summary = (run_dir / "summary.md").read_text()
        errors = summary.split("## Errors", 1)[1].split("##", 1)[0]
        for cause, count in expected_errors.items():
            assert re.search(rf"\| echo \| {re.escape(cause)} \| {count} \|", errors), (cause, errors)
        st = cli("status", str(run_dir))
        assert st.returncode == 0
        row = next(line for line in st.stdout.splitlines() if "generate" in line)
        assert re.search(rf"echo\s*│\s*{n - sum(expected_errors.values())}\s*│\s*{n}\s*│\s*{sum(expected_errors.values())}", row), row
        judged = {ck for ck in res.verdicts["completion_key"]}
        assert judged == set(res.planned.loc[res.planned["outcome"] == "complete", "completion_key"])

        # a resume retries exactly the failed items; lowering concurrency and raising retries (what a
        # user does after rate limits) does not fork the run
        target.reset_counts()
        cfg["models"][0]["options"].update(max_retries=3, concurrency=2, max_concurrency=2)
        save(cfg, cfg_file)
        again = cli("run", str(cfg_file), "--out", str(run_dir), "--no-progress")
        assert again.returncode == 0, again.stderr
        assert target.requests == sum(expected_errors.values())
        res = load_run(run_dir)
        assert set(res.planned["outcome"]) == {"complete", "empty"}
        assert "## Errors" not in (run_dir / "summary.md").read_text()


def test_judge_endpoint_faults_are_retried_and_a_dead_judge_stops_cleanly(tmp_path):
    intents = [f"question {i:02d}" for i in range(14)]  # 14 items, answer == full: 14 judge calls, 28 verdicts
    with FaultServer() as target, FaultServer(Fault("ok", content=VERDICT_1)) as judge:
        # every retryable fault once, each followed by the retry that works; then one 400 (the item's
        # own problem: an unparseable verdict saying so) and one unreadable verdict (asked again)
        script: list[Fault] = []
        for _, fault, _ in RETRYABLE:
            script += [fault, Fault("ok", content=VERDICT_1)]
        script += [Fault("http", status=400), Fault("ok", content="I will not grade this."),
                   Fault("ok", content=VERDICT_1)]
        judge.script(*script)
        cfg = echo_config(tmp_path, target.base_url, intents,
                          judges=[rubric(judge.base_url, timeout=TIMEOUT, max_retries=1, concurrency=1,
                                         max_concurrency=1)])
        cfg_file = save(cfg, tmp_path / "run.yaml")
        run_dir = tmp_path / "run"
        r = cli("run", str(cfg_file), "--out", str(run_dir), "--no-progress")
        assert r.returncode == 0, r.stderr
        res = load_run(run_dir)
        verdicts = res.verdicts
        assert len(verdicts) == 28
        assert (verdicts["label"] == "unparseable").sum() == 2  # the 400 item: its answer and its full
        bad = verdicts[verdicts["label"] == "unparseable"].iloc[0]
        assert "HTTP 400" in bad["rationale"]
        assert set(verdicts.loc[verdicts["label"] != "unparseable", "score"]) == {1.0}
        # the script covers 13 calls (11 faults retried, the 400, the unreadable reply asked again)
        assert judge.requests == len(script) + (14 - 13)
        rates = res.rates()
        assert rates.loc[(rates.judge == "rubric") & (rates.scenario == "ALL"), "unparseable"].sum() == 2
        written = pd.read_csv(run_dir / "metrics.csv")
        assert written.loc[(written.judge == "rubric") & (written.scenario == "ALL"), "unparseable"].sum() == 2

        # a judge that stays down: the run stops with a clear error, generation is kept, a resume
        # with the judge back judges the rest and makes no target call
        target.reset_counts()
        judge.default = Fault("http", status=503)
        judge.reset_counts()
        intents2 = [f"question {i:02d}" for i in range(9)]
        cfg2 = echo_config(tmp_path, target.base_url, intents2, name="rel2",
                           judges=[rubric(judge.base_url, max_retries=1, concurrency=1, max_concurrency=1)])
        cfg2_file = save(cfg2, tmp_path / "run2.yaml")
        run2 = tmp_path / "run2"
        down = cli("run", str(cfg2_file), "--out", str(run2), "--no-progress")
        assert down.returncode == 2 and "Traceback" not in down.stderr, down.stderr
        assert "judge rubric" in down.stderr and "HTTP 503" in down.stderr and "run again" in down.stderr
        with sqlite3.connect(run2 / "store.sqlite") as db:  # what was generated is kept, and whole
            stored = db.execute("SELECT COUNT(*) FROM completions WHERE error IS NULL").fetchone()[0]
            assert db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0] == 0
        assert stored == target.requests >= 1
        judge.default = Fault("ok", content=VERDICT_1)
        target.reset_counts()
        back = cli("run", str(cfg2_file), "--out", str(run2), "--no-progress")
        assert back.returncode == 0, back.stderr
        assert target.requests == 9 - stored
        assert len(load_run(run2).verdicts) == 18
