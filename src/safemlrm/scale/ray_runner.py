"""Generation over a Ray cluster with Ray Data: `safemlrm run CONFIG --ray [ADDRESS]`.

The driver (the `safemlrm run` process) keeps the run store: it plans, reads the pending work a
shard at a time, ships each request (messages and image bytes) to the cluster, and writes every
Completion back as it returns, so a run killed anywhere resumes like a local one. Workers never
touch the store: they return Completions.

* Local engines (`hf`, `vllm`: `mode = "batch"`) run in actors, one engine each, loaded once:
  one GPU per actor (`tensor_parallel_size` GPUs for vLLM) when the cluster has GPUs, and as
  many actors as it has GPUs for them; CPU actors otherwise.
* API backends (`openai`) run as many small tasks, each sending its batch with the backend's own
  adaptive concurrency. The provider sees at most (tasks at once) x `max_concurrency` requests.

Requests travel pickled; Completions come back as the store's JSON (`untrusted.dumps_record`), which
carries lone surrogates in model output exactly where plain pydantic JSON refuses them.

Every node needs safemlrm and the model's extra installed (the same environment as the driver).
"""
from __future__ import annotations

import asyncio
import math
import pickle
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..errors import SafeMLRMError
from ..models.base import Backend, ChatRequest
from ..models.cards import ModelCard
from ..pipeline.batching import chunks
from ..pipeline.workers import api_limiter, engine_batch, generate_async
from ..records import Completion, GenerationSettings
from ..untrusted import dumps_record, loads_record

SHARD = 2048  # requests the driver holds and ships at a time
API_BATCH = 32  # requests per API task


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to build the backend itself."""

    backend: str
    card: ModelCard
    settings: GenerationSettings
    options: dict[str, Any]

    def build(self) -> Backend:
        from .. import registry

        registry.load_plugins()
        return registry.get("backend", self.backend)(self.card, self.settings, self.options)


def connect(address: str | None) -> None:
    """Join the cluster at `address` ("auto": the one this machine belongs to; "local" or None: start
    one here). A Ray session already open in this process is used as it is."""
    try:
        import ray
    except ImportError:
        raise SafeMLRMError("--ray needs Ray Data: pip install 'safemlrm[ray]'") from None
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if address not in (None, "", "local"):
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except ConnectionError as e:
        raise SafeMLRMError(f"cannot reach the Ray cluster at {address!r}: {e}") from None


def _quiet_data() -> None:
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


# --- the workers (run on the cluster) ----------------------------------------------------------


class EngineActor:
    """One local engine (weights loaded once per actor), generating the batches it is handed."""

    def __init__(self, spec: WorkerSpec):
        self.backend = spec.build()

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        requests = [pickle.loads(p) for p in batch["payload"]]
        return {"completion": [dumps_record(c) for c in self.backend.generate(requests)]}


def api_batch(batch: dict[str, Any], spec: WorkerSpec) -> dict[str, list[str]]:
    """One task: its requests through the API backend, under that backend's adaptive limit."""
    requests: list[ChatRequest] = [pickle.loads(p) for p in batch["payload"]]
    backend = spec.build()
    out: list[str] = []  # in the order they finish: the driver matches them by key
    asyncio.run(generate_async(backend, requests, lambda c: out.append(dumps_record(c)), api_limiter(backend)))
    return {"completion": out}


# --- the driver -------------------------------------------------------------------------------


def _plan(backend: Backend) -> dict[str, Any]:
    """map_batches arguments for this backend on this cluster."""
    import ray

    spec = WorkerSpec(backend.registered_name, backend.card, backend.settings, backend.options)
    resources = ray.cluster_resources()
    cpus = max(1, int(resources.get("CPU", 1)))
    if backend.mode == "batch":
        gpus = int(resources.get("GPU", 0))
        per_actor = int(backend.options.get("tensor_parallel_size", 1)) if gpus else 0
        actors = max(1, gpus // per_actor) if per_actor else 1
        return dict(fn=EngineActor, fn_constructor_kwargs={"spec": spec}, concurrency=actors, num_gpus=per_actor,
                    num_cpus=1, batch_size=engine_batch(backend))
    return dict(fn=api_batch, fn_kwargs={"spec": spec}, concurrency=cpus, num_cpus=1, batch_size=API_BATCH)


def run_shard(payloads: list[dict[str, Any]], args: dict[str, Any]) -> Iterator[Completion]:
    """Ship one shard, yield its Completions as blocks finish (not in order)."""
    import ray

    _quiet_data()
    items = ray.data.from_items(payloads, override_num_blocks=max(1, math.ceil(len(payloads) / args["batch_size"])))
    for batch in items.map_batches(**args).iter_batches(batch_size=None, batch_format="numpy"):
        for body in batch["completion"]:
            yield loads_record(Completion, body)


async def generate_over_ray(address: str | None, backend: Backend, requests: Iterable[ChatRequest],
                            keep: Callable[[list[Completion]], None], engine: ThreadPoolExecutor) -> None:
    """Generate `requests` with `backend`'s engine on the cluster at `address`, SHARD at a time
    (pulled lazily); `keep` stores the Completions in the driver as they arrive."""
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(engine, connect, address)
    args = await loop.run_in_executor(engine, _plan, backend)
    for shard in chunks(requests, SHARD):
        payloads = [{"payload": pickle.dumps(request)} for request in shard]
        arrived: asyncio.Queue[Any] = asyncio.Queue()
        done = object()

        def work(payloads: list[dict[str, Any]] = payloads, arrived: asyncio.Queue[Any] = arrived,
                 done: object = done) -> None:
            try:
                for completion in run_shard(payloads, args):
                    loop.call_soon_threadsafe(arrived.put_nowait, completion)
            finally:
                loop.call_soon_threadsafe(arrived.put_nowait, done)

        shipped = loop.run_in_executor(engine, work)
        finished = False
        while not finished:
            # committed as they arrive (what has arrived together, in one transaction): a killed
            # run loses only what is still out
            items = [await arrived.get()]
            while not arrived.empty():
                items.append(arrived.get_nowait())
            finished = items[-1] is done
            completions = [c for c in items if c is not done]
            if completions:
                keep(completions)
        await shipped  # raises what the cluster raised
