"""The row loop every benchmark loader shares (BenchmarkDataset.records / item_samples) and the
option check they share (one_of): bad rows keep their numbers, are named and counted, a record
is kept whole or skipped whole, and a bad option value names the dataset and the option."""
import json

import pytest

from fixtures import benchmarks as fx
from safemlrm.datasets.figstep import SafeBench
from safemlrm.datasets.hades import Hades
from safemlrm.datasets.jailbreakv import JailBreakV
from safemlrm.datasets.mssbench import MSSBench
from safemlrm.datasets.siuo import SIUO
from safemlrm.datasets.spa_vl import SPAVL
from safemlrm.datasets.vlguard import VLGuard
from safemlrm.errors import ConfigError, DataError


def spa_vl_jsonl(tmp_path):
    """One SPA-VL harm file: good, unparsable, not an object, no question, good."""
    fx.write_image(tmp_path / "a.png")
    f = tmp_path / "harm.jsonl"
    f.write_text("\n".join([json.dumps({"question": "q0?", "image": "a.png"}), "{broken",
                            json.dumps(["q2?", "a.png"]), json.dumps({"image": "a.png"}),
                            json.dumps({"question": "q4?", "image": "a.png", "class1": "c"})]) + "\n")
    return f


def test_bad_rows_are_named_counted_and_keep_their_numbers(tmp_path):
    f = spa_vl_jsonl(tmp_path)
    with pytest.raises(DataError) as e:
        list(SPAVL(path=f, split="harm").samples())
    assert f"{f}, line 2: not valid JSON" in str(e.value) and "on_error: skip" in str(e.value)
    ds = SPAVL(path=f, split="harm", on_error="skip")
    samples = list(ds.samples())
    assert [s.id for s in samples] == ["harm-0", "harm-4"]  # ids number every row, bad ones included
    assert samples[1].meta == {"split": "harm", "prompt_field": "question", "class1": "c"}
    assert ds.skipped == 3
    assert ds.skip_reasons[1] == f"{f}, line 3: the record is a list, not an object"
    assert ds.skip_reasons[2].startswith(f"{f}, line 4: field 'question' is missing")


def test_a_record_that_is_not_an_object_is_an_item_error(tmp_path):
    f = tmp_path / "hades.jsonl"
    f.write_text(json.dumps([1, 2]) + "\n")
    with pytest.raises(DataError, match=r"hades\.jsonl, line 1: the record is a list, not an object"):
        list(Hades(path=f, step="all").samples())


def test_a_record_is_kept_whole_or_skipped_whole(tmp_path):
    base = tmp_path / "vlg"
    fx.write_image(base / "test" / "a.png")
    fx.write_json(base / "test.json", [
        {"id": "a", "image": "a.png", "safe": True,
         "instr-resp": [{"safe_instruction": "fine?"}, {"nothing": "here"}]},  # its second element is bad
        {"id": "a", "image": "a.png", "safe": True, "instr-resp": [{"safe_instruction": "again?"}]},
    ])
    ds = VLGuard(path=base, on_error="skip")
    samples = list(ds.samples())
    # the bad record gave no Sample and reserved no id, so the second record's a-0 is not a duplicate
    assert [(s.id, s.intent) for s in samples] == [("a-0", "again?")]
    assert ds.skipped == 1 and "record 0, instr-resp[1]: no instruction" in ds.skip_reasons[0]


@pytest.mark.parametrize("make, message", [
    (lambda p: SPAVL(path=p, split="hram"), "dataset 'spa-vl': split must be both, harm or help, not 'hram'. "
                                            "Did you mean 'harm'?"),
    (lambda p: MSSBench(path=p, task="chta"), "dataset 'mssbench': task must be both, chat or embodied, not "
                                              "'chta'. Did you mean 'chat'?"),
    (lambda p: JailBreakV(path=p, subset="mni"), "dataset 'jailbreakv': subset must be mini or full, not 'mni'. "
                                                 "Did you mean 'mini'?"),
    (lambda p: JailBreakV(path=p, subset=["mini"]), "dataset 'jailbreakv': subset must be mini or full, not "
                                                    "['mini']. Did you mean 'mini'?"),
    (lambda p: SIUO(path=p, task="quiz"), "dataset 'siuo': task must be gen or mcqa, not 'quiz'."),
    (lambda p: SafeBench(subset="ful"), "dataset 'figstep': subset must be one of tiny, full, not 'ful'. "
                                        "Did you mean 'full'?"),
])
def test_a_bad_option_value_names_the_dataset_option_and_choices(tmp_path, make, message):
    with pytest.raises(ConfigError) as e:
        make(tmp_path)
    assert str(e.value) == message
