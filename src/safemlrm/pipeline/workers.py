"""The worker layer: requests through a backend, each Completion handed to a callback as it exists.

One way to drive each kind of backend, used by a run (`pipeline.generate`), a Think-in-Safety build
step (`tis.generate`) and a Ray task (`scale.ray_runner`):

* API backends (`mode = "async"`) under an adaptive concurrency limit (`pipeline.concurrency`):
  a fixed pool of workers pulls requests lazily, so memory stays flat however many there are.
* Local engines (`mode = "batch"`) in one engine thread, two batches queued: while the engine
  generates one, the caller's thread stores the one before and builds the one after.

Both close the backend when done (a local engine's weights go before the next model loads).
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from ..blobs import BlobStore
from ..models.base import Backend, ChatRequest
from ..models.budget import ends_with_planted
from ..records import Completion, Message
from .batching import chunks
from .concurrency import AdaptiveLimiter, attach

T = TypeVar("T")


def engine_batch(backend: Backend) -> int:
    """Requests handed to a local engine per call: the backend's own batch size, at least 1."""
    return max(1, backend.batch_size)


def chat_request(blobs: BlobStore, key: str, probe_key: str,
                 messages: tuple[Message, ...]) -> ChatRequest:
    """The request for final messages (the card's prompt convention applied), images from `blobs`."""
    images = {p.sha256: blobs.get(p.sha256) for m in messages for p in m.images}
    return ChatRequest(key=key, probe_key=probe_key, messages=messages, images=images,
                       continues_turn=ends_with_planted(messages))


async def worker_pool(items: Iterable[T], work: Callable[[T], Awaitable[None]], concurrency: int) -> None:
    """Run `work` over items with at most `concurrency` in flight, pulling lazily (flat memory)."""
    it = iter(items)

    async def worker() -> None:
        for item in it:  # shared iterator: each item is taken by exactly one worker
            await work(item)

    await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))


def api_limiter(backend: Backend, name: str = "") -> AdaptiveLimiter:
    """A limiter for an API backend, from its declared limits, attached to it: the backend reports
    429s and timeouts to it, the workers only queue."""
    limiter = AdaptiveLimiter(backend.limits, name=name)
    attach(backend, limiter)
    return limiter


async def generate_async(backend: Backend, requests: Iterable[ChatRequest], keep: Callable[[Completion], None],
                         limiter: AdaptiveLimiter) -> None:
    """Every request through an API backend, at most `limiter.ceiling` in flight; closes it."""
    async def one(request: ChatRequest) -> None:
        keep(await backend.agenerate(request))

    try:
        await worker_pool(requests, one, limiter.ceiling)
    finally:
        await backend.aclose()


async def generate_local(backend: Backend, requests: Iterable[ChatRequest],
                         keep: Callable[[list[Completion]], None], engine: ThreadPoolExecutor) -> None:
    """Every request through a local engine in the `engine` thread, `engine_batch` at a time; closes it.

    Two batches in the engine's queue: while it generates one, this thread keeps the batch before
    and builds the one after (reading images from the store), so the engine never waits on it."""
    loop = asyncio.get_running_loop()
    try:
        running: asyncio.Future[list[Completion]] | None = None
        for batch in chunks(requests, engine_batch(backend)):
            queued = loop.run_in_executor(engine, backend.generate, batch)
            if running is not None:
                try:
                    done = await running
                except BaseException:
                    queued.cancel()
                    raise
                keep(done)
            running = queued
        if running is not None:
            keep(await running)
    finally:
        await loop.run_in_executor(engine, backend.close)  # weights go before the next model loads
