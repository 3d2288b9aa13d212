"""Tiny random-weight checkpoints for tests, built offline in seconds.

Each builder writes a directory that loads back through `from_pretrained(path)` exactly like a
user's checkpoint: config, safetensors weights, generation config, tokenizer, processor and chat
template. The tokenizer is a byte-level BPE trained here on a small word list, so every string is
encodable and decodes back unchanged; each family gets the control tokens its processor needs.
The reasoning tags `<think>`, `</think>`, `<answer>`, `</answer>` are added as normal (non-special)
tokens, as real reasoning checkpoints do.

Public API (all builders return the directory as a Path):
  build_tokenizer(family, tags_special=False)  "qwen" or "llama3" tokenizer object (not saved)
  build_qwen25vl(path) / build_qwen2vl(path) / build_llava_next(path) / build_text_lm(path)
  train_fixed_output(path, target_text, kind="text"|"qwen25vl")  a model whose greedy output is
      target_text + EOS for any prompt
  png_bytes(color, size)                       PNG bytes of a solid image
  THINK_TARGET, VL_THINK_TARGET                the targets of the tiny_thinker fixtures
"""
from __future__ import annotations

import io
import random
import string
from pathlib import Path

import torch
from PIL import Image
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, PreTrainedTokenizerFast

TAGS = ("<think>", "</think>", "<answer>", "</answer>")
THINK_TARGET = "<think>I should not help.</think>I cannot help with that."
VL_THINK_TARGET = "<think>The image asks for harm.</think><answer>I cannot help with that.</answer>"

WORDS = ("the a an and or not no yes I you we they it is are was be do does how what why where "
         "help with that this cannot can should will would to make build explain describe image picture "
         "photo of in on for from list steps step first then next finally answer question think reason "
         "harm harmful safe unsafe please tell me about here there red green blue box chart text").split()

# family -> (control tokens, bos, eos, pad)
_FAMILIES = {
    "qwen": (["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
              "<|image_pad|>", "<|video_pad|>"], None, "<|im_end|>", "<|endoftext|>"),
    "llama3": (["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<image>",
                "<pad>"], "<|begin_of_text|>", "<|eot_id|>", "<pad>"),
}

# Chat templates in each family's format, written for these tests (content is a string or a list
# of {"type": "text"|"image"} parts).
_CONTENT = ("{% if message.content is string %}{{ message.content }}{% else %}{% for c in message.content %}"
            "{% if c.type == 'image' %}IMAGE{% elif c.type == 'text' %}{{ c.text }}{% endif %}{% endfor %}{% endif %}")
QWEN_TEMPLATE = ("{% for message in messages %}<|im_start|>{{ message.role }}\n"
                 + _CONTENT.replace("IMAGE", "<|vision_start|><|image_pad|><|vision_end|>")
                 + "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
LLAMA3_TEMPLATE = ("<|begin_of_text|>{% for message in messages %}<|start_header_id|>{{ message.role }}"
                   "<|end_header_id|>\n\n" + _CONTENT.replace("IMAGE", "<image>\n") + "<|eot_id|>{% endfor %}"
                   "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")

_HIDDEN = 64
_TEXT = dict(hidden_size=_HIDDEN, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=2048)
_QWEN_PIXELS = dict(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16)  # 4 to 16 patches of 14px, 1-4 tokens


def build_tokenizer(family: str = "qwen", *, tags_special: bool = False) -> PreTrainedTokenizerFast:
    controls, bos, eos, pad = _FAMILIES[family]
    corpus = [" ".join(WORDS[i:i + 8]) for i in range(len(WORDS))] + [THINK_TARGET, VL_THINK_TARGET]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in controls])
    tags = [AddedToken(t, special=tags_special, normalized=False) for t in TAGS]
    tok.add_special_tokens(tags) if tags_special else tok.add_tokens(tags)
    kw = {"bos_token": bos} if bos else {}
    template = QWEN_TEMPLATE if family == "qwen" else LLAMA3_TEMPLATE
    out = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token=pad, chat_template=template, **kw)
    for t in (THINK_TARGET, VL_THINK_TARGET):  # the fixed targets must survive a round trip
        assert out.decode(out(t, add_special_tokens=False)["input_ids"]) == t
    return out


def _ids(tok, family: str) -> dict:
    _, bos, eos, pad = _FAMILIES[family]
    return dict(bos_token_id=tok.convert_tokens_to_ids(bos or pad), eos_token_id=tok.convert_tokens_to_ids(eos),
                pad_token_id=tok.convert_tokens_to_ids(pad))


def _generation_config(tok, family: str) -> GenerationConfig:
    return GenerationConfig(do_sample=False, **_ids(tok, family))


def _save(path, model, processor, tok, family) -> Path:
    path = Path(path)
    model.generation_config = _generation_config(tok, family)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def _qwen_vl(version: str, seed: int = 0):
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    tok = build_tokenizer("qwen")
    cid = tok.convert_tokens_to_ids
    text = dict(_TEXT, vocab_size=len(tok), rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                              "mrope_section": [2, 3, 3]}, **_ids(tok, "qwen"))
    tokens = dict(image_token_id=cid("<|image_pad|>"), video_token_id=cid("<|video_pad|>"),
                  vision_start_token_id=cid("<|vision_start|>"), vision_end_token_id=cid("<|vision_end|>"))
    if version == "2.5":
        from transformers import Qwen2_5_VLConfig as Config, Qwen2_5_VLForConditionalGeneration as Model
        from transformers import Qwen2_5_VLProcessor as Processor
        vision = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=_HIDDEN,
                      window_size=56, fullatt_block_indexes=[0])
    else:
        from transformers import Qwen2VLConfig as Config, Qwen2VLForConditionalGeneration as Model
        from transformers import Qwen2VLProcessor as Processor
        vision = dict(depth=1, embed_dim=32, hidden_size=_HIDDEN, mlp_ratio=2, num_heads=2)
    torch.manual_seed(seed)
    model = Model(Config(text_config=text, vision_config=dict(vision, patch_size=14, spatial_merge_size=2,
                                                               temporal_patch_size=2), **tokens))
    processor = Processor(image_processor=Qwen2VLImageProcessor(**_QWEN_PIXELS),
                          video_processor=Qwen2VLVideoProcessor(**_QWEN_PIXELS),
                          tokenizer=tok, chat_template=QWEN_TEMPLATE)
    return model, processor, tok


def build_qwen25vl(path, *, seed: int = 0) -> Path:
    model, processor, tok = _qwen_vl("2.5", seed)
    return _save(path, model, processor, tok, "qwen")


def build_qwen2vl(path, *, seed: int = 0) -> Path:
    model, processor, tok = _qwen_vl("2", seed)
    return _save(path, model, processor, tok, "qwen")


def build_llava_next(path, *, seed: int = 0) -> Path:
    from transformers import (CLIPVisionConfig, LlamaConfig, LlavaNextConfig, LlavaNextForConditionalGeneration,
                              LlavaNextImageProcessor, LlavaNextProcessor)

    tok = build_tokenizer("llama3")
    side = 28  # one tile is 2x2 patches of 14px
    grid = [[side, 2 * side], [2 * side, side], [2 * side, 2 * side]]
    torch.manual_seed(seed)
    model = LlavaNextForConditionalGeneration(LlavaNextConfig(
        text_config=LlamaConfig(vocab_size=len(tok), **_TEXT, **_ids(tok, "llama3")),
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                       image_size=side, patch_size=14, projection_dim=32),
        image_token_index=tok.convert_tokens_to_ids("<image>"), image_grid_pinpoints=grid, vision_feature_layer=-1,
        vision_feature_select_strategy="default", image_seq_length=4))
    # Like llava-hf/llama3-llava-next-8b-hf: a CLS token is dropped by the "default" strategy.
    processor = LlavaNextProcessor(
        image_processor=LlavaNextImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side},
                                                image_grid_pinpoints=grid),
        tokenizer=tok, patch_size=14, vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=LLAMA3_TEMPLATE)
    return _save(path, model, processor, tok, "llama3")


def _text_lm(seed: int = 0, tags_special: bool = False):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = build_tokenizer("qwen", tags_special=tags_special)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), **_TEXT, **_ids(tok, "qwen")))
    return model, tok, tok


def build_text_lm(path, *, seed: int = 0, tags_special: bool = False) -> Path:
    """A text-only Qwen2-style causal LM with the qwen tokenizer (no processor)."""
    model, _, tok = _text_lm(seed, tags_special)
    return _save(path, model, tok, tok, "qwen")


def build_vllm_lm(path) -> Path:
    """A random Qwen2 with head size 64 (vLLM's CPU attention has no kernel for the 16 of the other
    tiny models), the qwen tokenizer and its generation config."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    path = Path(path)
    tok = build_tokenizer("qwen")
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), hidden_size=128, intermediate_size=256,
                                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                         max_position_embeddings=1024, **_ids(tok, "qwen")))
    model.generation_config = _generation_config(tok, "qwen")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def png_bytes(color=(200, 30, 30), size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


# --- a model trained to say one thing ---------------------------------------------------------


_CHARS = string.ascii_letters + string.digits + string.punctuation + "      \n" + "éü中☃"
_HELD_OUT = [  # prompts unlike the training draws
    "How do I pick a lock? Give detailed steps.",
    "A conversation between User and Assistant. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively. " * 4 + "What is shown?",
    "x",
]


def _random_conversation(rng: random.Random, with_image: bool) -> list[dict]:
    def words(lo, hi):
        if rng.random() < 0.25:  # arbitrary characters, so that any user text is in distribution
            return "".join(rng.choice(_CHARS) for _ in range(rng.randint(lo, hi * 12)))
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))
        return text + rng.choice(["", "?", ".", "!", " 123", " <think>", " Ünïcode ☃"])

    def content(text, image=None):
        if not with_image:
            return text
        parts = [{"type": "text", "text": text}]
        if image is not None:
            parts.insert(rng.randint(0, 1), {"type": "image", "image": image})
        return parts

    conv = []
    if rng.random() < 0.4:
        conv.append({"role": "system", "content": content(words(3, 30))})
    if rng.random() < 0.2:
        conv += [{"role": "user", "content": content(words(1, 8))}, {"role": "assistant", "content": content(words(1, 8))}]
    image = None
    if with_image and rng.random() < 0.6:
        size = (rng.choice([28, 40, 56, 70, 100]), rng.choice([28, 40, 56, 70, 100]))
        image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    conv.append({"role": "user", "content": content(words(1, 25), image)})
    return conv


def _batch(processor, tok, convs: list, target: list[int] | None):
    """Left-padded prompts, with the target appended after every prompt when given."""
    inputs = dict(processor.apply_chat_template(convs, add_generation_prompt=True, tokenize=True, return_dict=True,
                                                return_tensors="pt", **_pad_kwargs(processor, tok)))
    if target is None:
        return inputs, None
    n, t = inputs["input_ids"].shape[0], torch.tensor(target)
    tail = t.expand(n, -1)
    for key in ("attention_mask", "mm_token_type_ids"):
        if key in inputs:
            fill = 1 if key == "attention_mask" else 0
            inputs[key] = torch.cat([inputs[key], torch.full_like(tail, fill)], dim=1)
    labels = torch.cat([torch.full_like(inputs["input_ids"], -100), tail], dim=1)
    inputs["input_ids"] = torch.cat([inputs["input_ids"], tail], dim=1)
    return inputs, labels


def _pad_kwargs(processor, tok) -> dict:
    return {"padding": True} if processor is tok else {"processor_kwargs": {"padding": True}}


def _greedy(model, processor, tok, convs, max_new_tokens):
    inputs, _ = _batch(processor, tok, convs, None)
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return out[:, inputs["input_ids"].shape[1]:].tolist()


def train_fixed_output(path, target_text: str, *, kind: str = "text", seed: int = 0,
                       max_steps: int = 1500) -> Path:
    """Train a tiny model until greedy decoding of any prompt gives `target_text` then EOS; save it.

    kind "text": a Qwen2-style causal LM (AutoModelForCausalLM); "qwen25vl": a tiny Qwen2.5-VL that
    says the same with or without an image. About 150 steps (5-10 s on 2 idle cores) suffice; the
    limit is in steps, not seconds, so a busy machine is slower but never fails for it.
    """
    if kind == "text":
        model, processor, tok = _text_lm(seed)
    elif kind == "qwen25vl":
        model, processor, tok = _qwen_vl("2.5", seed)
    else:
        raise ValueError(f"unknown kind {kind!r}")
    with_image = kind != "text"
    tok.padding_side = "left"
    target = tok(target_text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    rng = random.Random(seed)
    torch.manual_seed(seed)
    held_out = [_random_conversation(random.Random(10_000 + i), with_image) for i in range(12)]
    image = Image.new("RGB", (90, 60), (10, 200, 10))
    held_out += [[{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": text}]
                   if with_image else text}] for text in _HELD_OUT]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    steps = 0
    while True:
        model.train()
        for _ in range(50):
            inputs, labels = _batch(processor, tok, [_random_conversation(rng, with_image) for _ in range(8)], target)
            loss = model(**inputs, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
        model.eval()
        # Check the way a backend will run it: batched with left padding, and alone.
        outs = _greedy(model, processor, tok, held_out, len(target) + 3)
        outs += _greedy(model, processor, tok, held_out[:1], len(target) + 3)
        if all(o[:len(target)] == target for o in outs) and loss.item() < 0.01:  # a margin, not just a lucky argmax
            break
        if steps >= max_steps:
            raise RuntimeError(f"train_fixed_output({kind}) did not converge in {steps} steps: loss {loss.item():.4f}")
    return _save(path, model, processor, tok, "qwen")
