"""`trust_remote_code` is on only for a model whose card says so: every transformers loader the hf
backend calls during a real run of a real tiny checkpoint is watched, and its keyword arguments read."""
from __future__ import annotations

import sys

import pytest
import yaml

from safemlrm.config import parse_config
from safemlrm.errors import ConfigError
from safemlrm.pipeline.run import Runner

LOADERS = ("AutoConfig", "AutoTokenizer", "AutoProcessor", "AutoModelForCausalLM", "AutoModelForImageTextToText")


@pytest.fixture
def loads(monkeypatch):
    """(loader, calling module, trust_remote_code as passed or '<absent>') for every from_pretrained call."""
    import transformers

    calls: list[tuple[str, str, object]] = []
    for name in LOADERS:
        cls = getattr(transformers, name)
        original = cls.from_pretrained

        def spy(*args, _original=original, _name=name, **kwargs):
            caller = sys._getframe(1).f_globals.get("__name__", "")
            calls.append((_name, caller, kwargs.get("trust_remote_code", "<absent>")))
            return _original(*args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", staticmethod(spy))
    return calls


def run_with_card(tmp_path, model_dir, card_extra: dict, options: dict | None = None) -> None:
    cards = tmp_path / "cards.yaml"
    cards.write_text(yaml.safe_dump([{"name": "tiny", "hub_id": str(model_dir), "think_format": "think",
                                      "modalities": ["text"], **card_extra}]))
    cfg = parse_config({
        "name": "remote-code", "cards": [str(cards)],
        "models": [{"card": "tiny", "backend": "hf", "generation": {"max_new_tokens": 8},
                    "options": {"dtype": "float32", "device": "cpu", **(options or {})}}],
        "datasets": [{"name": "figstep", "options": {"subset": "tiny"}, "limit": 1}],
    })
    stats = Runner(cfg, tmp_path / "run", show_progress=False).run()
    assert stats.model_calls == 1 and stats.errors == 0  # a real load and a real generation happened


@pytest.mark.slow
def test_a_card_without_the_flag_never_trusts_remote_code(tmp_path, tiny_thinker, loads):
    # the flag is no backend option: only the card, which names the model, decides
    with pytest.raises(ConfigError, match=r"key 'models.0.options.trust_remote_code': unknown key"):
        run_with_card(tmp_path, tiny_thinker, {}, options={"trust_remote_code": True})
    run_with_card(tmp_path, tiny_thinker, {})
    ours = [(name, flag) for name, caller, flag in loads if caller.startswith("safemlrm")]
    assert {name for name, _ in ours} >= {"AutoConfig", "AutoTokenizer", "AutoModelForCausalLM"}
    assert all(flag is False for _, flag in ours), ours  # passed, and False
    assert not any(flag is True for _, _, flag in loads), loads  # nor by transformers on our behalf


@pytest.mark.slow
def test_a_card_that_names_the_flag_passes_it(tmp_path, tiny_thinker, loads):
    run_with_card(tmp_path, tiny_thinker, {"trust_remote_code": True})
    ours = [(name, flag) for name, caller, flag in loads if caller.startswith("safemlrm")]
    assert ours and all(flag is True for _, flag in ours), ours
