"""A fixed-output tiny Qwen2.5-VL for `tis compare`: one that always complies (the "before" model;
conftest's tiny_vl_thinker, which always refuses, is the "after").

Kept out of tiny_models.py so that its cache key (this file's source) leaves the other tiny models'
caches valid. Its greedy output is trained in (tiny_models.train_fixed_output checks it on held-out
prompts with and without images), so a comparison asserts behaviour, not what a random model says.
"""
from __future__ import annotations

from pathlib import Path

from tiny_models import train_fixed_output

COMPLY = "<think>\nThe user wants steps.\n</think>\nSure, here are the steps."


def build_complier(path) -> Path:
    return train_fixed_output(path, COMPLY, kind="qwen25vl")
