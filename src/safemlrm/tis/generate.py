"""One cached generation step of a build: probes in, responses out, through any backend.

Each request is keyed like a run's completion (model identity, generation settings, final
messages) and stored in the build directory's run store (`safemlrm.store.Store`: same tables, same
WAL, same lock) with a plan row under the step's name, so `safemlrm status BUILD_DIR` shows the
steps' progress. A request already answered is never sent again; one that failed is retried on the
next build. Local backends run batched, API backends under the adaptive concurrency limit, exactly
as in a run.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from rich.progress import Progress

from ..config import ModelSpec
from ..models.base import Backend, ChatRequest, apply_prompt_convention
from ..models.cards import ModelCard
from ..pipeline.workers import api_limiter, chat_request, generate_async, generate_local
from ..records import Completion, Probe, Response, completion_key
from ..store import Store


@dataclass
class StepStats:
    requests: int = 0  # distinct requests this step needs
    calls: int = 0  # made now (the rest were stored by an earlier build)
    errors: int = 0  # still failed after this build's tries


@dataclass
class Step:
    """A model doing one kind of job in a build ("captioner", "teacher", "consistency")."""

    label: str
    spec: ModelSpec
    card: ModelCard
    backend: Backend

    def run(self, store: Store, probes: list[Probe], bar: Progress | None = None) -> tuple[dict[str, Response], StepStats]:
        """Responses by probe key (None-free: a failed request gives an `error` response)."""
        identity = self.backend.identity()
        keyed = []
        for p in probes:
            final = p.model_copy(update={"messages": apply_prompt_convention(self.card, p.messages)})
            keyed.append((p, final, completion_key(identity, self.spec.generation, final)))
        store.add_probes(p for p, _, _ in keyed)
        store.add_plan((self.label, p.key, ck) for p, _, ck in keyed)
        seen: set[str] = set()
        todo = []
        for _, final, ck in keyed:
            if ck in seen:
                continue
            seen.add(ck)
            done = store.completion(ck)
            if done is None or done.error is not None:
                todo.append((final, ck))
        stats = StepStats(requests=len(seen), calls=len(todo))
        if todo:
            task = bar.add_task(f"{self.label} ({self.spec.name})", total=len(todo)) if bar else None

            def keep(c: Completion) -> None:
                response = self.card.reasoning_format.split(c)
                store.add_completion(c.model_copy(update={"model": self.spec.name}), response)
                if bar is not None and task is not None:
                    bar.advance(task)

            requests = [chat_request(store.blobs, ck, final.key, final.messages) for final, ck in todo]
            asyncio.run(self._generate(requests, keep))
        out: dict[str, Response] = {}
        for p, _, ck in keyed:
            r = store.response(ck)
            assert r is not None
            out[p.key] = r
            if r.outcome.value == "error":
                stats.errors += 1
        return out, stats

    async def _generate(self, requests: list[ChatRequest], keep: Callable[[Completion], None]) -> None:
        """Through the run's worker layer: batched in an engine thread, or under the adaptive limit."""
        if self.backend.mode == "batch":
            def keep_all(completions: list[Completion]) -> None:
                for c in completions:
                    keep(c)

            with ThreadPoolExecutor(1, thread_name_prefix="safemlrm-engine") as engine:
                await generate_local(self.backend, requests, keep_all, engine)
        else:
            limiter = api_limiter(self.backend, name=f"{self.label} {self.spec.name}")
            await generate_async(self.backend, requests, keep, limiter)
