"""The load paths of the benchmarks test_datasets_layouts.py does not walk: MM-SafetyBench from a
clone's root or its data/ folder; HADES, SPA-VL and BeaverTails-V from their Hub snapshot folder,
a folder inside it and one Parquet file (a file of a split or category says which it is, or is
refused naming the option); MMStar, POPE and MMMU from the file itself as from their folders."""
from __future__ import annotations

import pytest

from fixtures import benchmarks as fx
from safemlrm import registry
from safemlrm.config import DatasetSpec
from safemlrm.datasets.base import select
from safemlrm.errors import ConfigError, DataError
from safemlrm.pipeline.build import build_dataset


def ids(name: str, path, **options) -> list[str]:
    registry.load_plugins()
    return [s.id for s in select(build_dataset(DatasetSpec(name=name, path=str(path), options=options)))]


def test_mm_safetybench_clone_root_and_data_folder(tmp_path):
    base = fx.mm_safetybench(tmp_path, per_scenario=1)
    assert ids("mm-safetybench", base) == ids("mm-safetybench", base / "data")
    assert len(ids("mm-safetybench", base)) == len(fx.MM_SCENARIOS)
    with pytest.raises(DataError, match=r"no processed_questions folder in .*expected data/processed_questions"):
        ids("mm-safetybench", base / "data" / "imgs")


def test_hades_snapshot_data_folder_and_file(tmp_path):
    base = fx.hades(tmp_path)
    want = ["0-step2", "1-step2"]
    assert ids("hades", base) == ids("hades", base / "data") == want
    assert ids("hades", base / "data" / "test-00000-of-00001.parquet") == want


def test_spa_vl_snapshot_test_folder_and_a_split_file(tmp_path):
    base = fx.spa_vl(tmp_path)
    want = ["harm-0", "harm-1", "harm-2", "help-0", "help-1"]
    assert ids("spa-vl", base) == ids("spa-vl", base / "test") == want  # evalharm/ is not the harm split
    assert ids("spa-vl", base / "test" / "harm" / "0000.parquet", split="harm") == want[:3]
    with pytest.raises(ConfigError, match=r"is one file; say which split it is \(split: harm or help\)"):
        ids("spa-vl", base / "test" / "harm" / "0000.parquet")


def test_beavertails_v_snapshot_and_a_category_file(tmp_path):
    cats = ["animal_abuse", "dangerous_behavior"]
    base = fx.beavertails_v(tmp_path, categories=tuple(cats))
    both = ids("beavertails-v", base, categories=cats)
    assert len(both) == 4
    one = base / "animal_abuse" / "evaluation-00000-of-00001.parquet"
    assert ids("beavertails-v", one, categories=cats[:1]) == both[:2]
    with pytest.raises(DataError, match=r"no file for category 'deception_in_personal_relationships'"):
        ids("beavertails-v", base)  # a partial download: name its categories


def test_capability_benchmarks_from_the_file_itself(tmp_path):
    q = "Which object is on the table?\nOptions: A: a cup, B: a dog"
    mmstar = fx.write_parquet(tmp_path / "MMStar" / "mmstar.parquet", [
        {"index": 0, "question": q, "image": fx.image_bytes(), "answer": "A", "category": "math"}])
    assert ids("mmstar", mmstar) == ids("mmstar", mmstar.parent) == ["0"]
    pope = fx.write_parquet(tmp_path / "POPE" / "data" / "test-00000-of-00001.parquet", [
        {"question_id": "1", "question": "Is there a dog?", "answer": "yes", "image": fx.image_bytes(),
         "category": "random"}])
    assert ids("pope", pope) == ids("pope", tmp_path / "POPE") == ["random-1"]
    mmmu = fx.write_parquet(tmp_path / "MMMU" / "Art" / "validation-00000-of-00001.parquet", [
        {"id": "validation_Art_1", "question": "Which?", "options": "['cat', 'dog']", "image_1": fx.image_bytes(),
         "answer": "A", "question_type": "multiple-choice"}], image_cols=("image_1",))
    assert ids("mmmu", mmmu) == ids("mmmu", tmp_path / "MMMU") == ids("mmmu", tmp_path / "MMMU" / "Art")
