"""configs/safemlrm.yaml and configs/think-in-safety.yaml validate and dry-run, with and without data."""
from pathlib import Path

import pytest
import yaml

from fixtures import benchmarks as fx
from safemlrm.config import load_config, parse_config
from safemlrm.models.cards import CardCatalog
from safemlrm.pipeline.build import build_attack
from safemlrm.pipeline.preflight import dry_run

ROOT = Path(__file__).resolve().parents[1]
STUDY_CARDS = ["qwen2.5-vl-7b", "r1-onevision-7b", "mm-eureka-qwen-7b", "qwen2-vl-7b", "mulberry-qwen2vl-7b",
               "llama3-llava-next-8b", "mulberry-llava-8b", "llama-3.2-11b-vision", "mulberry-llama-11b"]
TEN = ["01-Illegal_Activitiy", "02-HateSpeech", "03-Malware_Generation", "04-Physical_Harm", "06-Fraud", "07-Sex",
       "09-Privacy_Violence", "10-Legal_Opinion", "11-Financial_Advice", "12-Health_Consultation"]


def test_safemlrm_config_reproduces_the_study_settings():
    cfg = load_config(ROOT / "configs" / "safemlrm.yaml")
    assert [m.card for m in cfg.models] == STUDY_CARDS
    cat = CardCatalog.builtin()
    for m in cfg.models:
        cat.get(m.card)
        assert m.generation.max_new_tokens == 4096 and m.generation.temperature is None
    (ds,) = cfg.datasets
    assert ds.name == "mm-safetybench" and ds.scenarios == TEN
    assert [(a.name, a.params) for a in cfg.attacks] == [("vanilla", {"field": "Changed Question"}),
                                                          ("sd_typo", {"source": "dataset"})]
    for a in cfg.attacks:
        build_attack(a)


def test_dry_run_names_the_missing_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/ here
    rows = dry_run(load_config(ROOT / "configs" / "safemlrm.yaml"))
    assert len(rows) == 9 * 2 and all(r["probes"] == 0 for r in rows)
    assert all("data/MM-SafetyBench not found" in r["missing"] for r in rows)
    rows = dry_run(load_config(ROOT / "configs" / "think-in-safety.yaml"))
    missing = {r["dataset"]: r["missing"] for r in rows}
    assert missing["figstep"] == "" and {r["probes"] for r in rows if r["dataset"] == "figstep"} == {500}
    for name, path in [("mm-safetybench", "data/MM-SafetyBench"), ("hades", "data/HADES"), ("siuo", "data/SIUO/data"),
                       ("mssbench", "data/mssbench"), ("spa-vl", "data/SPA-VL"), ("beavertails-v", "data/BeaverTails-V")]:
        assert f"{path} not found" in missing[name]


def test_dry_run_counts_the_study_items_on_data(tmp_path, monkeypatch):
    fx.mm_safetybench(tmp_path / "data", per_scenario=2, image_types=("SD_TYPO",))
    monkeypatch.chdir(tmp_path)
    rows = dry_run(load_config(ROOT / "configs" / "safemlrm.yaml"))
    assert {r["probes"] for r in rows} == {20} and all(r["missing"] == "" for r in rows)


def test_think_in_safety_config_validates():
    cfg = load_config(ROOT / "configs" / "think-in-safety.yaml")
    assert [d.name for d in cfg.datasets] == ["mm-safetybench", "figstep", "hades", "siuo", "mssbench", "spa-vl",
                                              "beavertails-v"]
    assert [a.name for a in cfg.attacks] == ["benchmark"]
    build_attack(cfg.attacks[0])
    data = yaml.safe_load((ROOT / "configs" / "think-in-safety.yaml").read_text())
    data["datasets"][0]["options"]["image_typs"] = ["SD"]
    with pytest.raises(Exception, match="image_typs"):
        from safemlrm.pipeline.build import build_dataset

        build_dataset(parse_config(data).datasets[0])
