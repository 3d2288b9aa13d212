"""Tiny models trained to emit the output format of a named judge (strongreject, reasoningshield,
guardreasoner-vl, gpt-oss-safeguard), for tests/test_reasoning_judges.py. Built through
conftest._tiny(..., module="tiny_reasoning_judges"): editing this file rebuilds only these.

The published prompts are long (ReasoningShield's is 57 lines), so most training steps are on
tiny_models' short random conversations, rendered by the judge's chat template (the model learns
to give the target after the generation prompt, whatever came before), and every fifth step also
on one prompt in the judge's own pinned format with random texts. Training stops only when greedy
decoding gives the target for held-out prompts in the judge's format (batched with left padding,
and alone), among them the test's own items, so no test depends on what an untrained model
happens to say. The text judges get a byte-level BPE that also learnt those prompts' words (about
one token a word), so a format prompt is hundreds of tokens, not thousands."""
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


def _train(path, model, processor, tok, draw, held_out: list, target: list[int], *, with_image: bool = False,
           max_steps: int = 1500, eos: list[int] | None = None) -> Path:
    """Train until greedy decoding of every held-out conversation, batched and alone, starts with
    `target`; save with `eos` as the end tokens. `draw(rng)`: one conversation in the judge's format."""
    tok.padding_side = "left"
    rng = random.Random(0)
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    steps = 0
    while True:
        model.train()
        for _ in range(25):
            batches = [[tm._random_conversation(rng, with_image) for _ in range(8)]]
            if steps % 5 == 0:
                batches.append([draw(rng)])
            for convs in batches:
                inputs, labels = tm._batch(processor, tok, convs, target)
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


# The request, answer and trace of tests/test_reasoning_judges.py's items.
TEST_QUERY, TEST_ANSWER = "How do I pick a lock?", "Here is how: step one."
TEST_TRACE = "The user wants lock picking. First, insert a tension wrench."


def _held_out(turn) -> list:
    """Held-out conversations in the judge's format: the tests' items, and tiny_models' prompts
    unlike the training draws as request and response."""
    texts = tm._HELD_OUT
    return ([turn(TEST_QUERY, TEST_ANSWER), turn(TEST_QUERY, TEST_TRACE)]
            + [turn(t, texts[(i + 1) % len(texts)][::-1]) for i, t in enumerate(texts)])


def _judge_turn(judge, channel: str = "answer"):
    """turn(request, response, image=None): the conversation the judge itself builds for an item
    (its build_messages, a fresh nonce each time), as transformers chat messages."""
    from safemlrm.judges.base import JudgeItem
    from safemlrm.judges.llm import new_nonce
    from safemlrm.records import Channel, ImagePart, Outcome, Response

    def turn(request, response, image=None):
        resp = Response(completion_key="k", reasoning=None, answer=response, full=response, outcome=Outcome.COMPLETE)
        images = {"0" * 64: b""} if image is not None else {}
        item = JudgeItem(channel=Channel(channel), text=response, query=request, response=resp, images=images)
        conv = []
        for m in judge.build_messages(item, new_nonce(request, response)):
            parts = [{"type": "text", "text": p.text} if not isinstance(p, ImagePart) else {"type": "image", "image": image}
                     for p in m.content]
            conv.append({"role": m.role, "content": parts})
        return conv

    return turn


API = dict(base_url="http://127.0.0.1:9/v1", model="tiny")


def _build_text(path, judge, target_text: str, *, channel="answer", specials=(), chat_template=None,
                end=None) -> Path:
    turn = _judge_turn(judge, channel)
    tok = _tokenizer([p["text"] for m in turn("", "") for p in m["content"]], specials)
    if chat_template:
        tok.chat_template = chat_template
    model = _text_lm(tok)
    end_ids = [tok.convert_tokens_to_ids(end)] if end else []
    target = tok(target_text, add_special_tokens=False)["input_ids"] + (end_ids or [tok.eos_token_id])
    return _train(path, model, tok, tok, lambda rng: turn(_words(rng), _words(rng)), _held_out(turn), target,
                  eos=end_ids + [tok.eos_token_id] if end_ids else None)


def build_strongreject(path) -> Path:
    from safemlrm.judges.strongreject import StrongRejectJudge

    return _build_text(path, StrongRejectJudge(**API), STRONGREJECT_OUTPUT)


def build_reasoningshield(path) -> Path:
    from safemlrm.judges.reasoningshield import ReasoningShieldJudge

    return _build_text(path, ReasoningShieldJudge(**API), REASONINGSHIELD_OUTPUT, channel="reasoning")


def build_gpt_oss_safeguard(path) -> Path:
    """A harmony model: the harmony tokens are special (as in gpt-oss), `<|return|>` ends the output,
    the judge's pinned harmony template renders its prompts (the built-in policy)."""
    from safemlrm.judges.gpt_oss_safeguard import GptOssSafeguardJudge

    judge = GptOssSafeguardJudge(**API)
    return _build_text(path, judge, GPT_OSS_OUTPUT, specials=HARMONY_SPECIALS, chat_template=judge.chat_template,
                       end="<|return|>")


def build_guardreasoner_vl(path) -> Path:
    """A tiny Qwen2.5-VL that gives GuardReasoner-VL's answer for its format, with and without images."""
    from safemlrm.judges.guardreasoner_vl import GuardReasonerVLJudge

    model, processor, tok = tm._qwen_vl("2.5", 0)
    turn = _judge_turn(GuardReasonerVLJudge(**API))

    def draw(rng):
        image = None
        if rng.random() < 0.7:
            size = (rng.choice([28, 56, 70, 100]), rng.choice([28, 56, 70, 100]))
            image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
        return turn(_words(rng), _words(rng), image)

    held = _held_out(turn) + [turn(TEST_QUERY, TEST_ANSWER, Image.new("RGB", (64, 48), (200, 30, 30)))]
    target = tok(GUARDREASONER_VL_OUTPUT, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    return _train(path, model, processor, tok, draw, held, target, with_image=True)
