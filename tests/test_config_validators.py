"""The validators and YAML reading that run configs and Think-in-Safety configs share: an empty
list, an unknown name and an unreadable file are named by key or file in both."""
import pytest

from safemlrm.config import parse_config
from safemlrm.errors import ConfigError
from safemlrm.tis.config import BuildConfig, load_build_config, load_train_config, parse

RUN = {"models": [{"card": "tiny"}], "datasets": [{"name": "figstep"}]}
BUILD = {"sources": [{"name": "vlguard"}], "captioner": {"card": "c"}, "teacher": {"card": "t"}}


@pytest.mark.parametrize("key", ["models", "datasets", "attacks"])
def test_run_config_lists_must_not_be_empty(key):
    with pytest.raises(ConfigError, match=f"key '{key}': must list at least one entry"):
        parse_config({**RUN, key: []})


def test_build_config_empty_sources_and_unknown_names():
    with pytest.raises(ConfigError, match="key 'sources': must list at least one dataset"):
        parse(BuildConfig, {**BUILD, "sources": []}, "b.yaml")
    with pytest.raises(ConfigError) as e:
        parse(BuildConfig, {**BUILD, "filters": {"dedupe": ["question", "image"]}}, "b.yaml")
    assert ("key 'filters.dedupe'" in str(e.value)
            and "unknown de-duplication key(s) image; keys: image_question, question, thought" in str(e.value))
    with pytest.raises(ConfigError, match=r"unknown artefact kind\(s\) typos, gaps2; kinds: gaps"):
        parse(BuildConfig, {**BUILD, "filters": {"artefacts": ["typos", "gaps", "gaps2"]}}, "b.yaml")
    cfg = parse(BuildConfig, {**BUILD, "filters": {"artefacts": ["gaps"], "dedupe": ["thought"]}}, "b.yaml")
    assert (cfg.filters.artefacts, cfg.filters.dedupe) == (["gaps"], ["thought"])


@pytest.mark.parametrize("load", [load_build_config, load_train_config])
def test_tis_config_files_that_cannot_be_read_are_named(tmp_path, load):
    f = tmp_path / "tis.yaml"
    f.write_text("sources: [\n")
    with pytest.raises(ConfigError, match=rf"{f}: not valid YAML at line"):
        load(f)
    with pytest.raises(ConfigError, match="config file not found"):
        load(tmp_path / "missing.yaml")
