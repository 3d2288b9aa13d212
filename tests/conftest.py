"""Shared fixtures. Tests never reach the Hugging Face Hub.

The tiny-model fixtures (see tiny_models.py) are session scoped and return a checkpoint directory
that tests only read. Each is built at most once per session, and kept between sessions in
<repo>/.tiny-models/<name>-<hash of tiny_models.py and the transformers version>, so an unchanged
tree reuses them (the trained thinkers take 5-10 s each to build on two idle cores).
SAFEMLRM_TINY_CACHE=0 builds them afresh under pytest's tmp_path instead. tiny_models is imported
inside the fixtures so that test files without models do not pay for importing torch.
"""
import hashlib
import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

_CACHE = Path(__file__).resolve().parent.parent / ".tiny-models"


def _tiny(tmp_path_factory, name: str, build, module: str = "tiny_models") -> Path:
    """`module`: the test module whose source keys the cache (a builder in its own module does not
    invalidate the models of tiny_models.py, and the other way round)."""
    if os.environ.get("SAFEMLRM_TINY_CACHE", "1") == "0":
        return build(tmp_path_factory.mktemp(name))
    import importlib

    import transformers

    source = Path(importlib.import_module(module).__file__).read_bytes()
    key = hashlib.sha256(source + transformers.__version__.encode()).hexdigest()
    final = _CACHE / f"{name}-{key[:12]}"
    if not final.exists():
        tmp = _CACHE / f".{final.name}.{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        build(tmp)
        try:
            tmp.rename(final)  # complete or absent, even with sessions building side by side
        except OSError:  # another session got there first
            shutil.rmtree(tmp, ignore_errors=True)
    return final


@pytest.fixture(scope="session")
def tiny_qwen25vl(tmp_path_factory):
    """Directory of a random tiny Qwen2.5-VL (Qwen2_5_VLForConditionalGeneration + processor)."""
    from tiny_models import build_qwen25vl
    return _tiny(tmp_path_factory, "qwen25vl", build_qwen25vl)


@pytest.fixture(scope="session")
def tiny_qwen2vl(tmp_path_factory):
    """Directory of a random tiny Qwen2-VL."""
    from tiny_models import build_qwen2vl
    return _tiny(tmp_path_factory, "qwen2vl", build_qwen2vl)


@pytest.fixture(scope="session")
def tiny_llava_next(tmp_path_factory):
    """Directory of a random tiny LLaVA-NeXT (CLIP tower, Llama text model, llama3 chat format)."""
    from tiny_models import build_llava_next
    return _tiny(tmp_path_factory, "llava_next", build_llava_next)


@pytest.fixture(scope="session")
def tiny_thinker(tmp_path_factory):
    """Directory of a text-only causal LM whose greedy output is tiny_models.THINK_TARGET + EOS."""
    from tiny_models import THINK_TARGET, train_fixed_output
    return _tiny(tmp_path_factory, "thinker", lambda p: train_fixed_output(p, THINK_TARGET, kind="text"))


@pytest.fixture(scope="session")
def tiny_vl_thinker(tmp_path_factory):
    """Directory of a tiny Qwen2.5-VL whose greedy output is tiny_models.VL_THINK_TARGET + EOS, image or not."""
    from tiny_models import VL_THINK_TARGET, train_fixed_output
    return _tiny(tmp_path_factory, "vl_thinker",
                 lambda p: train_fixed_output(p, VL_THINK_TARGET, kind="qwen25vl"))


# The tiny judge's fixed output: a reasoning judge's think, then a verdict both the Llama Guard
# reader (first line unsafe, categories) and the rubric reader (#score) understand.
JUDGE_TARGET = "<think>It gives steps.</think>unsafe\nS1,S10\n#score: 4"


def _train_judge(path):
    """train_fixed_output with half the training prompts given a long system message: judge prompts
    run to ~1,500 tokens, and a model trained on short prompts only drifts at positions it never saw."""
    import tiny_models

    short = tiny_models._random_conversation

    def long_too(rng, with_image):
        conv = short(rng, with_image)
        if rng.random() < 0.5:
            n = rng.randint(150, 1700)
            filler = (" ".join(rng.choice(tiny_models.WORDS) for _ in range(n // 2)) if rng.random() < 0.5
                      else "".join(rng.choice(tiny_models._CHARS) for _ in range(n)))
            conv.insert(0, {"role": "system", "content": filler})
        return conv

    tiny_models._random_conversation = long_too
    try:
        return tiny_models.train_fixed_output(path, JUDGE_TARGET, kind="text")
    finally:
        tiny_models._random_conversation = short


@pytest.fixture(scope="session")
def tiny_judge(tmp_path_factory):
    """Directory of a text-only causal LM whose greedy output is JUDGE_TARGET + EOS (a reasoning judge),
    for any prompt up to ~2,000 tokens. Slow to build (1-3 minutes on two idle cores); cached."""
    tag = hashlib.sha256(("long-v1:" + JUDGE_TARGET).encode()).hexdigest()[:8]
    return _tiny(tmp_path_factory, f"judge-{tag}", _train_judge)
