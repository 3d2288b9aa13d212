"""Generation: each model's pending requests through the worker layer, every completion split,
accounted and committed as it arrives, then offered to the judges (`saved`).

API targets run in the event loop under their own adaptive limit; local engines run one after
another in the engine thread (one model in memory at a time), or on a Ray cluster when the run
was started with `--ray` (`scale.ray_runner`, handed the requests and the same callback).
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from rich.progress import Progress

from ..attacks.think_prefix import preset_text
from ..config import RunConfig
from ..models.accounting import account
from ..models.base import Backend, ChatRequest, apply_prompt_convention
from ..models.cards import ModelCard
from ..records import Completion, Message, Response, TextPart
from ..store import Store
from .stats import RunStats
from .workers import api_limiter, chat_request, generate_async, generate_local


@dataclass
class Generation:
    """The run's generation stage over one store."""

    store: Store
    cfg: RunConfig
    cards: dict[str, ModelCard]
    stats: RunStats
    bar: Progress
    saved: Callable[[str], None]  # told each completion key once it is stored
    ray_address: str | None = None
    planted: dict[str, str] = field(default_factory=dict)  # completion key -> the thought planted in its request

    def requests(self, model: str) -> Iterator[ChatRequest]:
        """The model's pending requests, built lazily from the store (images read as they go)."""
        card = self.cards[model]
        preset = next(m.generation.think_prefix for m in self.cfg.models if m.name == model)
        for probe_key, ckey in self.store.pending(model):
            probe = self.store.probe(probe_key)
            messages = apply_prompt_convention(card, probe.messages)
            if preset is not None:  # generation.think_prefix: the sweepable form of the think_prefix attack
                messages += (Message(role="assistant",
                                     content=(TextPart(text=preset_text(preset, probe.judge_query)),)),)
            request = chat_request(self.store.blobs, ckey, probe_key, messages)
            if request.continues_turn:  # recorded with the response (keep): judges read it as the audit's words
                self.planted[ckey] = messages[-1].text
            yield request

    def keep(self, model: str, completions: list[Completion]) -> None:
        """Split, account and store completions in one transaction; counted in the run's stats."""
        card = self.cards[model]
        fmt = card.reasoning_format  # the card chooses the split
        budget = next(m.generation.think_budget for m in self.cfg.models if m.name == model)
        tokens = 0 if budget == "zero" else budget if isinstance(budget, int) else None  # for the account
        completions = [c.model_copy(update={"model": model}) for c in completions]

        def response(c: Completion) -> Response:
            r = account(fmt.split(c), c, card, budget=tokens)
            planted = self.planted.pop(c.key, None)
            return r.model_copy(update={"planted_prefix": planted}) if planted and c.error is None else r

        self.store.add_completions([(c, response(c)) for c in completions])
        self.stats.model_calls += len(completions)
        self.stats.errors += sum(c.error is not None for c in completions)
        for c in completions:
            self.saved(c.key)

    def _progress(self, model: str, total: int) -> Callable[[list[Completion]], None]:
        task = self.bar.add_task(f"generate {model}", total=total)

        def keep(completions: list[Completion]) -> None:
            self.keep(model, completions)
            self.bar.advance(task, len(completions))
        return keep

    async def api(self, model: str, backend: Backend) -> None:
        """An API target, under its own adaptive limit (a judge's 429s do not slow it down)."""
        total = self.store.count_pending(model)
        if not total:
            await backend.aclose()
            return
        limiter = api_limiter(backend, name=f"model {model}")
        self.stats.limiters[f"model:{model}"] = limiter
        keep = self._progress(model, total)
        await generate_async(backend, self.requests(model), lambda c: keep([c]), limiter)

    async def local(self, models: list[tuple[str, Backend]], engine: ThreadPoolExecutor) -> None:
        """Local engines one after another in the engine thread, or every model over Ray."""
        loop = asyncio.get_running_loop()
        for model, backend in models:
            total = self.store.count_pending(model)
            if total and self.ray_address is None:
                await generate_local(backend, self.requests(model), self._progress(model, total), engine)
                continue
            try:
                if total:
                    from ..scale.ray_runner import generate_over_ray

                    await generate_over_ray(self.ray_address, backend, self.requests(model),
                                            self._progress(model, total), engine)
            finally:
                await loop.run_in_executor(engine, backend.close)
