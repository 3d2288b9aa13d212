"""The hf backend keeps the markers of the card's format when it decodes, even where the tokenizer
registers them as special tokens (GLM's box tokens, the harmony channel tokens), so the split sees them."""
import pytest

pytest.importorskip("transformers")

from safemlrm.models.cards import ModelCard  # noqa: E402
from safemlrm.models.formats import GLM_BOX, HARMONY_TOKENS  # noqa: E402
from safemlrm.models.hf import HFBackend  # noqa: E402
from safemlrm.records import Completion, GenerationSettings, Outcome  # noqa: E402

GLM = "<think>harm</think><answer>No: <|begin_of_box|>refused<|end_of_box|></answer>"
HARMONY = "<|channel|>analysis<|message|>refuse<|end|><|start|>assistant<|channel|>final<|message|>No.<|return|>"


@pytest.fixture(scope="module")
def special_tokens_lm(tmp_path_factory):
    """An untrained tiny text LM (weights unused: only its tokenizer decodes) whose tokenizer has the
    box and harmony tokens as special tokens, as the real GLM and gpt-oss tokenizers do."""
    import tiny_models as tm
    from tokenizers import AddedToken

    path = tmp_path_factory.mktemp("special")
    model, _, tok = tm._text_lm(0)
    tok.add_special_tokens({"additional_special_tokens": [AddedToken(t, special=True, normalized=False)
                                                          for t in (*GLM_BOX, *HARMONY_TOKENS)]})
    model.resize_token_embeddings(len(tok))
    return tm._save(path, model, tok, tok, "qwen")


@pytest.mark.parametrize("fmt,text,answer", [("glm_box", GLM, "No: refused"), ("harmony", HARMONY, "No.")])
def test_decoder_keeps_the_format_markers(special_tokens_lm, fmt, text, answer):
    card = ModelCard(name="m", hub_id=str(special_tokens_lm), think_format=fmt, modalities=("text",))
    b = HFBackend(card, GenerationSettings(), {"device": "cpu"})
    tok = b.processor
    ids = tok(text, add_special_tokens=False)["input_ids"]
    decoded = b.decode(ids)
    assert decoded == text.replace("<|return|>", "") or decoded == text
    r = card.reasoning_format.split(Completion(key="k", probe_key="p", model="m", text=decoded, finish_reason="stop"))
    assert r.answer == answer and r.outcome is Outcome.COMPLETE and r.reasoning
    # a card of another format drops them, as skip_special_tokens would
    other = HFBackend(card.model_copy(update={"think_format": "none"}), GenerationSettings(), {"device": "cpu"})
    assert "<|begin_of_box|>" not in other.decode(ids) and "<|channel|>" not in other.decode(ids)
