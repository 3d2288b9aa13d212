"""Benchmarks as users download them: a repository clone root or its data/ folder, the file itself,
or the Hub snapshot layout; both MSSBench file names; a published record with an empty required
text left out and counted (a renamed field or a corrupt file still stops)."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from fixtures import benchmarks as fx
from safemlrm import registry
from safemlrm.datasets.base import select
from safemlrm.errors import DataError
from safemlrm.pipeline.build import build_dataset
from safemlrm.config import DatasetSpec


def load(name: str, path, **options):
    registry.load_plugins()
    ds = build_dataset(DatasetSpec(name=name, path=str(path) if path is not None else None, options=options))
    return ds, list(select(ds))


def vlsbench_with_empty(root: Path) -> Path:
    """VLSBench's data.json with a third record whose instruction is empty, as in the release."""
    import json

    base = fx.vlsbench(root)
    data = json.loads((base / "data.json").read_text())
    data.append({"instruction_id": 2, "instruction": "", "image_path": "imgs/2.png", "category": "Privacy",
                 "sub_category": "Personal Information", "source": "MLLMGuard"})
    fx.write_image(base / "imgs" / "2.png")
    fx.write_json(base / "data.json", data)
    return base


def test_vlsbench_hub_snapshot_clone_data_folder_and_file(tmp_path):
    snap = vlsbench_with_empty(tmp_path / "hub")  # Hub snapshot: data.json and imgs/ (imgs.tar unpacked)
    clone = tmp_path / "clone"
    shutil.copytree(snap, clone / "data")  # a clone keeping the files in data/
    for path in (snap, snap / "data.json", clone, clone / "data", clone / "data" / "data.json"):
        ds, samples = load("vlsbench", path)
        assert [s.id for s in samples] == ["0", "1"], path
        assert ds.skipped == 1 and "record 2" in ds.skip_reasons[0] and "'instruction'" in ds.skip_reasons[0]
    assert set(type(ds).scenarios) == {"Illegal Activity", "Violent", "Hate", "Privacy", "Self-Harm", "Erotic"}
    with pytest.raises(DataError, match=r"record 2: field 'instruction' is empty.*on_empty: skip"):
        load("vlsbench", snap, on_empty="raise")


def test_a_renamed_field_or_corrupt_file_still_stops(tmp_path):
    import json

    base = fx.vlsbench(tmp_path)
    data = json.loads((base / "data.json").read_text())
    data[1]["prompt"] = data[1].pop("instruction")  # not the published schema
    fx.write_json(base / "data.json", data)
    with pytest.raises(DataError, match=r"record 1: field 'instruction' is missing"):
        load("vlsbench", base)
    (base / "data.json").write_text('[{"instruction_id": 0,')
    with pytest.raises(DataError, match=r"data.json, line 1: not valid JSON"):
        load("vlsbench", base)
    (base / "data.json").rename(base / "data_v2.json")
    with pytest.raises(DataError, match=r"none of data.json found in .*looked for .*data/data.json"):
        load("vlsbench", base)


@pytest.mark.parametrize("name", ["combine.json", "combined.json"])
@pytest.mark.parametrize("where", ["root", "data", "file"])
def test_mssbench_both_file_names(tmp_path, name, where):
    base = fx.mssbench(tmp_path)
    if name != "combine.json":
        (base / "combine.json").rename(base / name)
    path = base / name if where == "file" else base
    if where == "data":  # a clone with the download under data/
        shutil.move(str(base), str(tmp_path / "data"))
        (tmp_path / "clone").mkdir()
        shutil.move(str(tmp_path / "data"), str(tmp_path / "clone" / "data"))
        path = tmp_path / "clone"
    _, samples = load("mssbench", path)
    assert len(samples) == 2 * (3 + 2)  # three chat queries and two embodied pairs, two sides each


def test_vlguard_hub_snapshot_folder_and_file(tmp_path):
    base = fx.vlguard(tmp_path)
    _, a = load("vlguard", base)
    _, b = load("vlguard", base / "test.json")
    assert a and [s.id for s in a] == [s.id for s in b]


def test_figstep_clone_root_and_its_question_folder(tmp_path):
    from safemlrm.datasets.figstep import bundled_csv

    q = tmp_path / "FigStep" / "data" / "question"
    q.mkdir(parents=True)
    shutil.copy(bundled_csv("tiny"), q / "SafeBench-Tiny.csv")
    with open(bundled_csv("full"), newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    with open(q / "safebench.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows[:1 + 60])  # the header and 60 items
    for path in (tmp_path / "FigStep", q):
        assert len(load("figstep", path)[1]) == 50
        assert len(load("figstep", path, subset="full")[1]) == 60
    with pytest.raises(DataError, match=r"none of safebench.csv found"):
        (q / "safebench.csv").unlink()
        load("figstep", tmp_path / "FigStep", subset="full")


def test_siuo_and_jailbreakv_folders(tmp_path):
    siuo = fx.siuo(tmp_path / "s")
    n = len(load("siuo", siuo)[1])
    assert n and len(load("siuo", siuo / "siuo_gen.json")[1]) == n == len(load("siuo", siuo.parent)[1])
    jbv = fx.jailbreakv(tmp_path / "j")
    m = len(load("jailbreakv", jbv)[1])
    assert m and len(load("jailbreakv", jbv / "JailBreakV_28K")[1]) == m
