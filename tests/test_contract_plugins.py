"""One contract over every registered plugin (backends, datasets, attacks, judges): each declares its
options as a PluginOptions model that refuses unknown keys, the run config is checked against it
before anything runs (file, key path, did-you-mean), and `safemlrm list` shows the same declaration."""
from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from safemlrm import registry
from safemlrm.cli import app
from safemlrm.errors import ConfigError
from safemlrm.models.cards import ModelCard
from safemlrm.models.hf import HFBackend
from safemlrm.options import PluginOptions, check_options, describe, options_model
from safemlrm.records import GenerationSettings

PLUGINS = [(kind, name) for kind in registry.KINDS for name, cls in registry.items(kind)
           if cls.__module__.startswith("safemlrm.")]  # the built-ins (tests register a few of their own)


@pytest.mark.parametrize("kind, name", PLUGINS, ids=[f"{k}:{n}" for k, n in PLUGINS])
def test_every_plugin_declares_options_that_refuse_unknown_keys(kind, name):
    cls = registry.get(kind, name)
    model = options_model(cls)
    assert issubclass(model, PluginOptions) and model.model_config["extra"] == "forbid"
    assert [row[0] for row in describe(cls)] == list(model.model_fields)
    known = list(model.model_fields)
    assert known, f"{kind} {name} declares no options"
    typo = known[0] + "x"  # one letter off a real option: the message offers the real one
    with pytest.raises(ConfigError) as e:
        check_options(kind, name, cls, {typo: 1}, where="run.yaml", key="things.0.options")
    msg = str(e.value)
    assert msg.startswith(f"run.yaml: invalid {kind} {name!r} options")
    assert f"key 'things.0.options.{typo}': unknown key. Did you mean {known[0]!r}" in msg
    check_options(kind, name, cls, {}, where="run.yaml", key="things.0.options")  # nothing given is fine


@pytest.mark.parametrize("kind", registry.KINDS)
def test_list_shows_each_plugin_with_its_declared_options(kind):
    res = CliRunner().invoke(app, ["list", f"{kind}s"], env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    for name in (n for k, n in PLUGINS if k == kind):
        first = describe(registry.get(kind, name))[0][0]
        line = next(x for x in res.output.splitlines() if x.startswith(f"│ {name} "))
        assert first in line


def test_hf_refuses_a_misspelt_option_and_a_bad_value():
    card, settings = ModelCard(name="m", hub_id="org/m"), GenerationSettings()
    with pytest.raises(ConfigError, match=r"model m: invalid backend 'hf' options\n  key 'options.batchsize': "
                                          r"unknown key. Did you mean 'batch_size'\?"):
        HFBackend(card, settings, {"batchsize": 4})
    with pytest.raises(ConfigError, match=r"key 'options.batch_size': Input should be greater than or equal to 1"):
        HFBackend(card, settings, {"batch_size": 0})
    b = HFBackend(card, settings, {"batch_size": "4", "dtype": "float32"})  # coerced, given keys only
    assert b.options == {"batch_size": 4, "dtype": "float32"}


def test_a_run_config_is_checked_before_anything_is_written(tmp_path):
    cfg = {"name": "c", "models": [{"card": "qwen2.5-vl-7b", "backend": "hf", "options": {"batchsize": 4}}],
           "datasets": [{"name": "figstep", "options": {"subset": "tiny"}, "limit": 1}],
           "judges": [{"name": "keyword", "params": {"variant": "studdy"}}]}
    f = tmp_path / "run.yaml"
    f.write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(app, ["run", str(f), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "invalid backend 'hf' options" in res.output and "key 'models.0.options.batchsize'" in res.output
    assert not (tmp_path / "run").exists()
    cfg["models"][0]["options"] = {"batch_size": 4}
    f.write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(app, ["run", str(f), "--dry-run"])
    assert res.exit_code == 2 and "key 'judges.0.params.variant': must be one of refusal, study, not 'studdy'. Did you mean 'study'?" in res.output
