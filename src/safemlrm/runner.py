"""Drive the stages: probes -> completions -> verdicts -> metrics, resumably.

Every unit of work is keyed by content hash and committed as soon as it exists, so `run` on the
same config after a crash (or after it finished) redoes nothing: it plans, finds every key stored,
and makes zero model calls. Failed completions (an API that gave up) are retried on the next run.

The stages stream. Samples become probes and plan rows 256 at a time; generation and judging read
their work from the store a page at a time; and judging runs in the same event loop as generation,
fed each completion as it is stored, so the first verdicts exist long before the last completion.
Nothing holds the whole run: memory stays flat as datasets grow. Local engines (`mode = "batch"`)
run in one engine thread, so API judges keep working while a local model generates.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import platform
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import Progress

from . import __version__, registry
from .attacks.base import Attack, AttackContext
from .batching import chunks
from .concurrency import AdaptiveLimiter, LimitSettings, attach
from .config_keys import at_key
from .config import RunConfig
from .datasets.base import Dataset, select
from .errors import ConfigError, ModalityMismatch
from .judges.base import Judge, JudgeItem, JudgeResult
from .models.budget import check_planted, ends_with_planted
from .judges.health import health_warnings
from .models.base import Backend, ChatRequest, apply_prompt_convention
from .models.cards import CardCatalog, ModelCard
from .models.accounting import account
from .progress import make_progress
from .records import Channel, Completion, Modality, Verdict, completion_key
from .store import Store
from .preflight import applies, left_out, modality_problems
from .validate import check_names

T = TypeVar("T")

PAGE = 512  # rows read from the store at a time
PROBE_CHUNK = 256  # samples turned into probes and plan rows per transaction
JUDGE_BATCH = 64  # items per call of a batch judge
GATHER_S = 0.05  # how long a live batch judge waits to fill a batch
FEED_LIMIT = 8192  # completion keys waiting for a live judge; beyond it the final sweep picks them up


@dataclass
class RunStats:
    probes: int = 0
    model_calls: int = 0
    errors: int = 0
    verdicts: int = 0
    verdicts_cached: int = 0
    planned: dict[str, int] = field(default_factory=dict)
    limiters: dict[str, AdaptiveLimiter] = field(default_factory=dict)  # by "model:NAME" / "judge:LABEL"
    judge_warnings: list[str] = field(default_factory=list)  # judges whose verdicts are mostly unparseable


def catalog_for(cfg: RunConfig) -> CardCatalog:
    cat = CardCatalog.builtin()
    for path in cfg.cards:
        cat.extend_from(path)
    return cat


def _build(kind: str, name: str, kwargs: dict[str, Any], what: str) -> Any:
    cls = registry.get(kind, name)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{kind} {name!r}: bad {what} {sorted(k for k in kwargs if k != 'path')}: {e}") from None


def build_dataset(spec) -> Dataset:
    return _build("dataset", spec.name, {"path": spec.path, **spec.options}, "options")


def build_attack(spec) -> Attack:
    return _build("attack", spec.name, spec.params, "params")


def build_judge(spec) -> Judge:
    return _build("judge", spec.name, spec.params, "params")


def build_backend(spec, card: ModelCard) -> Backend:
    cls = registry.get("backend", spec.backend)
    return cls(card, spec.generation, spec.options)


def target_limits(name: str, backend: Backend) -> LimitSettings:
    """An async target's limits: the backend declares them (Backend.limits)."""
    return backend.limits


def judge_limits(label: str, judge: Judge) -> LimitSettings:
    """An async judge's limits, from the attributes it exposes (concurrency, max_concurrency, ...)."""
    opts = {k: v for k, v in (("concurrency", judge.concurrency), ("min_concurrency", judge.min_concurrency),
                              ("max_concurrency", judge.max_concurrency),
                              ("tokens_per_minute", judge.tokens_per_minute)) if v is not None}
    return LimitSettings.from_options(opts, f"judge {label}", default=8)


def engine_batch(backend: Backend) -> int:
    """Requests handed to a local engine per call: the backend's own default, else 8."""
    return max(1, backend.batch_size)


async def worker_pool(items: Iterable[T], work: Callable[[T], Awaitable[None]], concurrency: int) -> None:
    """Run `work` over items with at most `concurrency` in flight, pulling lazily (flat memory)."""
    it = iter(items)

    async def worker() -> None:
        for item in it:  # shared iterator: each item is taken by exactly one worker
            await work(item)

    await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))


async def _close_backend(backend: Backend) -> None:
    await backend.aclose()


@dataclass(frozen=True)
class StoredBackend:
    """What a resume needs of a backend without building it: its name and what it accepts, as stored."""

    registered_name: str
    accepts: frozenset[Modality]
    # the first run already refused planted thoughts for backends that cannot continue one, and a
    # resume is the same config (identity checked), so the check passes as it did then
    controls_reasoning: bool = True


class Runner:
    def __init__(self, cfg: RunConfig, run_dir: str | Path, *, console: Console | None = None,
                 show_progress: bool = True, ray_address: str | None = None):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.console = console or Console(stderr=True)
        self.show_progress = show_progress
        self.ray_address = ray_address  # None: generate in this process; else shard over Ray ("local", "auto", URL)
        self.catalog = catalog_for(cfg)
        check_names(cfg, self.catalog)  # a typo stops here, naming the file and key, before any write
        self.cards = {m.name: self.catalog.get(m.card) for m in cfg.models}
        self.stats = RunStats()

    # --- the whole run ---------------------------------------------------------------------------
    def run(self) -> RunStats:
        registry.load_plugins()
        src = self.cfg.source
        judges = {}
        for i, j in enumerate(self.cfg.judges):
            with at_key(src, f"judges.{i}.params"):
                judges[j.label] = build_judge(j)
        try:
            for judge in judges.values():  # an unreachable judge server stops the run before generation
                judge.preflight()
            self._validations = self._load_validations(judges)
            with Store(self.run_dir) as store:
                resumed = self._check_identity(store)
                if resumed and self._finish_from_store(store, judges):
                    return self.stats  # nothing to generate: no tokenizer, no weights, no backend at all
                backends = {}
                for i, m in enumerate(self.cfg.models):
                    with at_key(src, f"models.{i}.options"):
                        backends[m.name] = backend = build_backend(m, self.cards[m.name])
                        if backend.mode == "async":
                            target_limits(m.name, backend)  # bad limits stop the run before anything is built
                self.make_probes(store, backends)
                self._register_judges(store, judges)
                asyncio.run(self._pipeline(store, backends, judges))
                self.stats.judge_warnings = health_warnings(store.db, list(judges))
                from .report.markdown import write_summary
                write_summary(store)
        finally:
            for judge in judges.values():  # a local judge's weights go now, not at process exit
                judge.close()
        return self.stats

    def _finish_from_store(self, store: Store, judges: dict[str, Judge]) -> bool:
        """A resume with nothing left to generate: probes and plan rebuilt with the model identities
        stored at the first run (the cheap part), then judges and summary. False (nothing done but
        the plan) when generation is pending: the caller then builds the backends as usual."""
        stored = {m.name: store.get_meta(f"model:{m.name}") or {} for m in self.cfg.models}
        if not all("identity" in meta and "accepts" in meta for meta in stored.values()):
            return False  # a store from before these were kept
        facts = {name: StoredBackend(meta["backend"], frozenset(Modality(x) for x in meta["accepts"]))
                 for name, meta in stored.items()}
        self.make_probes(store, facts, identities={name: meta["identity"] for name, meta in stored.items()})
        if any(self.count_pending(store, m.name) for m in self.cfg.models):
            return False
        self._register_judges(store, judges)
        asyncio.run(self._pipeline(store, {}, judges))
        from .report.markdown import write_summary
        write_summary(store)
        return True

    def _check_identity(self, store: Store) -> bool:
        """True when this is a resume of a run made by this config."""
        have = store.get_meta("identity_hash")
        want = self.cfg.identity_hash()
        if have is not None and have != want and store.db.execute("SELECT 1 FROM completions LIMIT 1").fetchone() is None:
            # The old config stopped before its first model call (a typo, a bad image): there is nothing
            # to mix, so its probes and plan go and the run starts afresh under this config.
            with store.transaction() as db:
                db.execute("DELETE FROM plan")
                db.execute("DELETE FROM probes")
            have = None
        if have is not None and have != want:
            old, new = store.get_meta("identity") or {}, self.cfg.identity()
            parts = [k for k in ("models", "datasets", "attacks") if old and old.get(k) != new.get(k)]
            what = " and ".join(parts) if parts else "models, datasets, attacks or generation settings"
            raise ConfigError(
                f"{self.run_dir} was made by a different config (its {what} differ from "
                f"{self.cfg.source or 'this config'}); results are never mixed. "
                f"To fork, run with a new output directory (--out NEW_DIR); to re-judge the existing results "
                f"use `safemlrm judge {self.run_dir} --judge NAME`.")
        if have is None:
            store.set_meta("identity_hash", want)
            store.set_meta("identity", self.cfg.identity())  # secrets left out; says what a fork changed
            store.set_meta("created", dt.datetime.now(dt.timezone.utc).isoformat())
        store.set_meta("config", self.cfg.echo())
        store.set_meta("environment", environment())
        return have is not None

    # --- probes and plan -------------------------------------------------------------------------
    def make_probes(self, store: Store, backends: dict[str, Any],
                    identities: dict[str, dict[str, Any]] | None = None) -> int:
        """Build, store and plan every probe, PROBE_CHUNK samples at a time; returns the count.

        Each dataset is read once, every attack applied to each chunk. Nothing is kept: probes go to
        the store, plan rows (model, probe, completion key) with them. A probe a model cannot take
        (an image for a text-only model) stops the run here, before any model call.
        """
        cache = Path(self.cfg.cache_dir) if self.cfg.cache_dir else self.run_dir / "cache"
        ctx = AttackContext(blobs=store.blobs, cache_dir=cache)
        if identities is None:  # computed now (a tokenizer's template for hf), kept for the next resume
            identities = {}
            for spec in self.cfg.models:
                backend = backends[spec.name]
                identity = backend.identity()
                store.set_meta(f"model:{spec.name}", {"card": self.cards[spec.name].model_dump(mode="json"),
                                                      "identity": identity, "backend": backend.registered_name,
                                                      "accepts": sorted(m.value for m in backend.accepts)})
                identities[spec.name] = identity
        for spec in self.cfg.models:
            self.stats.planned[spec.name] = 0
        attacks = []
        for i, aspec in enumerate(self.cfg.attacks):
            with at_key(self.cfg.source, f"attacks.{i}.params"):
                attacks.append((f"attacks.{i}", aspec.name, build_attack(aspec)))
        n = 0
        with make_progress(self.console, self.show_progress) as bar:
            for di, dspec in enumerate(self.cfg.datasets):
                with at_key(self.cfg.source, f"datasets.{di}.options"):
                    ds = build_dataset(dspec)
                task = bar.add_task(f"probes {dspec.name}", total=None)
                for batch in chunks(select(ds, dspec.scenarios, dspec.limit, dspec.seed), PROBE_CHUNK):
                    for aspec, (attack_key, attack_name, attack) in zip(self.cfg.attacks, attacks):
                        targets = [m for m in self.cfg.models if applies(dspec, aspec, m.name)]
                        if not targets:
                            continue
                        with at_key(self.cfg.source, attack_key):
                            probes = [attack.build(s, ctx) for s in batch]
                        mods = frozenset().union(*(p.modalities for p in probes))
                        chosen = {m.name: backends[m.name] for m in targets}
                        self.check_modalities(dspec.name, attack_name, mods, chosen)
                        check_planted(attack_name, probes, chosen)
                        keys = store.add_probes(probes)
                        rows = []
                        for spec in targets:
                            card = self.cards[spec.name]
                            for p, key in zip(probes, keys):
                                final = p.model_copy(update={"messages": apply_prompt_convention(card, p.messages)})
                                rows.append((spec.name, key, completion_key(identities[spec.name],
                                                                            spec.generation, final)))
                            self.stats.planned[spec.name] += len(probes)
                        store.add_plan(rows)
                        n += len(probes)
                        bar.advance(task, len(probes))
                lo = left_out(ds)  # read by the summary: items the published file has without their text
                store.set_meta(f"left_out:{dspec.name}", lo.model_dump(mode="json") if lo else None)
        self.stats.probes = n
        return n

    @staticmethod
    def check_modalities(dataset: str, attack: str, mods: frozenset[Modality], backends: dict[str, Backend]) -> None:
        problems = modality_problems(dataset, attack, mods, backends)  # the dry run's rule
        if problems:
            raise ModalityMismatch("; ".join(problems))

    # --- reading work from the store, a page at a time -------------------------------------------
    _PENDING = """
        FROM plan p LEFT JOIN completions c ON c.key = p.completion_key
        WHERE p.model = ? AND (c.key IS NULL OR c.error IS NOT NULL)
          AND NOT EXISTS (SELECT 1 FROM plan q WHERE q.completion_key = p.completion_key
                          AND q.model = p.model AND q.rowid < p.rowid)"""  # one call per distinct request

    @staticmethod
    def count_pending(store: Store, model: str) -> int:
        return store.db.execute("SELECT COUNT(*)" + Runner._PENDING, (model,)).fetchone()[0]

    @staticmethod
    def pending(store: Store, model: str) -> Iterator[tuple[str, str]]:
        """(probe_key, completion_key) still to generate, in plan order. Keyset pages: no cursor stays
        open while completions are written, and no list of the whole run is built."""
        last = 0
        while True:
            rows = store.db.execute("SELECT p.rowid, p.probe_key, p.completion_key" + Runner._PENDING +
                                    " AND p.rowid > ? ORDER BY p.rowid LIMIT ?", (model, last, PAGE)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            for _, probe_key, ckey in rows:
                yield probe_key, ckey

    # --- generation ------------------------------------------------------------------------------
    def _request(self, store: Store, card: ModelCard, probe_key: str, ckey: str) -> ChatRequest:
        probe = store.probe(probe_key)
        messages = apply_prompt_convention(card, probe.messages)
        images = {p.sha256: store.blobs.get(p.sha256) for m in messages for p in m.images}
        return ChatRequest(key=ckey, probe_key=probe_key, messages=messages, images=images,
                           continues_turn=ends_with_planted(messages))

    def _save(self, store: Store, card: ModelCard, completions: list[Completion]) -> None:
        """Split and store completions in one transaction; counted in the run's stats."""
        fmt = card.reasoning_format  # the card chooses the split
        budgets = {m.name: m.generation.think_budget for m in self.cfg.models}

        def tokens(c: Completion) -> int | None:  # a think budget in tokens, for the account
            b = budgets.get(c.model)
            return 0 if b == "zero" else b if isinstance(b, int) else None

        store.add_completions([(c, account(fmt.split(c), c, card, budget=tokens(c))) for c in completions])
        self.stats.model_calls += len(completions)
        self.stats.errors += sum(c.error is not None for c in completions)

    async def _pipeline(self, store: Store, backends: dict[str, Backend], judges: dict[str, Judge]) -> None:
        """Generate every model and judge as completions arrive; then sweep what is left to judge."""
        local_target = any(b.mode == "batch" for b in backends.values())
        with make_progress(self.console, self.show_progress) as bar, \
                ThreadPoolExecutor(1, thread_name_prefix="safemlrm-engine") as engine, \
                ThreadPoolExecutor(1, thread_name_prefix="safemlrm-judge") as judge_pool:
            streams = [JudgeStream(self, store, label, judge, bar, judge_pool, live=self._live(judge, local_target))
                       for label, judge in judges.items()]
            judging = [asyncio.create_task(s.run()) for s in streams]

            def saved(ckey: str) -> None:
                for s in streams:
                    s.offer(ckey)

            over_ray = self.ray_address is not None
            local = [(name, b) for name, b in backends.items() if b.mode == "batch" or over_ray]
            gens: list[Awaitable[None]] = [self._generate_async(store, name, b, saved, bar)
                                           for name, b in backends.items() if b.mode == "async" and not over_ray]
            if local:
                gens.append(self._generate_local(store, local, saved, bar, engine))
            generating = asyncio.ensure_future(asyncio.gather(*gens))
            try:
                while not generating.done():  # a judge that fails stops the run at once
                    done, _ = await asyncio.wait([generating, *judging], return_when=asyncio.FIRST_COMPLETED)
                    for t in done:
                        if t is not generating:
                            t.result()
                generating.result()
                for s in streams:
                    s.close_feed()
                await asyncio.gather(*judging)
            finally:
                for t in (generating, *judging):
                    t.cancel()
                await asyncio.gather(generating, *judging, return_exceptions=True)

    @staticmethod
    def _live(judge: Judge, local_target: bool) -> bool:
        """Judge alongside generation? API judges always; a local (batch) judge only when no local target
        holds the accelerator, so two models never sit in GPU memory at once. `streaming` overrides."""
        if judge.streaming is not None:
            return bool(judge.streaming)
        return judge.mode == "async" or not local_target

    async def _generate_async(self, store: Store, model: str, backend: Backend,
                              saved: Callable[[str], None], bar: Progress) -> None:
        try:
            total = self.count_pending(store, model)
            if not total:
                return
            card = self.cards[model]
            limiter = AdaptiveLimiter(target_limits(model, backend), name=f"model {model}")
            attach(backend, limiter)  # the backend reports 429s and timeouts; workers only queue
            self.stats.limiters[f"model:{model}"] = limiter
            task = bar.add_task(f"generate {model}", total=total)

            async def one(item: tuple[str, str]) -> None:
                completion = await backend.agenerate(self._request(store, card, *item))
                self._save(store, card, [completion.model_copy(update={"model": model})])
                saved(completion.key)
                bar.advance(task)

            await worker_pool(self.pending(store, model), one, limiter.ceiling)
        finally:
            await _close_backend(backend)

    async def _generate_local(self, store: Store, models: list[tuple[str, Backend]], saved: Callable[[str], None],
                              bar: Progress, engine: ThreadPoolExecutor) -> None:
        """Local engines one after another in the engine thread (one model in memory at a time), or
        every model over Ray when the run was started with --ray."""
        loop = asyncio.get_running_loop()
        for model, backend in models:
            try:
                total = self.count_pending(store, model)
                if not total:
                    continue
                card = self.cards[model]
                task = bar.add_task(f"generate {model}", total=total)

                def keep(completions: list[Completion], card: ModelCard = card, model: str = model, task=task) -> None:
                    self._save(store, card, [c.model_copy(update={"model": model}) for c in completions])
                    for c in completions:
                        saved(c.key)
                    bar.advance(task, len(completions))

                if self.ray_address is not None:
                    from .scale.ray_runner import generate_over_ray

                    await generate_over_ray(self, store, model, backend, keep, engine)
                    continue
                # Two batches in the engine's queue: while it generates one, this thread stores the
                # batch before and reads the one after, so the engine never waits on the store.
                size = engine_batch(backend)
                running: asyncio.Future[list[Completion]] | None = None
                for batch in chunks(self.pending(store, model), size):
                    queued = loop.run_in_executor(
                        engine, backend.generate, [self._request(store, card, pk, ck) for pk, ck in batch])
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

    # --- judging ---------------------------------------------------------------------------------
    def _load_validations(self, judges: dict[str, Judge]) -> dict[str, dict[str, Any]]:
        """The validation files the config's judges cite (checked to be of the same judge)."""
        from .judges.correction import load_validation

        specs = {s.label: s for s in self.cfg.judges}
        return {label: load_validation(specs[label].validation, label, j.prompt_hash(), j.registered_name)
                for label, j in judges.items() if label in specs and specs[label].validation}

    def _register_judges(self, store: Store, judges: dict[str, Judge]) -> None:
        meta = store.get_meta("judges") or {}
        validations = getattr(self, "_validations", None) or {}
        for label, judge in judges.items():
            meta[label] = {"name": judge.registered_name, "identity": judge.identity(),
                           "prompt_hash": judge.prompt_hash(), "scale": judge.scale.__dict__}
            if label in validations:
                meta[label]["validation"] = validations[label]
        store.set_meta("judges", meta)

    def judge(self, store: Store, judges: dict[str, Judge]) -> None:
        """Judge every stored completion not yet judged (no generation): `safemlrm judge`."""
        for judge in judges.values():
            judge.preflight()
        self._register_judges(store, judges)

        async def sweep() -> None:
            with make_progress(self.console, self.show_progress) as bar, \
                    ThreadPoolExecutor(1, thread_name_prefix="safemlrm-judge") as pool:
                for label, judge in judges.items():
                    stream = JudgeStream(self, store, label, judge, bar, pool, live=False)
                    stream.close_feed()
                    await stream.run()

        asyncio.run(sweep())
        self.stats.judge_warnings = health_warnings(store.db, list(judges))

    _JUDGEABLE = """
        SELECT p.rowid, c.key, c.probe_key FROM plan p JOIN completions c ON c.key = p.completion_key
        JOIN responses r ON r.completion_key = c.key
        WHERE c.error IS NULL AND p.rowid > ?
          AND (SELECT COUNT(*) FROM verdicts v WHERE v.completion_key = c.key AND v.judge = ?)
              < (COALESCE(json_extract(r.body, '$.reasoning'), '') != '')
                + (COALESCE(json_extract(r.body, '$.answer'), '') != '')
                + (COALESCE(json_extract(r.body, '$.full'), '') != '')
        ORDER BY p.rowid LIMIT ?"""  # completions with a non-empty channel this judge has not read

    def _judgeable(self, store: Store, label: str, completion_keys: list[str] | None) -> Iterator[tuple[str, str]]:
        """(completion_key, probe_key) worth a look: the given keys, or a sweep of the whole plan."""
        if completion_keys is not None:
            marks = ",".join("?" * len(completion_keys))
            yield from store.db.execute(f"SELECT key, probe_key FROM completions WHERE error IS NULL "
                                        f"AND key IN ({marks})", completion_keys).fetchall()
            return
        last, seen = 0, set()
        while True:
            rows = store.db.execute(self._JUDGEABLE, (last, label, PAGE)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            for _, ckey, probe_key in rows:
                if ckey not in seen:  # one completion may answer several plan rows
                    yield ckey, probe_key
            seen = {r[1] for r in rows}

    def _judge_items(self, store: Store, label: str, completion_keys: list[str] | None = None,
                     images: bool = False, channels: Iterable[Channel] | None = None) -> Iterator[tuple[str, JudgeItem]]:
        """Items to judge; `images`: with the probe's images (for judges with `wants_images`);
        `channels`: only these (a judge that reads one channel, like trace-rubric)."""
        wanted = tuple(channels) if channels else tuple(Channel)
        for ckey, probe_key in self._judgeable(store, label, completion_keys):
            response = store.response(ckey)
            probe = store.probe(probe_key)
            pics = {p.sha256: store.blobs.get(p.sha256) for m in probe.messages for p in m.images} if images else {}
            for channel in wanted:
                text = response.channel(channel)
                if not text or store.has_verdict(ckey, channel, label):
                    continue  # an absent channel is not judged (and never counted as safe)
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

    def __init__(self, runner: Runner, store: Store, label: str, judge: Judge, bar: Progress,
                 pool: ThreadPoolExecutor, *, live: bool):
        self.runner, self.store, self.label, self.judge = runner, store, label, judge
        self.bar, self.pool, self.live = bar, pool, live
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=FEED_LIMIT)
        self._closed = False
        self._in_flight: set[tuple[str, Channel]] = set()
        self._twins: dict[tuple[str, Channel], tuple[JudgeItem, str]] = {}  # answer -> its identical `full`
        self._task: Any = None
        self.prompt_hash = judge.prompt_hash()
        self.limiter: AdaptiveLimiter | None = None
        if judge.mode == "async":
            self.limiter = AdaptiveLimiter(judge_limits(label, judge), name=f"judge {label}")
            attach(judge, self.limiter)
            runner.stats.limiters[f"judge:{label}"] = self.limiter

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
        for ckey, item in self.runner._judge_items(self.store, self.label, keys,
                                                   images=self.judge.wants_images, channels=self.judge.channels):
            if (ckey, item.channel) in self._in_flight:
                continue
            cache_key = self.judge.cache_key(item)
            twin = answers.pop(ckey, None) if item.channel is Channel.FULL else None
            if twin is not None and twin[0].text == item.text and twin[1] is None:
                # No reasoning: `full` is the answer's text. One judge call, both verdicts (stored in _store).
                self._twins[(ckey, Channel.ANSWER)] = (item, cache_key)
                self._in_flight.add((ckey, item.channel))
                continue
            hit = self.store.cached_verdict(cache_key)
            if hit is None and twin is not None and twin[0].text == item.text:
                hit = twin[1].model_copy(update={"channel": Channel.FULL, "cache_key": cache_key})
            if hit is not None:  # the same text, query and judge were already read
                self.store.add_verdicts([hit.model_copy(update={"completion_key": ckey, "judge": self.label})])
                self.runner.stats.verdicts_cached += 1
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
                    rationale=r.rationale, by_prefilter=r.by_prefilter, template_sha256=r.template_sha256)
            for ck, it, cache, r in done)
        for ck, it, _, _ in done:
            self._in_flight.discard((ck, it.channel))
        self.runner.stats.verdicts += len(done)
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


def environment() -> dict[str, Any]:
    import importlib.metadata as md

    versions = {}
    for pkg in ("safemlrm", "torch", "transformers", "pydantic", "aiohttp", "vllm", "ray"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return {"safemlrm": __version__, "python": platform.python_version(), "platform": platform.platform(),
            "machine": platform.machine(), "packages": versions}


def dry_run(cfg: RunConfig) -> list[dict[str, Any]]:
    """The preflight's plan as rows (model, dataset, attack, probes, missing); see preflight.py."""
    from .preflight import preflight

    pf = preflight(cfg)
    return [{"model": r.model, "dataset": r.dataset, "attack": r.attack, "probes": r.probes,
             "card": catalog_for(cfg).get(next(m.card for m in cfg.models if m.name == r.model)).hub_id,
             "missing": r.problem} for r in pf.rows]
