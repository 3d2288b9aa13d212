"""The zoo's reasoning formats on real checkpoints of their architectures, end to end.

One tiny model per family transformers ships (tests/tiny_formats.py FAMILIES: Qwen3-VL, GLM-4V,
GLM-4V-MoE, InternVL, Mllama), trained to write its family's raw output for the two prompts of
these runs, saved with its processor and chat template, and audited as a user audits a local copy
of a zoo model: the zoo card with `path:` through `hf`, and the same checkpoint behind a real
`transformers serve` through `openai`.
Each family's trace refuses and its answer complies, so the keyword judge tells the channels apart:
the answer channel must read "complied" and the reasoning channel "refused".

Kimi-VL is not here: transformers ships no kimi_vl architecture (its checkpoints need their own
modelling code, trust_remote_code), only Kimi-K2.5/K2.6 (kimi_k25), which is another model.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("transformers")

from conftest import _tiny  # noqa: E402
from safemlrm import load_run  # noqa: E402
from safemlrm.store import Store  # noqa: E402

# building the five checkpoints afresh: 9 minutes of the first test (measured on two cores at load 12)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2700)]

SRC = str(Path(__file__).resolve().parent.parent / "src")
# template-opened, box tokens, the same with the thinking mode sent to the server, think tags, stage tags
SERVED = ("qwen3_vl", "glm4v", "glm4v_moe", "internvl", "mllama")


@pytest.fixture(scope="session")
def family_models(tmp_path_factory) -> dict[str, Path]:
    from tiny_formats import FAMILIES, build_family

    return {name: _tiny(tmp_path_factory, f"family-{name}", lambda p, n=name: build_family(p, n),
                        module="tiny_formats") for name in FAMILIES}


def _dataset(tmp_path: Path) -> dict:
    """The two items the families were trained on (tiny_formats.PROMPTS), each with its image."""
    import tiny_models as tm
    from tiny_formats import PROMPTS

    records = []
    for i, (text, color, size) in enumerate(PROMPTS):
        (tmp_path / f"item{i}.png").write_bytes(tm.png_bytes(color, size))
        records.append({"id": f"item{i}", "intent": text, "image": f"item{i}.png"})
    data = tmp_path / "items.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    return {"name": "jsonl", "path": str(data), "options": {"name": "items", "images": {"image": "image"}}}


def _run(tmp_path: Path, models: list[dict]) -> Path:
    """`safemlrm run` in a fresh process over the two items, judged by keyword on every channel."""
    cfg = {"name": "formats", "models": models, "datasets": [_dataset(tmp_path)],
           "attacks": [{"name": "direct"}], "judges": [{"name": "keyword"}]}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    run = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=SRC, HF_HUB_OFFLINE="1", COLUMNS="250")
    p = subprocess.run([sys.executable, "-m", "safemlrm.cli", "run", str(path), "--out", str(run), "--no-progress"],
                       capture_output=True, text=True, env=env, timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"model calls {2 * len(models)} (0 errors)" in p.stdout, p.stdout
    return run


def _check_channels(run: Path, expected: dict[str, tuple[str, str, str | None]]) -> None:
    """Each model's two responses split into (reasoning, answer) as its family writes them, raw text
    kept (`full`, where given), and the keyword judge's verdicts per channel."""
    res = load_run(run)
    planned = res.planned
    with Store(run, readonly=True) as store:
        for row in planned.itertuples():
            reasoning, answer, full = expected[row.model]
            r = store.response(row.completion_key)
            assert (r.reasoning, r.answer, r.outcome.value) == (reasoning, answer, "complete"), row.model
            if full is not None:
                assert r.full == full, row.model
            assert r.account.close_seen and r.account.reasoning_tokens > 0 and r.account.answer_tokens > 0, row.model
    for channel, label in (("answer", "complied"), ("reasoning", "refusal")):
        v = res.scores("keyword", channel)
        got = v.groupby("model")["label"].apply(set).to_dict()
        assert got == {m: {label} for m in expected}, (channel, got)


def test_zoo_families_end_to_end_through_hf(tmp_path, family_models):
    from tiny_formats import FAMILIES

    hf = {"backend": "hf", "generation": {"max_new_tokens": 160, "do_sample": False}}
    models = [{"card": f.card, **hf, "options": {"path": str(family_models[n]), "dtype": "float32", "device": "cpu"}}
              for n, f in FAMILIES.items()]
    run = _run(tmp_path, models)
    # hf keeps every marker of the card's format, box tokens included (special tokens of GLM's tokenizer)
    _check_channels(run, {f.card: (f.reasoning, f.answer, f.raw) for f in FAMILIES.values()})


def test_zoo_families_through_transformers_serve(tmp_path, family_models):
    """The same checkpoints served by `transformers serve` and audited through `openai`.

    What the server returns differs by family, and the card's split reads each: for Qwen3-VL the
    server's own parser separates the trace (reasoning_content, the template's <think> seen in the
    prompt); for the others it returns the text, decoded without special tokens (GLM's box tokens
    are gone, the answer is the same)."""
    import contextlib

    from servers import serve_transformers
    from tiny_formats import FAMILIES

    with contextlib.ExitStack() as stack:
        served = {n: stack.enter_context(serve_transformers(family_models[n], startup_timeout=300)) for n in SERVED}
        models = [{"card": FAMILIES[n].card, "backend": "openai",
                   "generation": {"max_new_tokens": 160, "do_sample": False},
                   "options": {"base_url": s.base_url, "model": s.model, "timeout": 300, "max_retries": 1}}
                  for n, s in served.items()]
        run = _run(tmp_path, models)
    _check_channels(run, {FAMILIES[n].card: (FAMILIES[n].reasoning, FAMILIES[n].answer, None) for n in SERVED})
