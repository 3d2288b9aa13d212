"""The dry run is the run's preflight: it fails naming each problem (a dataset that does not load,
an image attack for a text-only model, an unreachable judge or target server), shows the
model/dataset/attack pairs of per-model attacks, and names the items left out while loading; a run
mixing a text-only and a vision tiny model with per-model attacks plans and makes exactly those
pairs."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fixtures import benchmarks as fx
from safemlrm.config import parse_config
from safemlrm.errors import ConfigError
from safemlrm.pipeline.preflight import preflight
from safemlrm.results import load_run
from safemlrm.pipeline.run import Runner

SAFEMLRM = [sys.executable, "-m", "safemlrm.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cards_file(tmp_path: Path, thinker: Path, vl_thinker: Path) -> str:
    f = tmp_path / "cards.yaml"
    f.write_text(yaml.safe_dump([
        {"name": "text-thinker", "hub_id": str(thinker), "think_format": "think", "modalities": ["text"]},
        {"name": "vl-thinker", "hub_id": str(vl_thinker), "think_format": "think_answer"}]))
    return str(f)


def mixed(tmp_path, thinker, vl_thinker, figstep_models=("vl-thinker",), **extra) -> dict:
    opts = {"dtype": "float32", "device": "cpu", "batch_size": 4}
    return {
        "name": "mixed", "cards": [cards_file(tmp_path, thinker, vl_thinker)],
        "models": [{"card": "text-thinker", "options": opts, "generation": {"max_new_tokens": 8}},
                   {"card": "vl-thinker", "options": opts, "generation": {"max_new_tokens": 8}}],
        "datasets": [{"name": "figstep", "options": {"subset": "tiny"}, "limit": 2, "seed": 1}],
        "attacks": [{"name": "vanilla"}, {"name": "figstep", **({"models": list(figstep_models)} if figstep_models else {})}],
        "judges": [{"name": "keyword"}],
        **extra,
    }


def test_dry_run_names_each_problem_and_exits_2(tmp_path, tiny_thinker, tiny_vl_thinker):
    cfg = mixed(tmp_path, tiny_thinker, tiny_vl_thinker, figstep_models=None)  # figstep to both models
    cfg["datasets"].append({"name": "vlsbench", "path": str(tmp_path / "no-such-download")})
    port = free_port()
    cfg["judges"].append({"name": "rubric", "params": {"backend": "openai", "model": "judge",
                                                      "base_url": f"http://127.0.0.1:{port}/v1"}})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    p = subprocess.run(SAFEMLRM + ["run", str(tmp_path / "c.yaml"), "--dry-run"], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 2, p.stdout + p.stderr
    out = " ".join(p.stdout.split())  # the table wraps long cells
    assert "3 problem(s):" in out
    assert f"- dataset vlsbench: {tmp_path / 'no-such-download'} not found" in out
    assert ("dataset 'figstep' with attack 'figstep' sends image, text, but model 'text-thinker' (backend 'hf') "
            "accepts only text") in out
    assert "judge rubric" in out and f"127.0.0.1:{port}/v1 cannot be reached" in out
    assert "Traceback" not in p.stderr


def test_dry_run_shows_the_pairs_of_per_model_attacks_and_the_items_left_out(tmp_path, tiny_thinker,
                                                                            tiny_vl_thinker):
    cfg = mixed(tmp_path, tiny_thinker, tiny_vl_thinker)
    cfg["datasets"].append({"name": "vlsbench", "path": str(_vlsbench_with_empty(tmp_path)),
                            "models": ["vl-thinker"]})
    pf = preflight(parse_config(cfg))
    assert pf.ok, pf.problems
    pairs = {(r.model, r.dataset, r.attack): r.probes for r in pf.rows}
    assert pairs == {("text-thinker", "figstep", "vanilla"): 2, ("vl-thinker", "figstep", "vanilla"): 2,
                     ("vl-thinker", "figstep", "figstep"): 2,
                     ("vl-thinker", "vlsbench", "vanilla"): 2, ("vl-thinker", "vlsbench", "figstep"): 2}
    assert pf.left_out["vlsbench"].count == 1 and "record 2" in pf.left_out["vlsbench"].records[0]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    p = subprocess.run(SAFEMLRM + ["run", str(tmp_path / "c.yaml"), "--dry-run"], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "dataset vlsbench: 1 item(s) left out" in p.stdout and "field 'instruction' is empty" in p.stdout


def _vlsbench_with_empty(tmp_path: Path) -> Path:
    base = fx.vlsbench(tmp_path)
    data = json.loads((base / "data.json").read_text())
    data.append({"instruction_id": 2, "instruction": "", "image_path": "imgs/2.png", "category": "Privacy",
                 "sub_category": "Personal Information", "source": "MLLMGuard"})
    fx.write_image(base / "imgs" / "2.png")
    fx.write_json(base / "data.json", data)
    return base


def test_per_model_names_must_be_models_of_the_config(tmp_path, tiny_thinker, tiny_vl_thinker):
    with pytest.raises(ConfigError, match=r"attacks.1.models: no model 'vl-thinkr'.*vl-thinker"):
        parse_config(mixed(tmp_path, tiny_thinker, tiny_vl_thinker, figstep_models=("vl-thinkr",)))


def test_a_run_mixing_text_only_and_vision_models_with_per_model_attacks(tmp_path, tiny_thinker, tiny_vl_thinker):
    cfg = mixed(tmp_path, tiny_thinker, tiny_vl_thinker)
    cfg["attacks"] = [{"name": "vanilla", "models": ["text-thinker"]}, {"name": "figstep", "models": ["vl-thinker"]}]
    cfg["datasets"].append({"name": "vlsbench", "path": str(_vlsbench_with_empty(tmp_path))})
    cfg["attacks"].append({"name": "direct", "models": ["vl-thinker"]})
    run_cfg = parse_config(cfg)
    stats = Runner(run_cfg, tmp_path / "run", show_progress=False).run()
    planned = load_run(tmp_path / "run").planned
    got = sorted(set(zip(planned["model"], planned["dataset"], planned["attack"])))
    assert got == [("text-thinker", "figstep", "vanilla"), ("text-thinker", "vlsbench", "vanilla"),
                   ("vl-thinker", "figstep", "direct"), ("vl-thinker", "figstep", "figstep"),
                   ("vl-thinker", "vlsbench", "direct"), ("vl-thinker", "vlsbench", "figstep")]
    assert stats.errors == 0 and stats.model_calls == len(planned) == 6 * 2
    summary = (tmp_path / "run" / "summary.md").read_text()
    assert "## Items left out while loading" in summary and "data.json, record 2: field" in summary


def test_an_unreachable_target_server_is_a_problem(tmp_path):
    port = free_port()
    f = tmp_path / "cards.yaml"
    f.write_text(yaml.safe_dump([{"name": "echo", "hub_id": "echo-model", "think_format": "think",
                                  "modalities": ["text"]}]))
    cfg = parse_config({"name": "t", "cards": [str(f)],
                        "models": [{"card": "echo", "backend": "openai",
                                    "options": {"base_url": f"http://127.0.0.1:{port}/v1"}}],
                        "datasets": [{"name": "figstep", "limit": 1}]})
    pf = preflight(cfg)
    assert pf.problems == (f"model echo: the server at 127.0.0.1:{port}/v1 does not answer "
                           f"([Errno 111] Connection refused)",)
    assert pf.rows[0].problem == pf.problems[0]
