"""Drive the stages: probes -> completions -> verdicts -> metrics, resumably.

Every unit of work is keyed by content hash and committed as soon as it exists, so `run` on the
same config after a crash (or after it finished) redoes nothing: it plans, finds every key stored,
and makes zero model calls. Failed completions (an API that gave up) are retried on the next run.

The stages stream. Samples become probes and plan rows a chunk at a time (`plan`); generation and
judging read their work from the store a page at a time (`generate`, `judging`); and judging runs
in the same event loop as generation, fed each completion as it is stored, so the first verdicts
exist long before the last completion. Nothing holds the whole run: memory stays flat as datasets
grow. Local engines (`mode = "batch"`) run in one engine thread, so API judges keep working while
a local model generates.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rich.console import Console

from .. import registry
from ..config import RunConfig
from ..config_keys import at_key
from ..judges.base import Judge
from ..judges.health import health_warnings
from ..models.base import Backend
from ..progress import make_progress
from ..store import Store
from ..validate import check_names
from .build import build_backend, build_judge, catalog_for
from .generate import Generation
from .judging import JudgeStream, live, load_validations, register_judges
from .plan import check_identity, make_probes, record_backends, stored_backends
from .stats import RunStats


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
        self._validations: dict[str, dict[str, Any]] = {}

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
            self._validations = load_validations(self.cfg, judges)
            with Store(self.run_dir) as store:
                resumed = check_identity(store, self.cfg, self.run_dir)
                if resumed and self._finish_from_store(store, judges):
                    return self.stats  # nothing to generate: no tokenizer, no weights, no backend at all
                backends = {}
                for i, m in enumerate(self.cfg.models):
                    with at_key(src, f"models.{i}.options"):
                        backends[m.name] = backend = build_backend(m, self.cards[m.name])
                        if backend.mode == "async":
                            _ = backend.limits  # bad limits stop the run before anything is built
                self._plan(store, backends, record_backends(store, self.cfg, self.cards, backends))
                self._finish(store, backends, judges)
        finally:
            for judge in judges.values():  # a local judge's weights go now, not at process exit
                judge.close()
        return self.stats

    def _finish_from_store(self, store: Store, judges: dict[str, Judge]) -> bool:
        """A resume with nothing left to generate: probes and plan rebuilt with the model identities
        stored at the first run (the cheap part), then judges and summary. False (nothing done but
        the plan) when generation is pending: the caller then builds the backends as usual."""
        stored = stored_backends(store, self.cfg)
        if stored is None:
            return False  # a store from before these were kept
        self._plan(store, *stored)
        if any(store.count_pending(m.name) for m in self.cfg.models):
            return False
        self._finish(store, {}, judges)
        return True

    def _plan(self, store: Store, backends: dict[str, Any], identities: dict[str, Any]) -> None:
        cache = Path(self.cfg.cache_dir) if self.cfg.cache_dir else self.run_dir / "cache"
        with make_progress(self.console, self.show_progress) as bar:
            self.stats.probes, self.stats.planned = make_probes(store, self.cfg, self.cards, backends,
                                                                identities, cache, bar)

    def _finish(self, store: Store, backends: dict[str, Backend], judges: dict[str, Judge]) -> None:
        """Generate what is pending, judge, and write the summary."""
        register_judges(store, judges, self._validations)
        asyncio.run(self._stream(store, backends, judges))
        self.stats.judge_warnings = health_warnings(store, list(judges))
        from ..report.markdown import write_summary

        write_summary(store)

    def judge(self, store: Store, judges: dict[str, Judge]) -> None:
        """Judge every stored completion not yet judged (no generation): `safemlrm judge`."""
        for judge in judges.values():
            judge.preflight()
        register_judges(store, judges, self._validations)

        async def sweep() -> None:
            with make_progress(self.console, self.show_progress) as bar, \
                    ThreadPoolExecutor(1, thread_name_prefix="safemlrm-judge") as pool:
                for label, judge in judges.items():
                    stream = JudgeStream(store, label, judge, bar, pool, self.stats, live=False)
                    stream.close_feed()
                    await stream.run()

        asyncio.run(sweep())
        self.stats.judge_warnings = health_warnings(store, list(judges))

    async def _stream(self, store: Store, backends: dict[str, Backend], judges: dict[str, Judge]) -> None:
        """Generate every model and judge as completions arrive; then sweep what is left to judge."""
        local_target = any(b.mode == "batch" for b in backends.values())
        with make_progress(self.console, self.show_progress) as bar, \
                ThreadPoolExecutor(1, thread_name_prefix="safemlrm-engine") as engine, \
                ThreadPoolExecutor(1, thread_name_prefix="safemlrm-judge") as judge_pool:
            streams = [JudgeStream(store, label, judge, bar, judge_pool, self.stats, live=live(judge, local_target))
                       for label, judge in judges.items()]
            judging: list[asyncio.Future[Any]] = [asyncio.create_task(s.run()) for s in streams]

            def saved(ckey: str) -> None:
                for s in streams:
                    s.offer(ckey)

            gen = Generation(store, self.cfg, self.cards, self.stats, bar, saved, self.ray_address)
            over_ray = self.ray_address is not None
            local = [(name, b) for name, b in backends.items() if b.mode == "batch" or over_ray]
            gens: list[Awaitable[None]] = [gen.api(name, b) for name, b in backends.items()
                                           if b.mode == "async" and not over_ray]
            if local:
                gens.append(gen.local(local, engine))
            generating: asyncio.Future[list[None]] = asyncio.ensure_future(asyncio.gather(*gens))
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
                for task in (generating, *judging):
                    task.cancel()
                await asyncio.gather(generating, *judging, return_exceptions=True)
