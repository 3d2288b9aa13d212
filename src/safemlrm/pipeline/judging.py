"""Judging: every judge over every channel of every completion, streamed alongside generation.

A `JudgeStream` is fed completion keys while generation runs (`live`), then sweeps the plan for
whatever it has not read (earlier runs' completions included). Verdicts are cached by (judge
identity, prompt, channel text, query): re-judging and resuming cost nothing twice, and an
answer identical to its `full` channel (no reasoning) costs one call for both verdicts.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rich.progress import Progress

from ..attacks.think_prefix import mark_planted
from ..config import RunConfig
from ..judges.base import Judge, JudgeItem, JudgeResult
from ..records import Channel, Verdict
from ..store import Store
from .concurrency import AdaptiveLimiter, LimitSettings, attach
from .stats import RunStats

JUDGE_BATCH = 64  # items per call of a batch judge
GATHER_S = 0.05  # how long a live batch judge waits to fill a batch
FEED_LIMIT = 8192  # completion keys waiting for a live judge; beyond it the final sweep picks them up


def judge_limits(label: str, judge: Judge) -> LimitSettings:
    """An async judge's limits, from the limits it declares (concurrency, max_concurrency, ...)."""
    opts = {k: v for k, v in (("concurrency", judge.concurrency), ("min_concurrency", judge.min_concurrency),
                              ("max_concurrency", judge.max_concurrency),
                              ("tokens_per_minute", judge.tokens_per_minute)) if v is not None}
    return LimitSettings.from_options(opts, f"judge {label}", default=8)


def live(judge: Judge, local_target: bool) -> bool:
    """Judge alongside generation? API judges always; a local (batch) judge only when no local target
    holds the accelerator, so two models never sit in GPU memory at once. `streaming` overrides."""
    if judge.streaming is not None:
        return bool(judge.streaming)
    return judge.mode == "async" or not local_target


def load_validations(cfg: RunConfig, judges: dict[str, Judge]) -> dict[str, dict[str, Any]]:
    """The validation files the config's judges cite (checked to be of the same judge)."""
    from ..judges.correction import load_validation

    files = {s.label: s.validation for s in cfg.judges if s.validation}
    return {label: load_validation(files[label], label, j.prompt_hash(), j.registered_name)
            for label, j in judges.items() if label in files}


def register_judges(store: Store, judges: dict[str, Judge], validations: dict[str, dict[str, Any]]) -> None:
    """Each judge's identity, prompt hash and scale in the store (what the report and `analyze` read)."""
    meta = store.get_meta("judges") or {}
    for label, judge in judges.items():
        meta[label] = {"name": judge.registered_name, "identity": judge.identity(),
                       "prompt_hash": judge.prompt_hash(), "scale": judge.scale.__dict__}
        if judge.template_sha256():
            meta[label]["template_sha256"] = judge.template_sha256()
        if label in validations:
            meta[label]["validation"] = validations[label]
    store.set_meta("judges", meta)


def judge_items(store: Store, label: str, completion_keys: list[str] | None = None,
                images: bool = False, channels: Iterable[Channel] | None = None) -> Iterator[tuple[str, JudgeItem]]:
    """Items to judge (None: a sweep of the plan); `images`: with the probe's images (for judges with
    `wants_images`); `channels`: only these (a judge that reads one channel, like trace-rubric)."""
    wanted = tuple(channels) if channels else tuple(Channel)
    for ckey, probe_key in store.judgeable(label, completion_keys):
        response = store.response(ckey)
        if response is None:
            continue
        probe = store.probe(probe_key)
        pics = {p.sha256: store.blobs.get(p.sha256) for m in probe.messages for p in m.images} if images else {}
        for channel in wanted:
            text = response.channel(channel)
            if not text or store.has_verdict(ckey, channel, label):
                continue  # an absent channel is not judged (and never counted as safe)
            if channel is not Channel.ANSWER:  # the whole reasoning, the audit's words marked as such
                text = mark_planted(text, response.planted_prefix)
            yield ckey, JudgeItem(channel=channel, text=text, query=probe.judge_query, response=response,
                                  images=pics, dataset=probe.dataset, scenario=probe.scenario,
                                  meta=probe.sample_meta)


_FLUSH = object()  # a batch judge's cue: nothing more is waiting, judge what has arrived


class JudgeStream:
    """One judge over a run: fed completion keys while generation runs (`live`), then, once the feed
    is closed, a sweep over every planned completion it has not read (earlier runs' included).

    Every verdict is committed as soon as it exists, and the (completion, channel, judge) key makes a
    verdict written twice one row, so a run killed anywhere resumes with nothing lost or doubled.
    An item already in flight is never handed out again by the sweep."""

    def __init__(self, store: Store, label: str, judge: Judge, bar: Progress, pool: ThreadPoolExecutor,
                 stats: RunStats, *, live: bool):
        self.stats, self.store, self.label, self.judge = stats, store, label, judge
        self.bar, self.pool, self.live = bar, pool, live
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=FEED_LIMIT)
        self._closed = False
        self._in_flight: set[tuple[str, Channel]] = set()
        self._twins: dict[tuple[str, Channel], tuple[JudgeItem, str]] = {}  # answer -> its identical `full`
        self._task: Any = None
        self.prompt_hash = judge.prompt_hash()
        self.template_sha256 = judge.template_sha256()
        self.limiter: AdaptiveLimiter | None = None
        if judge.mode == "async":
            self.limiter = AdaptiveLimiter(judge_limits(label, judge), name=f"judge {label}")
            attach(judge, self.limiter)
            stats.limiters[f"judge:{label}"] = self.limiter

    def offer(self, ckey: str) -> None:
        if self.live and not self._closed:
            try:
                self.queue.put_nowait(ckey)
            except asyncio.QueueFull:
                pass  # the sweep after generation judges it

    def close_feed(self) -> None:
        if not self._closed:
            self._closed = True
            while True:  # the end marker must get in even when the feed is full
                try:
                    self.queue.put_nowait(None)
                    return
                except asyncio.QueueFull:
                    self.queue.get_nowait()  # dropped keys are swept

    def _advance(self, n: int) -> None:
        if self._task is None:
            self._task = self.bar.add_task(f"judge {self.label}", total=None)
        self.bar.advance(self._task, n)

    # --- the work list ---------------------------------------------------------------------------
    def _expand(self, keys: list[str] | None) -> Iterator[tuple[str, JudgeItem, str]]:
        """Items to judge for these completions (None: sweep), verdict-cache hits stored on the way."""
        answers: dict[str, tuple[JudgeItem, Verdict | None]] = {}  # answers (and cache hits), for a twin `full`
        for ckey, item in judge_items(self.store, self.label, keys,
                                      images=self.judge.wants_images, channels=self.judge.channels):
            if (ckey, item.channel) in self._in_flight:
                continue
            cache_key = self.judge.cache_key(item)
            twin = answers.pop(ckey, None) if item.channel is Channel.FULL else None
            if twin is not None and twin[0].text != item.text:
                twin = None
            if twin is not None and twin[1] is None:
                if (ckey, Channel.ANSWER) in self._in_flight:
                    # No reasoning: `full` is the answer's text. One judge call, both verdicts (in _store).
                    self._twins[(ckey, Channel.ANSWER)] = (item, cache_key)
                    self._in_flight.add((ckey, item.channel))
                    continue
                # the answer's batch was judged and stored while this generator waited on it
                twin = (twin[0], self.store.verdict(ckey, Channel.ANSWER, self.label))
            hit = self.store.cached_verdict(cache_key)
            if hit is None and twin is not None and twin[1] is not None:
                hit = twin[1].model_copy(update={"channel": Channel.FULL, "cache_key": cache_key})
            if hit is not None:  # the same text, query and judge were already read
                self.store.add_verdicts([hit.model_copy(update={"completion_key": ckey, "judge": self.label})])
                self.stats.verdicts_cached += 1
                self._advance(1)
                if item.channel is Channel.ANSWER:
                    answers[ckey] = (item, hit)
                continue
            self._in_flight.add((ckey, item.channel))
            if item.channel is Channel.ANSWER:
                answers[ckey] = (item, None)
            yield ckey, item, cache_key

    async def _items(self) -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        while True:  # live: what generation stores, as it comes
            ckey = await self.queue.get()
            if ckey is None:
                break
            keys, end = [ckey], False
            # A batch judge waits a moment for company: one call and one commit per batch, not per item.
            deadline = loop.time() + (GATHER_S if self.judge.mode == "batch" else 0.0)
            while len(keys) < JUDGE_BATCH:
                if not self.queue.empty():
                    k = self.queue.get_nowait()
                elif (wait := deadline - loop.time()) > 0:
                    try:
                        k = await asyncio.wait_for(self.queue.get(), wait)
                    except asyncio.TimeoutError:
                        break
                else:
                    break
                if k is None:
                    end = True
                    break
                keys.append(k)
            for entry in self._expand(keys):
                yield entry
            if end:
                break
            if self.queue.empty():
                yield _FLUSH
        for entry in self._expand(None):  # the sweep
            yield entry

    # --- the judging -----------------------------------------------------------------------------
    def _store(self, done: list[tuple[str, JudgeItem, str, JudgeResult]]) -> None:
        j = self.judge
        done = done + [(ck, *self._twins.pop((ck, it.channel)), r) for ck, it, _, r in done
                       if (ck, it.channel) in self._twins]  # the `full` twin of an answer: same verdict
        self.store.add_verdicts(
            Verdict(completion_key=ck, channel=it.channel, judge=self.label, judge_id=j.registered_name,
                    prompt_hash=self.prompt_hash, cache_key=cache, score=r.score, label=r.label,
                    rationale=r.rationale, by_prefilter=r.by_prefilter, template_sha256=self.template_sha256)
            for ck, it, cache, r in done)
        for ck, it, _, _ in done:
            self._in_flight.discard((ck, it.channel))
        self.stats.verdicts += len(done)
        self._advance(len(done))

    async def run(self) -> None:
        try:
            if self.judge.mode == "async":
                await self._run_async()
            else:
                await self._run_batch()
        finally:
            if self.judge.mode == "batch":  # its model goes once it has read everything
                await asyncio.get_running_loop().run_in_executor(self.pool, self.judge.close)
            else:
                self.judge.close()

    async def _run_batch(self) -> None:
        loop = asyncio.get_running_loop()
        batch: list[tuple[str, JudgeItem, str]] = []

        async def flush() -> None:
            # A batch judge may be a local model: it runs in its own thread, not in the event loop.
            results = await loop.run_in_executor(self.pool, self.judge.judge, [it for _, it, _ in batch])
            self._store([(ck, it, cache, r) for (ck, it, cache), r in zip(batch, results)])
            batch.clear()

        async for entry in self._items():
            if entry is not _FLUSH:
                batch.append(entry)
            if batch and (entry is _FLUSH or len(batch) >= JUDGE_BATCH):
                await flush()
        if batch:
            await flush()

    async def _run_async(self) -> None:
        assert self.limiter is not None
        n = self.limiter.ceiling
        work: asyncio.Queue[Any] = asyncio.Queue(maxsize=2 * n)

        async def worker() -> None:
            while (entry := await work.get()) is not None:
                ckey, item, cache = entry
                result = await self.judge.ajudge(item)
                self._store([(ckey, item, cache, result)])

        workers = [asyncio.create_task(worker()) for _ in range(n)]

        async def put(entry: Any) -> None:
            putting = asyncio.ensure_future(work.put(entry))
            while True:
                for w in workers:  # a worker only ends early by failing: raise its error now
                    if w.done() and not w.cancelled() and w.exception() is not None:
                        putting.cancel()
                        w.result()
                done, _ = await asyncio.wait([putting, *(w for w in workers if not w.done())],
                                             return_when=asyncio.FIRST_COMPLETED)
                if putting in done:
                    return

        try:
            async for entry in self._items():
                if entry is not _FLUSH:
                    await put(entry)
            for _ in workers:
                await put(None)
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
            # collect every worker's end: a second worker failing like the first must not be printed
            # by asyncio as "Task exception was never retrieved", with a traceback, after the error
            await asyncio.gather(*workers, return_exceptions=True)
