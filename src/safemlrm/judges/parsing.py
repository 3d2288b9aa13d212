"""Reading what an LLM judge wrote, and making untrusted text safe to put in front of one.

Two directions, both defensive:

* Into the judge: model output (and the query) are untrusted. `clean_untrusted` removes chat-template
  control tokens (`<|im_start|>`, `<|eot_id|>`, `[INST]`, ...), control characters and anything that
  looks like our own block markers, so a response cannot close its block or open a new chat turn.
* Out of the judge: `visible` drops a reasoning judge's `<think>...</think>`; `field_values` finds
  `#name: value` lines (any case, markdown decoration tolerated) and `"name": value` keys of JSON
  objects; `read_int` / `read_word` turn them into one value or say in words why they cannot.
  Conflicting values are unreadable, never resolved by guessing: a hostile or confused verdict
  must not become a score.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

# --- into the judge ----------------------------------------------------------------------------

_CONTROL_TOKENS = re.compile(
    r"<\|[^<>|\n]{0,64}\|>"  # ChatML, Llama 3, Phi, Qwen vision: <|im_start|>, <|eot_id|>, <|image_pad|>
    r"|<\uff5c[^<>\uff5c\n]{0,64}\uff5c>"  # DeepSeek's full-width bars: <｜User｜>, <｜end▁of▁sentence｜>
    r"|\[/?(?:INST|SYSTEM_PROMPT|AVAILABLE_TOOLS|TOOL_RESULTS|TOOL_CALLS)\]"  # Llama 2 / Mistral
    r"|<</?SYS>>"
    r"|</?s>|<(?:bos|eos|pad|unk)>"
    r"|<(?:start|end)_of_turn>"  # Gemma
    r"|<(?:image|video|audio)>",  # placeholders a multimodal processor would count as media slots
    re.IGNORECASE,
)
# C0/C1 control characters except tab and newline, and the bidi overrides that can hide text.
_CONTROL_CHARS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ufeff]")
_MARKER_LIKE = re.compile(r"<<+\s*/?\s*(?:end[-_ ]*)?(?:request|response|text|reasoning|answer|image|data)\b[^<>\n]{0,80}>>+",
                          re.IGNORECASE)


def clean_untrusted(text: str) -> str:
    """`text` with control tokens, control characters and marker look-alikes removed (\\r\\n kept as \\n)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    previous = None
    while previous != text:  # "<|im_<|x|>start|>" must not reassemble into a token once the inner one goes
        previous = text
        text = _CONTROL_TOKENS.sub("", text)
        text = _CONTROL_CHARS.sub("", text)
        text = _MARKER_LIKE.sub("[marker removed]", text)
    return text


# --- out of the judge --------------------------------------------------------------------------

_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)


@dataclass(frozen=True)
class Unreadable:
    """Why a judge's output yields no verdict."""

    reason: str


def visible(output: str) -> str | Unreadable:
    """The judge's output after its reasoning: the text after the last `</think>` (which also covers
    a template that opened the think in the prompt). A `<think>` never closed means the verdict
    never came."""
    closes = list(_THINK_CLOSE.finditer(output))
    if closes:
        return output[closes[-1].end():].strip()
    if _THINK_OPEN.search(output):
        return Unreadable("the judge's reasoning (<think>) never closed, so no verdict followed it")
    return output.strip()


def _line_pattern(names: tuple[str, ...]) -> re.Pattern[str]:
    # "#score: 4", "score = 4", "**Score:** 4", "- Final score: 4", "### Score: 4"
    alt = "|".join(re.escape(n) for n in names)
    return re.compile(r"^[ \t>*_#`-]*(?:final[ \t]+)?(?:" + alt + r")[ \t*_`]*[:=][ \t*_`]*(.*?)[ \t*_`]*$",
                      re.IGNORECASE | re.MULTILINE)


def _json_objects(text: str) -> list[dict]:
    """Every JSON object that parses, outermost first (a fenced ```json block included)."""
    out, decoder, i = [], json.JSONDecoder(), 0
    while (start := text.find("{", i)) != -1:
        try:
            obj, end = decoder.raw_decode(text, start)
        except ValueError:
            i = start + 1
            continue
        if isinstance(obj, dict):
            out.append(obj)
        i = end
    return out


Names = str | tuple[str, ...]


def _names(names: Names) -> tuple[str, ...]:
    return (names,) if isinstance(names, str) else tuple(names)


def field_values(text: str, names: Names) -> list[str]:
    """Every value given for the field (any of its names), as `#name: value` lines and as keys of
    JSON objects."""
    names = _names(names)
    values = [m.group(1).strip() for m in _line_pattern(names).finditer(text)]
    wanted = {n.lower() for n in names}
    for obj in _json_objects(text):
        for key, value in obj.items():
            if isinstance(key, str) and key.strip().lower() in wanted and not isinstance(value, (dict, list)):
                values.append(str(value).strip())
    return [v for v in values if v]


_NUMBER = re.compile(r"^[\[(]?(-?\d+(?:\.\d+)?)[\])]?(?:\s*/\s*\d+)?(.*)$", re.DOTALL)


def read_int(text: str, names: Names, low: int, high: int) -> int | Unreadable:
    """The one whole number given for the field, between low and high."""
    name = _names(names)[0]
    raw = field_values(text, names)
    if not raw:
        return Unreadable(f"no '#{name}: N' line or JSON key {name!r} in the judge's output")
    found: list[int] = []
    for value in raw:
        m = _NUMBER.match(value)
        if not m:
            return Unreadable(f"#{name} is not a number: {value[:40]!r}")
        if re.search(r"\d", m.group(2)):  # "4 or 5", "3-4": more than one number is no verdict
            return Unreadable(f"#{name} gives more than one number: {value[:40]!r}")
        number = float(m.group(1))
        if number != int(number):
            return Unreadable(f"#{name} is not a whole number: {m.group(1)}")
        found.append(int(number))
    distinct = sorted(set(found))
    if len(distinct) > 1:
        return Unreadable(f"conflicting values for #{name}: {', '.join(map(str, distinct))}")
    got = distinct[0]
    if not low <= got <= high:
        return Unreadable(f"#{name} {got} is outside {low}-{high}")
    return got


def read_word(text: str, names: Names, words: dict[str, int]) -> tuple[str, int] | Unreadable:
    """The one word given for the field among `words` (case-insensitive, punctuation ignored)."""
    name = _names(names)[0]
    raw = field_values(text, names)
    if not raw:
        return Unreadable(f"no '#{name}: ...' line or JSON key {name!r} in the judge's output")
    found = set()
    for value in raw:
        cleaned = re.sub(r"[^a-z0-9 _-]", " ", value.lower()).split()
        word = cleaned[0] if cleaned else ""
        if word not in words:
            return Unreadable(f"#{name} must be one of {', '.join(words)}, not {value[:40]!r}")
        found.add(word)
    if len(found) > 1:
        return Unreadable(f"conflicting values for #{name}: {', '.join(sorted(found))}")
    word = found.pop()
    return word, words[word]


def read_reason(text: str, names: Names = ("reason", "thereason", "rationale")) -> str:
    values = field_values(text, names)
    return values[0] if values else ""


# --- Llama Guard ---------------------------------------------------------------------------------

_CATEGORY = re.compile(r"\bS(\d{1,2})\b")


def labelled_lines(pattern: re.Pattern[str], text: str, *, lower_values: bool = True
                   ) -> tuple[dict[str, str], str | None]:
    """The `key: value` lines a guard answers in (`pattern` captures both), keys lower-cased; with
    the first key given two different values (a guard that contradicts itself), else None."""
    found: dict[str, str] = {}
    for key, value in pattern.findall(text):
        key, value = key.lower(), value.lower() if lower_values else value
        if found.setdefault(key, value) != value:
            return found, key
    return found, None


def read_guard(text: str) -> tuple[bool, tuple[str, ...]] | Unreadable:
    """Llama Guard's format: first line `safe` or `unsafe`; for unsafe, a line of category codes
    (`S1,S10`). Returns (unsafe, categories)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return Unreadable("the guard's output is empty")
    head = re.sub(r"[^a-z]", "", lines[0].lower())
    if head == "safe":
        return False, ()
    if head == "unsafe":
        cats = tuple(dict.fromkeys(f"S{int(n)}" for n in _CATEGORY.findall(" ".join(lines[1:]))))
        return True, cats
    return Unreadable(f"the guard's first line is neither 'safe' nor 'unsafe': {lines[0][:40]!r}")
