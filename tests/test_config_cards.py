import pytest

from safemlrm.config import load_config, parse_config
from safemlrm.errors import ConfigError, UnknownName
from safemlrm.models.base import apply_prompt_convention
from safemlrm.models.cards import STUDY_INSTRUCTION, CardCatalog, load_card_file
from safemlrm.records import ImagePart, Message, TextPart

MINIMAL = {"models": [{"card": "smollm2-135m-instruct"}], "datasets": [{"name": "figstep"}]}


def test_builtin_cards_hold_the_study_pairs():
    cat = CardCatalog.builtin()
    pairs = {(b.name, r.name) for b, r in cat.pairs()}
    assert pairs >= {
        ("qwen2.5-vl-7b", "r1-onevision-7b"), ("qwen2.5-vl-7b", "mm-eureka-qwen-7b"),
        ("qwen2-vl-7b", "mulberry-qwen2vl-7b"), ("llama3-llava-next-8b", "mulberry-llava-8b"),
        ("llama-3.2-11b-vision", "mulberry-llama-11b"),
        ("smollm2-135m-instruct", "smollm2-135m-thinking")}  # the demo's miniature pair
    assert cat.get("mm-eureka-qwen-7b").prompt_style == "system"
    assert cat.get("mulberry-llama-11b").prompt_style == "prepend"
    assert cat.get("r1-onevision-7b").prompt_style == "none"


def test_zoo_cards_and_hybrid_pairs():
    cat = CardCatalog.builtin()
    pairs = {(b.name, r.name) for b, r in cat.pairs()}
    assert {("kimi-vl-a3b-instruct", "kimi-vl-a3b-thinking"), ("qwen3-vl-8b-instruct", "qwen3-vl-8b-thinking"),
            ("mimo-vl-7b-sft", "mimo-vl-7b-rl"), ("glm-4.5v[off]", "glm-4.5v[on]")} <= pairs
    reasoning = {c.name for c in cat if c.is_reasoning or c.thinking_switch is not None}
    assert len(reasoning) >= 20
    on, off = cat.get("glm-4.5v[on]"), cat.get("glm-4.5v[off]")
    assert (on.thinking, on.base, off.thinking, off.is_reasoning) == ("on", "glm-4.5v[off]", "off", False)
    assert cat.get("qwen3-vl-8b-thinking").reasoning_format.template_opened
    with pytest.raises(UnknownName, match="no thinking_switch"):
        cat.get("qwen3-vl-8b-thinking[on]")


def test_unknown_card_suggests():
    with pytest.raises(UnknownName, match="Did you mean 'r1-onevision-7b'"):
        CardCatalog.builtin().get("r1-onevison-7b")


def test_user_card_file(tmp_path):
    f = tmp_path / "cards.yaml"
    f.write_text("- name: mine\n  hub_id: /models/mine\n  base: qwen2.5-vl-7b\n  think_format: think\n")
    cat = CardCatalog.builtin()
    cat.extend_from(f)
    assert ("qwen2.5-vl-7b", "mine") in {(b.name, r.name) for b, r in cat.pairs()}
    f.write_text("- name: bad\n  hub_id: x\n  think_format: thonk\n")
    with pytest.raises(ConfigError, match=r"cards.yaml: card bad: field 'think_format'"):
        load_card_file(f)


def test_prompt_conventions():
    cat = CardCatalog.builtin()
    msgs = (Message(role="user", content=(ImagePart(sha256="ab"), TextPart(text="Q?"))),)
    sys_msgs = apply_prompt_convention(cat.get("mm-eureka-qwen-7b"), msgs)
    assert sys_msgs[0].role == "system" and sys_msgs[0].text == STUDY_INSTRUCTION and sys_msgs[1] == msgs[0]
    pre = apply_prompt_convention(cat.get("mulberry-llava-8b"), msgs)
    assert len(pre) == 1 and pre[0].content[0] == ImagePart(sha256="ab")
    assert pre[0].text.startswith(STUDY_INSTRUCTION) and pre[0].text.endswith("Q?")
    assert apply_prompt_convention(cat.get("r1-onevision-7b"), msgs) == msgs


def test_config_errors_name_file_and_key(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("models:\n  - card: x\n    bakend: hf\ndatasets: [{name: figstep}]\n")
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert str(f) in str(e.value) and "models.0.bakend" in str(e.value) and "unknown key" in str(e.value)
    f.write_text("models: [\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line"):
        load_config(f)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="key 'datasets': must list at least one"):
        parse_config({"models": MINIMAL["models"], "datasets": []})
    with pytest.raises(ConfigError, match="listed twice"):
        parse_config({"models": MINIMAL["models"] * 2, "datasets": MINIMAL["datasets"]})


def test_identity_ignores_judges_and_secrets_are_masked():
    a = parse_config(MINIMAL)
    b = parse_config({**MINIMAL, "judges": [{"name": "keyword", "params": {"variant": "study"}}]})
    assert a.identity_hash() == b.identity_hash()
    c = parse_config({**MINIMAL, "datasets": [{"name": "figstep", "limit": 5}]})
    assert c.identity_hash() != a.identity_hash()
    # a secret in a config is refused (without echoing it); the stored, masked form still parses
    with pytest.raises(ConfigError, match="'api_key' looks like a secret.*api_key_env") as e:
        parse_config({"models": [{"card": "x", "backend": "openai", "options": {"api_key": "sk-secret"}}],
                      "datasets": MINIMAL["datasets"]})
    assert "sk-secret" not in str(e.value)
    d = parse_config({"models": [{"card": "x", "backend": "openai", "options": {"api_key": "***", "api_key_env": "K"}}],
                      "datasets": MINIMAL["datasets"]})
    echo = d.echo()
    assert echo["models"][0]["options"] == {"api_key": "***", "api_key_env": "K"}
