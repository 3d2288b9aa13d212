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
from dataclasses import dataclass

from rich.progress import Progress

from ..pipeline.batching import chunks
from ..pipeline.concurrency import AdaptiveLimiter, attach
from ..config import ModelSpec
from ..models.base import Backend, ChatRequest, apply_prompt_convention
from ..models.budget import ends_with_planted
from ..models.cards import ModelCard
from ..records import Completion, Probe, Response, completion_key
from ..pipeline.run import _close_backend, target_limits, worker_pool
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

            requests = [self._request(store, final, ck) for final, ck in todo]
            if self.backend.mode == "batch":
                self._run_batch(requests, keep)
            else:
                asyncio.run(self._run_async(requests, keep))
        out: dict[str, Response] = {}
        for p, _, ck in keyed:
            r = store.response(ck)
            assert r is not None
            out[p.key] = r
            if r.outcome.value == "error":
                stats.errors += 1
        return out, stats

    @staticmethod
    def _request(store: Store, probe: Probe, ck: str) -> ChatRequest:
        images = {p.sha256: store.blobs.get(p.sha256) for m in probe.messages for p in m.images}
        return ChatRequest(key=ck, probe_key=probe.key, messages=probe.messages, images=images,
                           continues_turn=ends_with_planted(probe.messages))

    def _run_batch(self, requests: list[ChatRequest], keep) -> None:
        size = self.backend.batch_size
        try:
            for batch in chunks(requests, size):
                for c in self.backend.generate(batch):
                    keep(c)
        finally:
            self.backend.close()  # weights go before the next step's model loads

    async def _run_async(self, requests: list[ChatRequest], keep) -> None:
        limiter = AdaptiveLimiter(target_limits(self.spec.name, self.backend), name=f"{self.label} {self.spec.name}")
        attach(self.backend, limiter)

        async def one(req: ChatRequest) -> None:
            keep(await self.backend.agenerate(req))

        try:
            await worker_pool(requests, one, limiter.ceiling)
        finally:
            await _close_backend(self.backend)
