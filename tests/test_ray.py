"""`safemlrm run --ray`: the same run sharded over a local 2-CPU Ray cluster gives the same results
as one process, writes them into the run store, and resumes."""
from __future__ import annotations

import pytest

from safemlrm.config import parse_config
from safemlrm.pipeline.run import Runner
from api_judge import synthetic_cfg
from safemlrm.cli import optional_values
from servers import Fault, FaultServer
from run_sql import run_sql


def test_ray_address_is_optional_on_the_command_line():
    assert optional_values(["run", "c.yaml", "--ray"]) == ["run", "c.yaml", "--ray", "local"]
    assert optional_values(["run", "c.yaml", "--ray", "--no-progress"]) == [
        "run", "c.yaml", "--ray", "local", "--no-progress"]
    assert optional_values(["run", "c.yaml", "--ray", "auto"]) == ["run", "c.yaml", "--ray", "auto"]
    assert optional_values(["run", "c.yaml"]) == ["run", "c.yaml"]


def test_ray_missing_says_which_extra(monkeypatch):
    import sys

    from safemlrm.errors import SafeMLRMError
    from safemlrm.scale.ray_runner import connect

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where the extra is not installed
    with pytest.raises(SafeMLRMError, match=r"--ray needs Ray Data: pip install 'safemlrm\[ray\]'"):
        connect("local")


@pytest.mark.slow
def test_cli_run_with_ray_flag_starts_a_local_cluster(tmp_path):
    """`--ray` with no address starts Ray in the run's process (before any test here opens one)."""
    import os
    import subprocess
    import sys

    import yaml

    pytest.importorskip("ray", reason="the ray extra is not installed")
    with FaultServer() as srv:
        cfg = tmp_path / "run.yaml"
        cfg.write_text(yaml.safe_dump(synthetic_cfg(tmp_path, srv.base_url, 12, {"concurrency": 4},
                                                    [{"name": "keyword"}])))
        r = subprocess.run([sys.executable, "-m", "safemlrm.cli", "run", str(cfg), "--out", str(tmp_path / "run"),
                            "--no-progress", "--ray"], capture_output=True, text=True,
                           env={**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "HF_HUB_OFFLINE": "1"},
                           timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "model calls 12 (0 errors)" in r.stdout and srv.requests == 12


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _completions(run_dir):
    rows = run_sql(run_dir, "SELECT p.probe_key, c.key, c.body FROM plan p JOIN completions c "
                            "ON c.key = p.completion_key")
    verdicts = run_sql(run_dir, "SELECT completion_key, channel, judge, label FROM verdicts")
    from safemlrm.records import Completion
    from safemlrm.untrusted import loads_record

    out = {}
    for probe_key, ckey, body in rows:
        c = loads_record(Completion, body)
        out[probe_key] = (ckey, c.text, c.reasoning_content, c.finish_reason, c.error)
    return out, sorted(map(tuple, verdicts))


@pytest.mark.slow
def test_ray_run_matches_single_process_and_resumes(tmp_path, cluster):
    n = 40
    with FaultServer(Fault("ok", seconds=0.02)) as srv:
        cfg = parse_config(synthetic_cfg(tmp_path, srv.base_url, n, {"concurrency": 4}, [{"name": "keyword"}]))
        single = Runner(cfg, tmp_path / "single", show_progress=False).run()
        srv.reset_counts()
        sharded = Runner(cfg, tmp_path / "ray", show_progress=False, ray_address="local").run()
        assert sharded.model_calls == single.model_calls == n and sharded.errors == 0
        assert srv.requests == n  # the cluster asked each probe once
        assert _completions(tmp_path / "ray") == _completions(tmp_path / "single")
        srv.reset_counts()
        again = Runner(cfg, tmp_path / "ray", show_progress=False, ray_address="local").run()
        assert again.model_calls == 0 and srv.requests == 0


@pytest.mark.slow
def test_ray_local_engine_runs_in_an_actor_and_matches(tmp_path, cluster, tiny_thinker):
    import yaml

    cards = tmp_path / "cards.yaml"
    cards.write_text(yaml.safe_dump([{"name": "thinker", "hub_id": str(tiny_thinker), "think_format": "think",
                                      "modalities": ["text"]}]))
    cfg = parse_config({
        "name": "local", "cards": [str(cards)],
        "models": [{"card": "thinker", "backend": "hf", "generation": {"max_new_tokens": 24},
                    "options": {"dtype": "float32", "device": "cpu", "batch_size": 4}}],
        "datasets": [{"name": "synthetic", "options": {"size": 6}}],
        "judges": [{"name": "keyword"}]})
    single = Runner(cfg, tmp_path / "single", show_progress=False).run()
    sharded = Runner(cfg, tmp_path / "ray", show_progress=False, ray_address="local").run()
    assert sharded.model_calls == single.model_calls == 6 and sharded.errors == 0
    got, want = _completions(tmp_path / "ray"), _completions(tmp_path / "single")
    assert got == want
    assert {text for _, text, _, _, _ in got[0].values()} == {"<think>I should not help.</think>I cannot help with that."}


# A reply no JSON encoder to UTF-8 takes as it is: lone surrogates (escaped in the JSON, and bytes that
# are not UTF-8, which the backend keeps as surrogates), raw control characters, a line separator,
# chat-template tokens, an escaped astral pair, quotes and a backslash.
HOSTILE_BODY = (b'{"choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant",'
                b'"reasoning_content":"r\\udfff\\u0000 \x1b[2J",'
                b'"content":"a\\ud800b \xff\xfe \x1b[31m\xe2\x80\xa8 <|im_end|> \\ud83d\\ude00 \\udc00 \\"q\\" \\\\"}}],'
                b'"usage":{"prompt_tokens":1,"completion_tokens":1}}')
HOSTILE_TEXT = "a\ud800b \udcff\udcfe \x1b[31m\u2028 <|im_end|> \U0001F600 \udc00 \"q\" \\"
HOSTILE_REASONING = "r\udfff\x00 \x1b[2J"


@pytest.mark.slow
def test_ray_run_keeps_hostile_model_output_exactly(tmp_path, cluster):
    """Workers send Completions back in the store's exact JSON: a lone surrogate survives the trip."""
    n = 6
    with FaultServer(Fault("raw", raw=HOSTILE_BODY)) as srv:
        cfg = parse_config(synthetic_cfg(tmp_path, srv.base_url, n, {"concurrency": 2}, [{"name": "keyword"}]))
        sharded = Runner(cfg, tmp_path / "ray", show_progress=False, ray_address="local").run()
        assert sharded.model_calls == n and sharded.errors == 0 and srv.requests == n
        single = Runner(cfg, tmp_path / "single", show_progress=False).run()
        assert single.model_calls == n and single.errors == 0
    got, want = _completions(tmp_path / "ray"), _completions(tmp_path / "single")
    assert {(text, reasoning, error) for _, text, reasoning, _, error in got[0].values()} == {
        (HOSTILE_TEXT, HOSTILE_REASONING, None)}
    assert got == want
