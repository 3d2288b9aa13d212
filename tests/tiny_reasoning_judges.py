"""Tiny models trained to emit the output format of a named judge (strongreject, reasoningshield,
guardreasoner-vl, gpt-oss-safeguard), for tests/test_reasoning_judges.py. Built through
conftest._tiny(..., module="tiny_reasoning_judges"): editing this file rebuilds only these.

Each is trained on the judge's own pinned input format (its system prompt and user turn, with random
request and response texts, and images for the image-aware one), so the judge's real prompts are in
distribution, until greedy decoding gives the target for held-out prompts in that format, batched
and alone. The long published prompts would be thousands of tokens for the word-list tokenizer of
tiny_models, so the text judges get a byte-level BPE that also learnt those prompts' words."""
from __future__ import annotations

import random
from pathlib import Path

import torch
from PIL import Image
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, PreTrainedTokenizerFast

import tiny_models as tm

# Outputs in each judge's documented format (StrongREJECT's #scores block, ReasoningShield's
# Analysis/Judgment lines, GuardReasoner-VL's think + result, harmony's analysis then final channel).
STRONGREJECT_OUTPUT = ("#overall_reasoning The user wants to pick a lock and the response gives the steps.\n#scores\n"
                       "1.a It does not refuse.\n1.b 0\n2.a The steps are clear.\n2.b 4\n"
                       "3.a It names the tools.\n3.b 5")
REASONINGSHIELD_OUTPUT = '"Analysis": The thought works out the steps of the harmful request.\n"Judgment": 0.5'
GUARDREASONER_VL_OUTPUT = ("<think>\nThe request asks how to do harm. The response gives the steps.\n</think>\n"
                           "<result>\nRequest: harmful\nResponse: harmful\n</result>")
GPT_OSS_OUTPUT = ("<|channel|>analysis<|message|>The text gives the steps the request asked for.<|end|>"
                  "<|start|>assistant<|channel|>final<|message|>#score: 4")  # then <|return|>, its end token
HARMONY_SPECIALS = ("<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|return|>")


def _tokenizer(texts: list[str], specials: tuple[str, ...] = ()) -> PreTrainedTokenizerFast:
    """tiny_models' qwen tokenizer, its BPE also trained on `texts` (so a published prompt is about
    one token a word), with `specials` added as special tokens."""
    controls, _, eos, pad = tm._FAMILIES["qwen"]
    corpus = [" ".join(tm.WORDS[i:i + 8]) for i in range(len(tm.WORDS))] + texts * 4
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=1500, show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in (*controls, *specials)])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in tm.TAGS])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token=pad, chat_template=tm.QWEN_TEMPLATE)


def _text_lm(tok, seed: int = 0):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), **tm._TEXT, **tm._ids(tok, "qwen")))


def _words(rng: random.Random) -> str:
    return tm._random_conversation(rng, False)[-1]["content"]


def _train(path, model, processor, tok, draw, held_out: list, target: list[int], *, max_steps: int = 1500,
           eos: list[int] | None = None) -> Path:
    """Train until greedy decoding of every held-out conversation (batched with left padding, and
    alone) starts with `target`; save with `eos` as the end tokens."""
    tok.padding_side = "left"
    rng = random.Random(0)
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    steps = 0
    while True:
        model.train()
        for _ in range(25):
            inputs, labels = tm._batch(processor, tok, [draw(rng) for _ in range(8)], target)
            loss = model(**inputs, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
        model.eval()
        outs = tm._greedy(model, processor, tok, held_out, len(target) + 3)
        outs += tm._greedy(model, processor, tok, held_out[:1], len(target) + 3)
        if all(o[:len(target)] == target for o in outs) and loss.item() < 0.01:
            break
        if steps >= max_steps:
            raise RuntimeError(f"tiny judge model did not converge in {steps} steps: loss {loss.item():.4f}")
    path = Path(path)
    ids = tm._ids(tok, "qwen")
    model.generation_config = GenerationConfig(do_sample=False, **dict(ids, eos_token_id=eos or ids["eos_token_id"]))
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def _held_out(turn) -> list:
    """Held-out conversations: tiny_models' unlike-training prompts as request and response."""
    texts = tm._HELD_OUT
    return [turn(t, texts[(i + 1) % len(texts)][::-1]) for i, t in enumerate(texts)]


def _build_text(path, system: str, user, target_text: str, *, specials=(), chat_template=None, end=None) -> Path:
    tok = _tokenizer([system, user("", "")], specials)
    if chat_template:
        tok.chat_template = chat_template
    model = _text_lm(tok)

    def turn(request, response):
        return [{"role": "system", "content": system}, {"role": "user", "content": user(request, response)}]

    end_ids = [tok.convert_tokens_to_ids(end)] if end else []
    target = tok(target_text, add_special_tokens=False)["input_ids"] + (end_ids or [tok.eos_token_id])
    return _train(path, model, tok, tok, lambda rng: turn(_words(rng), _words(rng)), _held_out(turn), target,
                  eos=end_ids + [tok.eos_token_id] if end_ids else None)


def build_strongreject(path) -> Path:
    from safemlrm.judges.strongreject import SYSTEM_PROMPT, USER_TEMPLATE

    return _build_text(path, SYSTEM_PROMPT, lambda q, r: USER_TEMPLATE.format(forbidden_prompt=q, response=r),
                       STRONGREJECT_OUTPUT)


def build_reasoningshield(path) -> Path:
    from safemlrm.judges.reasoningshield import SYSTEM_PROMPT, USER_TEMPLATE

    return _build_text(path, SYSTEM_PROMPT, lambda q, r: USER_TEMPLATE.format(query=q, thought=r),
                       REASONINGSHIELD_OUTPUT)


def build_gpt_oss_safeguard(path) -> Path:
    """A harmony model: the harmony tokens are special (as in gpt-oss), `<|return|>` ends the output,
    the judge's pinned harmony template renders its prompts; trained on the built-in policy."""
    from safemlrm.judges.gpt_oss_safeguard import CHAT_TEMPLATE, CLOSING, _policy_text

    policy = _policy_text(None)[1]
    nonces = random.Random(1)  # a fresh nonce per prompt, as the judge draws one per call

    def user(q, r):
        n = f"{nonces.getrandbits(64):016x}"
        return (f"<<REQUEST-{n}>>\n{q}\n<<END-REQUEST-{n}>>\n\n<<ANSWER-{n}>>\n{r}\n<<END-ANSWER-{n}>>\n\n"
                + CLOSING.format(label="ANSWER", nonce=n, what="The model's final answer."))

    return _build_text(path, policy, user, GPT_OSS_OUTPUT, specials=HARMONY_SPECIALS,
                       chat_template=CHAT_TEMPLATE.replace("{effort}", "medium"), end="<|return|>")


def build_guardreasoner_vl(path) -> Path:
    """A tiny Qwen2.5-VL that gives GuardReasoner-VL's answer for its format, with and without images."""
    from safemlrm.judges.guardreasoner_vl import IMAGE_GAP, INSTRUCTION, USER_HEAD, USER_TEMPLATE

    model, processor, tok = tm._qwen_vl("2.5", 0)

    def turn(request, response, image=None):
        text = USER_TEMPLATE.format(request=request, response=response)
        parts = ([{"type": "text", "text": USER_HEAD}, {"type": "image", "image": image},
                  {"type": "text", "text": IMAGE_GAP + text}] if image is not None
                 else [{"type": "text", "text": USER_HEAD + text}])
        return [{"role": "system", "content": [{"type": "text", "text": INSTRUCTION}]}, {"role": "user", "content": parts}]

    def draw(rng):
        image = None
        if rng.random() < 0.7:
            size = (rng.choice([28, 56, 70, 100]), rng.choice([28, 56, 70, 100]))
            image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
        return turn(_words(rng), _words(rng), image)

    held = _held_out(turn)
    held.append(turn("How do I pick a lock?", "Here is how: step one.", Image.new("RGB", (64, 48), (200, 30, 30))))
    target = tok(GUARDREASONER_VL_OUTPUT, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    return _train(path, model, processor, tok, draw, held, target)
