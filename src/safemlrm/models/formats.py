"""Reasoning formats: how one model family's raw output splits into reasoning and answer.

A model card chooses its format (`think_format`: a built-in name, or a mapping declaring one), and
every part of safemlrm that splits a completion (the runner, `tis`, `safemlrm split`) uses it. The
raw text is never changed: `Response.full` keeps it as returned. Rules common to every format:

* A server that separates reasoning itself (`reasoning_content`) is taken at its word; the
  content is then the answer (its wrapper unwrapped, strip tokens removed).
* Reasoning begun and never closed is `unclosed_think`: no answer, whatever the format, and a
  trace cut by the length limit before its close marker is never read as an answer.
* Several reasoning blocks are joined in order (blank line between) without their inner markers.
* Hitting the length limit after the reasoning closed (or with none) is `truncated`.
* Nothing but whitespace is `empty`; a failed call is `error`.

Three kinds of parser: `tags` (open/close markers, an optional answer wrapper, tokens stripped
from the answer), `stages` (named sections: LLaVA-CoT's <SUMMARY>/<CAPTION>/<REASONING> are
reasoning, <CONCLUSION> is the answer) and `harmony` (gpt-oss channels: `analysis` and
`commentary` are reasoning, `final` is the answer). `server` reads the reasoning only from a
server's separate field.
"""
from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from ..errors import UnknownName, did_you_mean
from ..records import Completion, Outcome, Response

Kind = Literal["tags", "stages", "harmony", "server"]


def _ci(marker: str) -> re.Pattern:
    return re.compile(re.escape(marker), re.IGNORECASE)


def _answer_outcome(answer: str, closed: bool, at_limit: bool) -> Outcome:
    """The outcome of an answer given after the reasoning closed: cut short, empty, or complete."""
    if at_limit or not closed:
        return Outcome.TRUNCATED
    return Outcome.EMPTY if not answer else Outcome.COMPLETE


def _cut_marker(text: str, marker: str | None) -> str:
    """Text cut by the length limit can end in the first characters of the marker that would have
    closed it (a marker of several tokens: LLaVA-CoT's stage tags); they are not content."""
    if marker:
        low = text.lower()
        for k in range(len(marker) - 1, 1, -1):
            if low.endswith(marker[:k].lower()):
                return text[:-k]
    return text


def _join(pieces: list[str]) -> str:
    return "\n\n".join(p.strip() for p in pieces if p.strip())


class ReasoningFormat(BaseModel):
    """One family's output format. Frozen; `split(completion)` gives the Response."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "custom"
    kind: Kind = "tags"
    open: str | None = "<think>"  # the opening marker (None: the format has none)
    close: str | None = "</think>"  # the closing marker
    template_opened: bool = False  # the chat template writes `open` into the prompt
    answer_open: str | None = None  # an answer wrapper, unwrapped when present
    answer_close: str | None = None
    strip: tuple[str, ...] = ()  # tokens removed from the answer (GLM's box tokens); `full` keeps them
    reasoning_stages: tuple[str, ...] = ()  # kind stages: section names that are reasoning
    answer_stage: str | None = None  # kind stages: the section that is the answer
    reasoning: bool = True  # False: a model without reasoning (the tags are still read if written)
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> ReasoningFormat:
        if self.kind == "tags" and self.open and not self.close:
            raise ValueError("a format with an opening marker needs a closing marker ('close')")
        if self.kind == "tags" and self.template_opened and not self.close:
            raise ValueError("template_opened needs a closing marker ('close')")
        if (self.answer_open is None) != (self.answer_close is None):
            raise ValueError("answer_open and answer_close go together")
        if self.kind == "stages" and not (self.reasoning_stages and self.answer_stage):
            raise ValueError("kind stages needs reasoning_stages and answer_stage")
        for m in (self.open, self.close, self.answer_open, self.answer_close, *self.strip):
            if m is not None and not m.strip():
                raise ValueError("markers may not be empty or blank")
        return self

    # --- what decoders must keep ------------------------------------------------------------
    @property
    def markers(self) -> tuple[str, ...]:
        """Every marker the split reads: a decoder that drops special tokens must keep these."""
        if self.kind == "harmony":
            return HARMONY_TOKENS
        if self.kind == "stages":
            return tuple(t for s in (*self.reasoning_stages, self.answer_stage) for t in (f"<{s}>", f"</{s}>"))
        return tuple(m for m in (self.open, self.close, self.answer_open, self.answer_close, *self.strip) if m)

    def with_template_opened(self, opened: bool) -> ReasoningFormat:
        if self.kind != "tags" or opened == self.template_opened:
            return self
        return self.model_copy(update={"template_opened": opened})

    # --- the split --------------------------------------------------------------------------
    def clean_answer(self, text: str) -> tuple[str, bool]:
        """(answer, closed): unwrap the answer wrapper and remove strip tokens. Text outside a
        wrapper is kept only when there is none."""
        closed = True
        if self.answer_open and self.answer_close:
            m = re.search(re.escape(self.answer_open) + r"(.*?)(" + re.escape(self.answer_close) + r"|$)",
                          text, re.IGNORECASE | re.DOTALL)
            if m:
                text, closed = m.group(1), bool(m.group(2))
                if not closed:
                    text = _cut_marker(text, self.answer_close)
        for token in self.strip:
            text = _ci(token).sub("", text)
        return text.strip(), closed

    def split(self, completion: Completion) -> Response:
        key = completion.key
        if completion.error is not None:
            return Response(completion_key=key, reasoning=None, answer=None, full=completion.text or "",
                            outcome=Outcome.ERROR)
        text = completion.text or ""
        at_limit = completion.finish_reason == "length"
        if completion.reasoning_content is not None:
            return self._server(completion, text, at_limit)
        if not text.strip():
            return Response(completion_key=key, reasoning=None, answer=None, full=text, outcome=Outcome.EMPTY)
        if self.kind == "harmony":
            reasoning, answer, outcome = self._harmony(text, at_limit)
        elif self.kind == "stages":
            reasoning, answer, outcome = self._stages(text, at_limit)
        elif self.kind == "server":
            reasoning, answer, outcome = self._plain(text, at_limit)
        else:
            reasoning, answer, outcome = self._tags(text, at_limit)
        return Response(completion_key=key, reasoning=reasoning, answer=answer, full=text, outcome=outcome)

    def _server(self, completion: Completion, text: str, at_limit: bool) -> Response:
        reasoning = completion.reasoning_content.strip()
        answer, closed = self.clean_answer(text)
        o, c = (self.open or "<think>", self.close or "</think>") if self.kind == "tags" else ("<think>", "</think>")
        full = f"{o}\n{completion.reasoning_content}\n{c}\n{text}"
        if not reasoning and not answer:
            outcome = Outcome.EMPTY
        elif not answer and at_limit:
            outcome = Outcome.UNCLOSED_THINK
        else:
            outcome = _answer_outcome(answer, closed, at_limit)
        return Response(completion_key=completion.key, reasoning=reasoning or None,
                        answer=None if outcome is Outcome.UNCLOSED_THINK else answer, full=full, outcome=outcome)

    def _plain(self, text: str, at_limit: bool):
        """No reasoning markers at all: the whole text is the answer and reasoning is absent."""
        answer, closed = self.clean_answer(text)
        return None, answer, (Outcome.TRUNCATED if at_limit or not closed else Outcome.COMPLETE)

    def _tags(self, text: str, at_limit: bool):
        if self.close is None:
            return self._plain(text, at_limit)
        close = _ci(self.close)
        opener = _ci(self.open) if self.open else None
        closes = list(close.finditer(text))
        if closes:
            last = closes[-1]
            head, tail = text[: last.start()], text[last.end():]
            reopened = opener.search(tail) if opener else None
            if reopened:  # a further block opened after the last close and never closed
                pieces = self._blocks(head) + [_cut_marker(tail[reopened.end():], self.close)]
                return _join(pieces), None, Outcome.UNCLOSED_THINK
            answer, closed = self.clean_answer(tail)
            return _join(self._blocks(head)), answer, _answer_outcome(answer, closed, at_limit)
        opened = opener.search(text) if opener else None
        if opened or self.template_opened:
            reasoning = _cut_marker(text[opened.end():] if opened else text, self.close)
            return reasoning.strip(), None, Outcome.UNCLOSED_THINK
        return self._plain(text, at_limit)

    def _blocks(self, head: str) -> list[str]:
        """The reasoning blocks before the last close marker, without their markers."""
        pieces = _ci(self.close).split(head)
        if self.open:
            pieces = [q for p in pieces for q in _ci(self.open).split(p)]
        return pieces

    def _stages(self, text: str, at_limit: bool):
        def section(name: str):
            m = re.search(rf"<{re.escape(name)}>(.*?)(</{re.escape(name)}>|$)", text, re.IGNORECASE | re.DOTALL)
            if not m:
                return None
            body = m.group(1) if m.group(2) else _cut_marker(m.group(1), f"</{name}>")
            return body, bool(m.group(2)), m.start()

        found = [(s, section(s)) for s in self.reasoning_stages]
        found = sorted(((s, f) for s, f in found if f), key=lambda x: x[1][2])
        reasoning = _join([f[0] for _, f in found]) or None
        answer = section(self.answer_stage)
        if answer is not None:
            body, closed, _ = answer
            cleaned, _ = self.clean_answer(body)
            return reasoning, cleaned, _answer_outcome(cleaned, closed, at_limit)
        if not found:
            return self._plain(text, at_limit)
        if at_limit or not all(f[1] for _, f in found):
            return reasoning, None, Outcome.UNCLOSED_THINK
        return reasoning, "", Outcome.EMPTY

    def _harmony(self, text: str, at_limit: bool):
        msgs = list(_HARMONY_MSG.finditer(text))
        if not msgs:
            return self._plain(text, at_limit)
        reasoning, answer, closed = [], None, False
        for m in msgs:
            if m.group("channel").lower() == "final":
                answer, closed = m.group("body"), bool(m.group("end"))
            else:
                reasoning.append(m.group("body"))
                if not m.group("end"):  # the analysis was cut before its <|end|>
                    return _join(reasoning), None, Outcome.UNCLOSED_THINK
        if answer is None:
            if at_limit:
                return _join(reasoning) or None, None, Outcome.UNCLOSED_THINK
            return _join(reasoning) or None, "", Outcome.EMPTY
        cleaned, _ = self.clean_answer(answer)
        return _join(reasoning) or None, cleaned, _answer_outcome(cleaned, closed, at_limit)


HARMONY_TOKENS = ("<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|return|>", "<|call|>", "<|constrain|>")
# <|channel|>NAME [to=... <|constrain|>json]<|message|>BODY then <|end|> / <|return|> / <|call|>
_HARMONY_MSG = re.compile(r"<\|channel\|>(?P<channel>\w+)[^<]*(?:<\|constrain\|>[^<]*)?<\|message\|>"
                          r"(?P<body>.*?)(?:(?P<end><\|end\|>|<\|return\|>|<\|call\|>)|(?=<\|start\|>)|$)",
                          re.DOTALL)

GLM_BOX = ("<|begin_of_box|>", "<|end_of_box|>")

BUILTIN_FORMATS: dict[str, ReasoningFormat] = {f.name: f for f in (
    ReasoningFormat(name="none", reasoning=False,
                    description="no reasoning channel (a base model); <think> tags are still read if written"),
    ReasoningFormat(name="think", answer_open="<answer>", answer_close="</answer>",
                    description="R1 style: <think>...</think> then the answer"),
    ReasoningFormat(name="think_answer", answer_open="<answer>", answer_close="</answer>",
                    description="<think>...</think><answer>...</answer>"),
    ReasoningFormat(name="think_template_opened", template_opened=True,
                    description="the chat template writes <think>; the output has only </think>"),
    ReasoningFormat(name="kimi", open="◁think▷", close="◁/think▷",
                    description="Kimi-VL: ◁think▷...◁/think▷ then the answer"),
    ReasoningFormat(name="llava_cot", kind="stages", open=None, close=None,
                    reasoning_stages=("SUMMARY", "CAPTION", "REASONING"), answer_stage="CONCLUSION",
                    description="LLaVA-CoT stages: SUMMARY, CAPTION, REASONING, then CONCLUSION"),
    ReasoningFormat(name="glm_box", answer_open="<answer>", answer_close="</answer>", strip=GLM_BOX,
                    description="GLM-4.1V/4.5V: <think>...</think><answer>..<|begin_of_box|>..<|end_of_box|>..</answer>"),
    ReasoningFormat(name="harmony", kind="harmony", open="<|channel|>analysis<|message|>", close="<|end|>",
                    description="gpt-oss harmony: analysis channel, then final channel"),
    ReasoningFormat(name="server", kind="server", open=None, close=None,
                    description="the server's separate reasoning field (reasoning_content); content is the answer"),
)}


def builtin_format(name: str) -> ReasoningFormat:
    try:
        return BUILTIN_FORMATS[name]
    except KeyError:
        raise UnknownName(f"unknown reasoning format {name!r}.{did_you_mean(name, BUILTIN_FORMATS)} "
                          f"Known: {', '.join(BUILTIN_FORMATS)}; or declare one as a mapping.") from None


_SPEC_FIELDS = set(ReasoningFormat.model_fields) - {"reasoning"}


def declared_format(spec: dict, card_name: str = "") -> ReasoningFormat:
    """A format declared in a card: a mapping of ReasoningFormat fields, optionally `like: NAME` to
    start from a built-in. Raises ValueError naming the field (the card loader adds file and card)."""
    spec = dict(spec)
    base = spec.pop("like", None)
    unknown = [k for k in spec if k not in _SPEC_FIELDS]
    if unknown:
        k = unknown[0]
        raise ValueError(f"unknown key {k!r}.{did_you_mean(k, sorted(_SPEC_FIELDS | {'like'}))}")
    start = builtin_format(base).model_dump() if base else {"name": card_name or "custom"}
    if "strip" in spec and isinstance(spec["strip"], str):
        spec["strip"] = [spec["strip"]]
    start.update(spec)
    from pydantic import ValidationError

    try:
        return ReasoningFormat.model_validate(start)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ValueError(f"{where + ': ' if where else ''}{first['msg']}") from None
