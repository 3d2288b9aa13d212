"""MM-Vet's LLM grader: each answer graded 0.0-1.0 against the item's ground truth, by MM-Vet's own
few-shot prompt (a protocol fact: the published grades come from exactly this text, so it is pinned
here as MM-Vet's evaluator has it, github.com/yuweihao/MM-Vet `mm-vet_evaluator.py`, Apache-2.0).

What MM-Vet does, and what is kept:
* one user message: the prompt, a newline, then `question | ground truth | prediction | ` (the
  ground truth with " <AND> " and " <OR> " spaced out), for the model to complete the last cell;
  GPT-4 (gpt-4-0613) at temperature 0 with max_tokens 3. Here any OpenAI-compatible server or a
  local checkpoint (`backend: hf`) grades, through the same machinery as the LLM judges
  (`judges/llm.py`); `max_tokens` defaults to 3 as published;
* the grade is the reply's first space-separated word as a number in [0, 1];
* a reply that is not one is asked again with the prompt followed by "Predict the correctness of
  the answer (digit): ". MM-Vet retries up to five times with a rising temperature and then records
  0.0; here one retry, then the grade is `unparseable`: counted and shown, never 0 and never correct.

The prediction is the model's final answer (the answer channel: reasoning is not graded), cleaned of
chat-template control tokens. It goes into the table unfenced, as MM-Vet sends it, so that grades
stay comparable with published ones; an answer can try to talk its grader into a grade, as it can
in MM-Vet itself.

The grader reads MM-Vet items only (their `meta["answer"]`); `tis compare --grader KEY=VALUE`
builds it (`safemlrm.tis.capability_rows`), and `safemlrm.capability.mmvet_scores` aggregates the
grades per capability and in total as MM-Vet reports them.
"""
from __future__ import annotations

import math
from typing import Any, ClassVar

from ..errors import ConfigError
from ..records import Channel, Label, Message, TextPart
from .base import JudgeItem, JudgeResult, Scale
from .llm import LLMJudge
from .parsing import Unreadable

# MM-Vet's grading prompt, verbatim (mm-vet_evaluator.py, `prompt`).
MMVET_PROMPT = """Compare the ground truth and prediction from AI models, to give a correctness score for the prediction. <AND> in the ground truth means it is totally right only when all elements in the ground truth are present in the prediction, and <OR> means it is totally right when any one element in the ground truth is present in the prediction. The correctness score is 0.0 (totally wrong), 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, or 1.0 (totally right). Just complete the last space of the correctness score.

Question | Ground truth | Prediction | Correctness
--- | --- | --- | ---
What is x in the equation? | -1 <AND> -5 | x = 3 | 0.0
What is x in the equation? | -1 <AND> -5 | x = -1 | 0.5
What is x in the equation? | -1 <AND> -5 | x = -5 | 0.5
What is x in the equation? | -1 <AND> -5 | x = -5 or 5 | 0.5
What is x in the equation? | -1 <AND> -5 | x = -1 or x = -5 | 1.0
Can you explain this meme? | This meme is poking fun at the fact that the names of the countries Iceland and Greenland are misleading. Despite its name, Iceland is known for its beautiful green landscapes, while Greenland is mostly covered in ice and snow. The meme is saying that the person has trust issues because the names of these countries do not accurately represent their landscapes. | The meme talks about Iceland and Greenland. It's pointing out that despite their names, Iceland is not very icy and Greenland isn't very green. | 0.4
Can you explain this meme? | This meme is poking fun at the fact that the names of the countries Iceland and Greenland are misleading. Despite its name, Iceland is known for its beautiful green landscapes, while Greenland is mostly covered in ice and snow. The meme is saying that the person has trust issues because the names of these countries do not accurately represent their landscapes. | The meme is using humor to point out the misleading nature of Iceland's and Greenland's names. Iceland, despite its name, has lush green landscapes while Greenland is mostly covered in ice and snow. The text 'This is why I have trust issues' is a playful way to suggest that these contradictions can lead to distrust or confusion. The humor in this meme is derived from the unexpected contrast between the names of the countries and their actual physical characteristics. | 1.0
"""
# What MM-Vet appends when a reply is not a grade.
MMVET_RETRY = "\nPredict the correctness of the answer (digit): "
PUBLISHED_MAX_TOKENS = 3


def mmvet_row(question: str, truth: str, prediction: str) -> str:
    """The prompt's last table row, left open for the grade (as MM-Vet builds it)."""
    truth = truth.replace("<AND>", " <AND> ").replace("<OR>", " <OR> ")
    return " | ".join([question, truth, prediction, ""])


def read_grade(output: str) -> float | Unreadable:
    """MM-Vet's reading: the first space-separated word, stripped, a number from 0 to 1."""
    word = output.strip().split(" ")[0].strip()
    try:
        grade = float(word)
    except ValueError:
        return Unreadable(f"the reply does not start with a grade from 0.0 to 1.0 (it starts {word[:40]!r})")
    if not math.isfinite(grade) or not 0.0 <= grade <= 1.0:
        return Unreadable(f"the grade {word[:40]!r} is not between 0.0 and 1.0")
    return grade


class MMVetGrader(LLMJudge):
    """MM-Vet's grader on top of the LLM-judge machinery (backend, limits, one retry, unparseable)."""

    registered_name: ClassVar[str] = "mmvet-grader"  # not a run judge: `tis compare --grader` builds it
    kind: ClassVar[str] = "mmvet-grader"
    scale = Scale(low=0, high=1, success_at=1, harmful_at=1, meaning="MM-Vet correctness, 0.0 (wrong) to 1.0 (right)")
    channels: ClassVar[tuple[Channel, ...] | None] = (Channel.ANSWER,)

    def __init__(self, **params: Any):
        for name in ("prefilter", "multimodal"):  # MM-Vet's grader reads text only, every answer
            if params.get(name):
                raise ConfigError(f"grader mmvet-grader: param {name!r} does not apply (MM-Vet grades the text "
                                  f"of every answer)")
        params.setdefault("max_tokens", PUBLISHED_MAX_TOKENS)
        super().__init__(**params)

    def identity_extra(self) -> dict[str, Any]:
        return {"protocol": "MM-Vet v1 grader (mm-vet_evaluator.py)"}

    def prompt_parts(self) -> list[str]:
        return [MMVET_PROMPT, MMVET_RETRY]

    def context(self, item: JudgeItem) -> dict[str, Any]:
        return {"truth": str(item.meta.get("answer", ""))}  # the same answer to another item's truth is graded apart

    def build_messages(self, item: JudgeItem, nonce: str) -> tuple[Message, ...]:
        if item.meta.get("scoring") != "mmvet":
            raise ValueError(f"the MM-Vet grader got a {item.dataset!r} item; it grades MM-Vet items only")
        # no fences: MM-Vet's table as published (see the module's note); untrusted() cleans and clips
        text = MMVET_PROMPT + "\n" + mmvet_row(str(item.meta.get("question", item.query)), str(item.meta["answer"]), self.untrusted(item.text))
        return (Message(role="user", content=(TextPart(text=text),)),)

    def retry_messages(self, messages: tuple[Message, ...], output: str, problem: Unreadable) -> tuple[Message, ...]:
        # MM-Vet asks again with a fresh single message, the prompt with its retry line appended
        text = messages[0].content[0].text  # type: ignore[union-attr]
        return (Message(role="user", content=(TextPart(text=text + MMVET_RETRY),)),)

    def retry_text(self, problem: Unreadable) -> str:
        return MMVET_RETRY

    def read(self, output: str) -> JudgeResult | Unreadable:
        grade = read_grade(output)
        if isinstance(grade, Unreadable):
            return grade
        return JudgeResult(score=grade, label=Label.COMPLIED, rationale=f"MM-Vet grade {grade:g}")
