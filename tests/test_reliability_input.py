"""Bad input through the real command line: each mistake ends with exit code 2 and one message that
names the file, the item and the field (with close matches for names), and never a traceback.

The cases run as parallel subprocesses in one fixture; docs/reliability.md lists the same cases with
the messages they give.
"""
from __future__ import annotations

import copy
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from PIL import Image

from reliability_util import cli, write_jsonl
from servers import FaultServer

CARDS = [{"name": "echo-vl", "hub_id": "echo-model", "think_format": "think"},
         {"name": "echo-text", "hub_id": "echo-model", "think_format": "think", "modalities": ["text"]}]


def base_config(url: str) -> dict:
    return {
        "name": "input",
        "cards": ["cards.yaml"],
        "models": [{"card": "echo-vl", "backend": "openai",
                    "options": {"base_url": url, "max_retries": 0, "timeout": 5}}],
        "datasets": [{"name": "jsonl", "path": "items.jsonl", "options": {"images": {"image": "img"}}}],
        "attacks": [{"name": "direct"}],
    }


def edit(cfg: dict, path: str, value=None, *, rename: str | None = None, delete: bool = False) -> dict:
    """A copy of cfg with the dotted key set, renamed or deleted."""
    out = copy.deepcopy(cfg)
    parts = path.split(".")
    node = out
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node[p]
    last = int(parts[-1]) if isinstance(node, list) else parts[-1]
    if rename is not None:
        node[rename] = node.pop(last)
    elif delete:
        del node[last]
    else:
        node[last] = value
    return out


# id -> (files to write {name: text | bytes | dict config}, CLI args, what the message must say)
def cases(url: str) -> dict[str, tuple[dict, list[str], list[str]]]:
    base = base_config(url)
    items = "items.jsonl"
    return {
        "malformed YAML": ({"run.yaml": "name: t\nmodels: [\n  {card: x\n"}, ["run", "run.yaml"],
                           ["run.yaml: not valid YAML at line"]),
        "not a mapping": ({"run.yaml": "- just\n- a list\n"}, ["run", "run.yaml"],
                          ["run.yaml: a run config is a YAML mapping (got list)"]),
        "config file missing": ({}, ["run", "nowhere.yaml"], ["config file not found: nowhere.yaml"]),
        "unknown top-level key": ({"run.yaml": edit(base, "modles", [])}, ["run", "run.yaml"],
                                  ["run.yaml: invalid run config", "key 'modles': unknown key. Did you mean 'models'"]),
        "unknown nested key": ({"run.yaml": edit(base, "datasets.0.path", rename="pth")}, ["run", "run.yaml"],
                               ["key 'datasets.0.pth': unknown key. Did you mean 'path'?",
                                "Keys here: name, path, options, scenarios, limit, seed"]),
        "wrong type": ({"run.yaml": edit(base, "datasets.0.limit", "ten")}, ["run", "run.yaml"],
                       ["key 'datasets.0.limit': Input should be a valid integer"]),
        "unknown model card": ({"run.yaml": edit(base, "models.0.card", "echo-vI")}, ["run", "run.yaml"],
                               ["run.yaml: key 'models.0.card': unknown model card 'echo-vI'. Did you mean 'echo-vl'"]),
        "unknown backend": ({"run.yaml": edit(base, "models.0.backend", "opneai")}, ["run", "run.yaml"],
                            ["run.yaml: key 'models.0.backend': unknown backend 'opneai'. Did you mean 'openai'"]),
        "unknown dataset": ({"run.yaml": edit(base, "datasets.0.name", "figstpe")}, ["run", "run.yaml"],
                            ["run.yaml: key 'datasets.0.name': unknown dataset 'figstpe'. Did you mean 'figstep'"]),
        "unknown attack": ({"run.yaml": edit(base, "attacks.0.name", "figstpe")}, ["run", "run.yaml"],
                           ["run.yaml: key 'attacks.0.name': unknown attack 'figstpe'. Did you mean 'figstep'"]),
        "unknown judge": ({"run.yaml": edit(base, "judges", [{"name": "keywrod"}])}, ["run", "run.yaml"],
                          ["run.yaml: key 'judges.0.name': unknown judge 'keywrod'. Did you mean 'keyword'"]),
        "unknown attack parameter": ({"run.yaml": edit(base, "attacks.0.params", {"feild": "x"})}, ["run", "run.yaml"],
                                     ["run.yaml: invalid attack 'direct' params",
                                      "key 'attacks.0.params.feild': unknown key. Did you mean 'field'"]),
        "unknown backend option": ({"run.yaml": edit(base, "models.0.options.retries", 3)}, ["run", "run.yaml"],
                                   ["run.yaml: invalid backend 'openai' options",
                                    "key 'models.0.options.retries': unknown key. Did you mean 'max_retries'"]),
        "bad card file": ({"cards.yaml": [{"name": "echo-vl", "hub_id": "x", "think_format": "thinking"}],
                           "run.yaml": base}, ["run", "run.yaml"],
                          ["cards.yaml: card echo-vl: field 'think_format'"]),
        "secret in the config": ({"run.yaml": edit(base, "models.0.options.api_key", "sk-do-not-store-me")},
                                 ["run", "run.yaml"],
                                 ["key 'models.0.options': 'api_key' looks like a secret", "api_key_env"]),
        "api_key_env not set": ({"run.yaml": edit(base, "models.0.options.api_key_env", "NO_SUCH_KEY_VAR")},
                                ["run", "run.yaml"],
                                ["model echo-vl: option 'api_key_env' names the environment variable "
                                 "NO_SUCH_KEY_VAR, which is not set"]),
        "dataset file missing": ({"run.yaml": edit(base, "datasets.0.path", "itmes.jsonl")}, ["run", "run.yaml"],
                                 ["cannot read itmes.jsonl: No such file or directory"]),
        "wrong dataset schema": ({items: [{"id": "a", "question": "q", "img": "ok.png"}]}, ["run", "run.yaml"],
                                 [f"{items}, line 1: field 'intent' (column 'intent') is missing or empty. "
                                  "The record has: id, img, question"]),
        "wrong benchmark columns": ({"safebench.csv": "dataset,category_id,task_id,category_nme,question,instruction\n"
                                                      "x,1,1,a,b,c\n",
                                     "run.yaml": edit(edit(base, "datasets.0", {"name": "figstep",
                                                                                "path": "safebench.csv"}),
                                                      "attacks.0.name", "vanilla")},
                                    ["run", "run.yaml"],
                                    ["safebench.csv, line 1 (header): missing column 'category_name'. "
                                     "Did you mean 'category_nme'"]),
        "missing image": ({items: [{"id": "a", "intent": "x", "img": "ok.png"},
                                   {"id": "b", "intent": "y", "img": "gone.png"}]}, ["run", "run.yaml"],
                          [f"{items}, line 2: image field 'image' (column 'img'): file 'gone.png' not found"]),
        "corrupt image": ({items: [{"id": "a", "intent": "x", "img": "ok.png"},
                                   {"id": "b", "intent": "y", "img": "corrupt.png"}]}, ["run", "run.yaml"],
                          ["attack 'direct': image 'image' of item 'b' (dataset 'jsonl:items')",
                           "corrupt.png is not a readable PNG, JPEG, WebP or GIF image"]),
        "not an image": ({items: [{"id": "a", "intent": "x", "img": "notes.png"}]}, ["run", "run.yaml"],
                         ["attack 'direct': image 'image' of item 'a' (dataset 'jsonl:items')",
                          "notes.png is not a readable PNG, JPEG, WebP or GIF image (Pillow cannot identify it)"]),
        "image to a text-only model": ({"run.yaml": edit(base, "models.0.card", "echo-text")}, ["run", "run.yaml"],
                                       ["dataset 'jsonl' with attack 'direct' sends image, text, but model "
                                        "'echo-text' (backend 'openai') accepts only text"]),
        "unknown scenario": ({"run.yaml": edit(edit(base, "datasets.0", {"name": "figstep", "scenarios": ["Ilegal"]}),
                                               "attacks.0.name", "vanilla")}, ["run", "run.yaml"],
                             ["dataset 'figstep' has no scenario 'Ilegal'"]),
        "a run made by another config": ({"run.yaml": edit(base, "datasets.0.limit", 1)},
                                         ["run", "run.yaml", "--out", "made"],
                                         ["made was made by a different config (its datasets differ from run.yaml)",
                                          "results are never mixed", "To fork, run with a new output directory "
                                                                     "(--out NEW_DIR)"]),
        "status of a non-run folder": ({}, ["status", "."], ["is not a safemlrm run directory"]),
        "markup in a file name": ({}, ["run", "x[/]y[bold].yaml"], ["config file not found: x[/]y[bold].yaml"]),
    }


def write_files(folder: Path, files: dict) -> None:
    for name, content in files.items():
        path = folder / name
        if name.endswith(".jsonl"):
            write_jsonl(path, content)
        elif isinstance(content, (dict, list)):
            path.write_text(yaml.safe_dump(content))
        else:
            path.write_text(content)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-input")
    with FaultServer() as srv:
        table = cases(srv.base_url)
        folders = {}
        for i, (name, (files, _args, _)) in enumerate(table.items()):
            folder = root / f"case{i:02d}"
            folder.mkdir()
            Image.new("RGB", (8, 8), "red").save(folder / "ok.png")
            (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 8)
            (folder / "notes.png").write_text("not an image at all")
            defaults = {"cards.yaml": CARDS, "run.yaml": base_config(srv.base_url),
                        "items.jsonl": [{"id": "a", "intent": "x", "img": "ok.png"}]}
            write_files(folder, {**defaults, **files})
            folders[name] = folder
        # the fork case needs a finished run made by the unedited config
        made = folders["a run made by another config"]
        (made / "base.yaml").write_text(yaml.safe_dump(base_config(srv.base_url)))
        first = cli("run", "base.yaml", "--out", "made", "--no-progress", cwd=made)
        assert first.returncode == 0, first.stderr

        def go(name: str):
            args = table[name][1]
            extra = ["--no-progress"] if args[0] == "run" else []
            return name, cli(*args, *extra, cwd=folders[name], env={"NO_SUCH_KEY_VAR": ""})

        with ThreadPoolExecutor(4) as pool:
            results = dict(pool.map(go, table))
        yield {name: (results[name], table[name][2]) for name in table}


CASE_NAMES = list(cases("http://127.0.0.1:1/v1"))


@pytest.mark.parametrize("case", CASE_NAMES)
def test_bad_input_gives_one_clear_message(outcomes, case):
    proc, expected = outcomes[case]
    everything = proc.stdout + proc.stderr
    assert "Traceback" not in everything, everything
    assert proc.returncode == 2, everything
    message = " ".join(proc.stderr.split())  # the console wraps long lines
    assert message.startswith("error: "), message
    for part in expected:
        assert " ".join(part.split()) in message, f"{part!r} not in {message!r}"
    assert "sk-do-not-store-me" not in everything


def test_a_run_that_stopped_before_any_model_call_is_taken_over_by_the_fixed_config(tmp_path):
    """A mistake found after the run directory exists (here: images for a text-only model) leaves
    nothing to mix: the corrected config runs in the same directory. Once answers exist, it may not."""
    with FaultServer() as srv:
        write_files(tmp_path, {"cards.yaml": CARDS, "items.jsonl": [{"id": "a", "intent": "x", "img": "ok.png"}]})
        Image.new("RGB", (8, 8), "red").save(tmp_path / "ok.png")
        bad = edit(base_config(srv.base_url), "models.0.card", "echo-text")
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
        out = "runs/[bold]odd[/] name"  # a path that looks like Rich markup is printed as it is
        first = cli("run", "bad.yaml", "--out", out, "--no-progress", cwd=tmp_path)
        assert first.returncode == 2 and "accepts only text" in first.stderr
        assert (tmp_path / out / "store.sqlite").exists()

        fixed = edit(bad, "attacks.0.name", "vanilla")
        (tmp_path / "fixed.yaml").write_text(yaml.safe_dump(fixed))
        second = cli("run", "fixed.yaml", "--out", out, "--no-progress", cwd=tmp_path)
        assert second.returncode == 0, second.stderr
        assert f"run directory: {out}" in second.stdout and srv.requests == 1

        third = cli("run", "bad.yaml", "--out", out, "--no-progress", cwd=tmp_path)
        assert third.returncode == 2 and "made by a different config (its attacks differ from bad.yaml)" in \
            " ".join(third.stderr.split())


INPUT_BEGIN = "<!-- input-cases:begin (written by tests/test_reliability_input.py) -->"
INPUT_END = "<!-- input-cases:end -->"


def test_the_doc_lists_every_case_with_its_message(outcomes):
    """docs/reliability.md's bad-input table is these cases' messages (SAFEMLRM_WRITE_DOCS=1 rewrites it)."""
    import os

    doc = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"
    lines = ["| case | command | message |", "| --- | --- | --- |"]
    for name in CASE_NAMES:
        args = cases("http://127.0.0.1:1/v1")[name][1]
        message = " ".join(outcomes[name][0].stderr.split()).replace("|", "&#124;")
        message = re.sub(r"\S*/bad-input\d*/case\d+/", "", message)  # temporary folders shortened to file names
        lines.append(f"| {name} | `safemlrm {' '.join(args)}` | {message} |")
    table = "\n".join(lines)
    text = doc.read_text(encoding="utf-8")
    head, rest = text.split(INPUT_BEGIN)
    _, tail = rest.split(INPUT_END)
    if os.environ.get("SAFEMLRM_WRITE_DOCS"):
        doc.write_text(f"{head}{INPUT_BEGIN}\n{table}\n{INPUT_END}{tail}", encoding="utf-8")
    assert rest.split(INPUT_END)[0].strip() == table
