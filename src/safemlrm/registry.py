"""One registry for every plugin kind.

    @register("attack", "figstep")
    class FigStep(Attack): ...

Third-party packages add plugins without editing safemlrm through the entry-point group
`safemlrm.<kind>s` (for example `safemlrm.attacks`), each entry pointing at the class.
"""
from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, TypeVar

from .errors import UnknownName, did_you_mean

KINDS = ("backend", "dataset", "attack", "judge")
T = TypeVar("T")

_plugins: dict[str, dict[str, Any]] = {k: {} for k in KINDS}
_loaded = False

# Built-in modules that register plugins when imported.
_BUILTIN_MODULES = (
    "safemlrm.models.hf",
    "safemlrm.models.openai_api",
    "safemlrm.models.vllm",
    "safemlrm.datasets.figstep",
    "safemlrm.datasets.jsonl",
    "safemlrm.datasets.mm_safetybench",
    "safemlrm.datasets.hades",
    "safemlrm.datasets.siuo",
    "safemlrm.datasets.mssbench",
    "safemlrm.datasets.jailbreakv",
    "safemlrm.datasets.vlsbench",
    "safemlrm.datasets.spa_vl",
    "safemlrm.datasets.beavertails_v",
    "safemlrm.datasets.mossbench",
    "safemlrm.datasets.capability",
    "safemlrm.datasets.xstest",
    "safemlrm.datasets.vlguard",
    "safemlrm.datasets.synthetic",
    "safemlrm.attacks.vanilla",
    "safemlrm.attacks.figstep",
    "safemlrm.attacks.query_relevant",
    "safemlrm.attacks.hades",
    "safemlrm.attacks.templates",
    "safemlrm.attacks.direct",
    "safemlrm.attacks.think_prefix",
    "safemlrm.judges.keyword",
    "safemlrm.judges.rubric",
    "safemlrm.judges.guard",
    "safemlrm.judges.scales",
    "safemlrm.judges.trace",
    "safemlrm.judges.wildguard",
    "safemlrm.judges.llama_guard",
    "safemlrm.judges.qwen3guard",
    "safemlrm.judges.harmbench",
    "safemlrm.judges.strongreject",
    "safemlrm.judges.reasoningshield",
    "safemlrm.judges.guardreasoner_vl",
    "safemlrm.judges.gpt_oss_safeguard",
)


def register(kind: str, name: str) -> Callable[[T], T]:
    if kind not in _plugins:
        raise ValueError(f"unknown plugin kind {kind!r}; kinds are {', '.join(KINDS)}")

    def deco(obj: T) -> T:
        existing = _plugins[kind].get(name)
        if existing is not None and existing is not obj:
            raise ValueError(f"{kind} {name!r} is registered twice: {existing!r} and {obj!r}")
        _plugins[kind][name] = obj
        setattr(obj, "registered_name", name)  # noqa: B010 - any registrable class, no common base
        return obj

    return deco


def load_plugins() -> None:
    """Import the built-ins and every entry point once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in _BUILTIN_MODULES:
        import_module(mod)
    for kind in KINDS:
        for ep in entry_points(group=f"safemlrm.{kind}s"):
            obj = ep.load()
            if ep.name not in _plugins[kind]:
                register(kind, ep.name)(obj)


def get(kind: str, name: str) -> Any:
    load_plugins()
    try:
        return _plugins[kind][name]
    except KeyError:
        known = sorted(_plugins[kind])
        raise UnknownName(
            f"unknown {kind} {name!r}.{did_you_mean(name, known)} Known {kind}s: {', '.join(known)}"
        ) from None


def names(kind: str) -> list[str]:
    load_plugins()
    return sorted(_plugins[kind])


def items(kind: str) -> list[tuple[str, Any]]:
    load_plugins()
    return sorted(_plugins[kind].items())


def about(obj: Any) -> str:
    """One line on what a registered object is: its own docstring's first line, else its module's."""
    import sys

    for doc in (obj.__doc__, getattr(sys.modules.get(obj.__module__), "__doc__", None)):
        paragraph = " ".join((doc or "").strip().split("\n\n")[0].split())
        if paragraph:
            import re

            end = re.search(r"\.\s+(?=[A-Z`])", paragraph)  # the first sentence
            return paragraph[:end.start() + 1] if end else paragraph
    return ""
