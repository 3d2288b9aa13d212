"""Any OpenAI-compatible chat-completions server: `backend: openai`.

vLLM, SGLang, TGI, `transformers serve`, OpenAI itself: whatever answers
`POST <base_url>/chat/completions`. aiohttp is used directly (no SDK dependency): its per-request
cost is about a tenth of httpx's, which matters at hundreds of requests a second to a local server.

Options (under `options:` of a model in the run config):

    base_url      required, e.g. http://127.0.0.1:8000/v1
    model         the served model name (default: the card's hub_id)
    api_key_env   name of the environment variable holding the key (default OPENAI_API_KEY);
                  the key itself never appears in a config, identity, error or repr
    timeout       seconds one attempt may take in all, body included (default 600)
    max_retries   retries after the first attempt (default 6)
    backoff_base  seconds; full-jitter exponential backoff base (default 1.0)
    backoff_max   seconds; cap on one wait, Retry-After included (default 60)
    extra_body    dict merged into every request (e.g. {"chat_template_kwargs": {...}})
    concurrency   requests in flight at the start (default 16); adaptive (AIMD, safemlrm.pipeline.concurrency):
                  halved on a 429 or a timeout, grown by one per window of successes
    min_concurrency / max_concurrency   the floor (default 1) and ceiling (default: concurrency)
    tokens_per_minute   optional budget: a request reserves its estimate, settled with the usage
    prefix_continuation vllm | llamacpp | none (default): how the server continues a final assistant
                  message, which think budgets and planted thoughts need (models/openai_control.py)

One bad request never raises: after the retries it comes back as a Completion with `error` set.
"""
from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import random
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field

from ..pipeline.concurrency import AdaptiveLimiter, LimitSettings, estimate_tokens
from ..errors import ConfigError
from ..options import PluginOptions
from ..records import Completion, ImagePart, Message, TextPart
from ..registry import register
from ..secrets import resolve_secret
from ..untrusted import decode_body, wire_text
from .budget import refuse_unsupported, think_plan
from .base import Backend, ChatRequest
from .thinking import request_fields

if TYPE_CHECKING:  # imported when the first client is made: a run without API models never pays for it
    import aiohttp

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
OVERLOAD_KINDS = frozenset({"HTTP 429", "timeout"})  # what makes the adaptive limit back off
_SNIPPET = 200
_RESERVED_BODY_KEYS = ("messages", "stream")
_UNSET = object()  # no client made yet, so no key looked up


class _Retry(Exception):
    """One attempt failed in a way worth trying again. `kind` names the cause, `detail` shows it."""

    def __init__(self, kind: str, detail: str = "", retry_after: float | None = None):
        super().__init__(kind)
        self.kind = kind
        self.detail = detail
        self.retry_after = retry_after


class _Fail(Exception):
    """The request cannot succeed as sent: record it at once."""


class RequestFailed(Exception):
    """A request failed for good (after its retries); the message is the completion's error."""


def _snippet(text: str) -> str:
    return " ".join(text[:_SNIPPET].split())


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date. None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now_dt = datetime.fromtimestamp(time.time() if now is None else now, tz=timezone.utc)
    return max(0.0, (when - now_dt).total_seconds())


@register("backend", "openai")
class OpenAIBackend(Backend):
    mode = "async"

    class Options(PluginOptions):
        base_url: str | None = Field(None, description="the server's OpenAI-compatible root, e.g. http://127.0.0.1:8000/v1")
        model: str | None = Field(None, description="the served model name; default the card's hub_id")
        api_key_env: str | None = Field(None, description="environment variable holding the key (OPENAI_API_KEY)")
        timeout: float = Field(600, ge=0.001, description="seconds per request")
        max_retries: int = Field(6, ge=0)
        backoff_base: float = Field(1.0, ge=0, description="seconds; doubles per retry, with jitter")
        backoff_max: float = Field(60, ge=0)
        extra_body: dict[str, Any] | None = Field(None, description="extra request fields (not messages, stream)")
        concurrency: int = Field(16, ge=1, description="requests in flight at the start (adaptive)")
        min_concurrency: int | None = Field(None, ge=1)
        max_concurrency: int | None = Field(None, ge=1)
        tokens_per_minute: int | None = Field(None, ge=1, description="client-side token budget")
        prefix_continuation: Literal["vllm", "llamacpp", "none"] = Field(
            "none", description="how the server continues a final assistant message (think budgets, planted "
                                "thoughts): vllm (continue_final_message), llamacpp (assistant prefill), none")

    def __init__(self, card, settings, options=None):
        super().__init__(card, settings, options)
        opts = self.options
        # think budgets and planted thoughts need a server that continues an assistant prefix (openai_control.py)
        self.prefix_continuation = opts.get("prefix_continuation", "none")
        if self.prefix_continuation == "none":
            refuse_unsupported(card, settings, "openai", "a chat API decides where the reasoning ends unless the "
                               "server continues an assistant prefix: set the option prefix_continuation (vllm for "
                               "vLLM's server, llamacpp for llama.cpp's), or use backend hf or vllm")
            self.think_plan = None
        else:
            self.think_plan = think_plan(card, settings, "openai")
            self.controls_reasoning = True
        base_url = opts.get("base_url")
        if not base_url or not isinstance(base_url, str):
            raise ConfigError(f"model {card.name}: backend openai needs the option 'base_url' "
                              f"(the server's OpenAI-compatible root, e.g. http://127.0.0.1:8000/v1)")
        try:
            url = urlsplit(base_url.strip())
            host, port = url.hostname, url.port  # a bad port raises here
        except ValueError:  # never echo the URL: it may hold credentials
            raise ConfigError(f"model {card.name}: option 'base_url' is not a valid URL") from None
        if url.scheme not in ("http", "https") or not host:
            raise ConfigError(f"model {card.name}: option 'base_url' must be an http(s) URL with a host, "
                              f"e.g. http://127.0.0.1:8000/v1")
        path = url.path.rstrip("/")
        if path.endswith("/chat/completions"):
            path = path[: -len("/chat/completions")]
        self._url = urlunsplit((url.scheme, url.netloc, path + "/chat/completions", "", ""))
        self.base_url = f"{host}{f':{port}' if port is not None else ''}{path}"  # credentials, query left out
        self.served_model = str(opts.get("model") or card.hub_id)
        self.api_key_env = str(opts.get("api_key_env") or "OPENAI_API_KEY")
        if opts.get("api_key_env") and self._api_key() is None:  # named on purpose: its absence is a mistake
            raise ConfigError(f"model {card.name}: option 'api_key_env' names the environment variable "
                              f"{self.api_key_env}, which is not set; export {self.api_key_env}=<your key> first")
        defaults = self.Options()
        self.timeout = float(opts.get("timeout", defaults.timeout))
        self.max_retries = int(opts.get("max_retries", defaults.max_retries))
        self.backoff_base = float(opts.get("backoff_base", defaults.backoff_base))
        self.backoff_max = float(opts.get("backoff_max", defaults.backoff_max))
        self.concurrency = int(opts.get("concurrency", defaults.concurrency))
        self.limits = LimitSettings.from_options(opts, f"model {card.name}: backend openai")
        extra = opts.get("extra_body") or {}
        if not isinstance(extra, dict):
            raise ConfigError(f"model {card.name}: option 'extra_body' must be a mapping")
        clash = [k for k in _RESERVED_BODY_KEYS if k in extra]
        if clash:
            raise ConfigError(f"model {card.name}: option 'extra_body' may not set {', '.join(clash)}")
        self.extra_body = dict(extra)
        self.attempts = 0  # HTTP attempts made, retries included (tests read it)
        self.limiter: AdaptiveLimiter | None = None  # set by the runner; hears every attempt's outcome
        self._client: aiohttp.ClientSession | None = None
        self._sent_key: str | None | object = _UNSET
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._closing: asyncio.Task | None = None
        self._lifetime: Any = None  # the async generator that closes the client with its loop

    def __repr__(self) -> str:
        return f"OpenAIBackend(card={self.card.name!r}, base_url={self.base_url!r}, model={self.served_model!r})"

    # --- identity: cheap, no connection -------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        ident = super().identity()
        ident.update({"base_url": self.base_url, "served_model": self.served_model})
        if self.prefix_continuation != "none":  # the server renders the continued prefix: part of what comes back
            ident["prefix_continuation"] = self.prefix_continuation
        if self.extra_body:
            ident["extra_body"] = self.extra_body  # e.g. chat_template_kwargs change what comes back
        return ident

    # --- the client ---------------------------------------------------------------------------
    def _api_key(self) -> str | None:
        return resolve_secret(self.api_key_env)  # the environment, else a keyring if installed

    async def _get_client(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            # A client is bound to the loop it was made in, and the runner may use a fresh loop per
            # stage (asyncio.run). A client of an earlier loop was closed when that loop ended (below).
            headers = {"Accept": "application/json"}
            key = self._sent_key = self._api_key()
            if key:
                headers["Authorization"] = f"Bearer {key}"
            import aiohttp

            # the adaptive limiter bounds requests in flight; the pool holds a connection for each
            connector = aiohttp.TCPConnector(limit=self.limits.maximum, limit_per_host=0)
            self._client = aiohttp.ClientSession(headers=headers, connector=connector, trust_env=False,
                                                 timeout=aiohttp.ClientTimeout(total=self.timeout))
            self._client_loop = loop
            self._lifetime = self._client_lifetime(self._client)
            await self._lifetime.__anext__()  # the first iteration registers it with the loop
        return self._client

    async def _client_lifetime(self, client: aiohttp.ClientSession):
        """Closes `client` when this generator is closed: by aclose(), or by asyncio.run(), which closes
        every live async generator before it closes its loop, so connections never outlive their loop."""
        try:
            yield
        finally:
            if self._client is client:
                self._client, self._client_loop = None, None
            try:
                await client.close()
            except Exception:  # noqa: BLE001 - closing is best effort; cancellation still propagates
                pass

    async def aclose(self) -> None:
        lifetime, client = self._lifetime, self._client
        self._lifetime = None
        if lifetime is not None:
            await lifetime.aclose()  # closes its client
        if client is not None and not client.closed:
            await client.close()
        self._client, self._client_loop = None, None

    async def __aenter__(self) -> OpenAIBackend:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def close(self) -> None:
        loop = self._client_loop
        if self._client is None:
            self._lifetime = None
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None and running is loop:
            self._closing = running.create_task(self.aclose())
        elif loop is not None and not loop.is_closed() and not loop.is_running():
            try:
                loop.run_until_complete(self.aclose())
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        else:  # the client's loop is gone: asyncio.run() closed the client with it
            self._client, self._client_loop, self._lifetime = None, None, None

    # --- the request --------------------------------------------------------------------------
    def _content(self, message: Message, images: dict[str, bytes]) -> str | list[dict[str, Any]]:
        parts = message.content
        if len(parts) == 1 and isinstance(parts[0], TextPart):
            return wire_text(parts[0].text)  # plain string: the form every server accepts for every role
        out: list[dict[str, Any]] = []
        for p in parts:
            if isinstance(p, TextPart):
                out.append({"type": "text", "text": wire_text(p.text)})
            elif isinstance(p, ImagePart):
                data = images.get(p.sha256)
                if data is None:
                    raise _Fail(f"image {p.sha256[:12]} is missing from the request")
                b64 = base64.b64encode(data).decode("ascii")
                out.append({"type": "image_url", "image_url": {"url": f"data:{p.media_type};base64,{b64}"}})
        return out

    def build_body(self, request: ChatRequest) -> dict[str, Any]:
        s = self.settings
        body: dict[str, Any] = {
            "model": self.served_model,
            "messages": [{"role": m.role, "content": self._content(m, request.images)} for m in request.messages],
            "max_tokens": s.max_new_tokens,
            "seed": s.seed,
        }
        if s.temperature is not None:
            body["temperature"] = s.temperature
        elif s.do_sample is False:
            body["temperature"] = 0.0  # greedy, as OpenAI-compatible servers spell it
        if s.top_p is not None:
            body["top_p"] = s.top_p
        body.update(self.extra_body)
        for field, value in request_fields(self.card).items():  # a hybrid's thinking mode, merged with extra_body's
            body[field] = {**(body.get(field) or {}), **value}
        return body

    @staticmethod
    def _parse(raw: bytes) -> dict[str, Any]:
        # Bytes that are not UTF-8 survive as lone surrogates and raw control characters in strings
        # are accepted: a reply is kept exactly rather than lost (docs/reliability.md).
        text = decode_body(raw)
        try:
            data = json.loads(text, strict=False)
        except ValueError:
            raise _Retry("malformed JSON", _snippet(text)) from None
        if not isinstance(data, dict):
            raise _Retry("malformed JSON", f"expected an object, got {type(data).__name__}")
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices:
            raise _Retry("empty choices", _snippet(text))
        choice = choices[0]
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            raise _Retry("malformed JSON", "choices[0] has no message object")
        content = message.get("content")
        if isinstance(content, list):  # some servers answer in content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        elif content is not None and not isinstance(content, str):
            raise _Retry("malformed JSON", f"message content is a {type(content).__name__}")
        reasoning = message.get("reasoning_content")
        if not isinstance(reasoning, str):
            reasoning = message.get("reasoning")
        if not isinstance(reasoning, str):
            reasoning = None
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}

        def count(name: str) -> int | None:
            v = usage.get(name)
            return v if isinstance(v, int) and not isinstance(v, bool) else None

        finish = choice.get("finish_reason")
        return {"text": content or "", "reasoning_content": reasoning,
                "finish_reason": finish if isinstance(finish, str) else None,
                "prompt_tokens": count("prompt_tokens"), "completion_tokens": count("completion_tokens")}

    async def _attempt(self, client: aiohttp.ClientSession, body: dict[str, Any]) -> dict[str, Any]:
        import aiohttp  # loaded by _get_client already: a dictionary lookup

        self.attempts += 1
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
        try:
            # The session's total timeout is a wall clock over the whole attempt, body included: a reply
            # that trickles in byte by byte does not outlive it.
            async with client.post(self._url, data=payload, allow_redirects=False,
                                   headers={"Content-Type": "application/json"}) as resp:
                status, raw = resp.status, await resp.read()
                retry_after = resp.headers.get("Retry-After")
        except asyncio.TimeoutError:  # aiohttp's own timeouts are TimeoutErrors too
            raise _Retry("timeout", f"no full answer within {self.timeout:g}s") from None
        except (aiohttp.ClientError, aiohttp.http_exceptions.HttpProcessingError) as e:
            # refused, reset, truncated body, a reply that is not HTTP, ...
            raise _Retry("connection error", f"{type(e).__name__}: {_snippet(str(e))}") from None
        if 200 <= status < 300:
            return self._parse(raw)
        detail = _snippet(decode_body(raw))
        if status in RETRYABLE_STATUS:
            raise _Retry(f"HTTP {status}", detail, parse_retry_after(retry_after))
        raise _Fail(f"HTTP {status}: {detail}" if detail else f"HTTP {status}")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.backoff_max)
        return random.uniform(0.0, min(self.backoff_max, self.backoff_base * (2 ** min(attempt - 1, 60))))

    def _scrub(self, text: str) -> str:
        # the key the client sends (looked up once per client: a keyring lookup per answer is slow)
        key = self._sent_key if self._sent_key is not _UNSET else self._api_key()
        if key and key in text:
            text = text.replace(key, "***")
        return text

    def _completion(self, request: ChatRequest, latency: float, **fields: Any) -> Completion:
        fields.setdefault("text", "")
        # A server that echoes the key (in an error body, or reflected into its output) must not get it
        # stored: the one change ever made to what a server returned.
        for name in ("error", "text", "reasoning_content"):
            if fields.get(name):
                fields[name] = self._scrub(fields[name])
        return Completion(key=request.key, probe_key=request.probe_key, model=self.card.name,
                          latency_s=round(latency, 6), **fields)

    async def agenerate(self, request: ChatRequest) -> Completion:
        started = time.perf_counter()
        try:
            return await self._generate(request, started)
        except Exception as e:  # noqa: BLE001 - one bad request never stops a run (cancellation still does)
            return self._completion(request, time.perf_counter() - started,
                                    error=f"internal error: {type(e).__name__}: {_snippet(str(e))}")

    async def _generate(self, request: ChatRequest, started: float) -> Completion:
        if self.think_plan is not None or request.continues_turn:
            from .openai_control import generate_openai_controlled

            return await generate_openai_controlled(self, request, started)
        try:
            body = self.build_body(request)
        except _Fail as e:
            return self._completion(request, 0.0, error=str(e))
        try:
            out, latency = await self.send(request, body)
        except RequestFailed as e:
            return self._completion(request, time.perf_counter() - started, error=str(e))
        return self._completion(request, latency, **out)

    async def send(self, request: ChatRequest, body: dict[str, Any]) -> tuple[dict[str, Any], float]:
        """One request body, with retries: (the parsed answer, seconds the answering attempt took);
        RequestFailed with the error's words when every attempt failed or it cannot succeed."""
        client = await self._get_client()
        tries = self.max_retries + 1
        last: _Retry | None = None
        limiter = self.limiter
        tokens = estimate_tokens(request.messages, int(body.get("max_tokens") or self.settings.max_new_tokens)) \
            if limiter else 0
        for attempt in range(1, tries + 1):
            ticket = await limiter.acquire(tokens) if limiter else None
            t0 = time.perf_counter()
            signal, used = "error", None
            try:
                out = await self._attempt(client, body)
                signal = "ok"
                if out["prompt_tokens"] is not None and out["completion_tokens"] is not None:
                    used = out["prompt_tokens"] + out["completion_tokens"]
            except _Fail as e:
                raise RequestFailed(str(e)) from None
            except _Retry as e:
                last = e
                signal = "overload" if e.kind in OVERLOAD_KINDS else "error"
            else:
                # latency: the answering attempt alone (what the server took), not the waits before it
                return out, time.perf_counter() - t0
            finally:  # waits between retries hold no slot
                if ticket is not None:
                    limiter.release(ticket, signal, used)  # type: ignore[union-attr]
            if attempt < tries:
                await asyncio.sleep(self._delay(attempt, last.retry_after))
        assert last is not None
        n = f"{tries} attempt{'s' if tries != 1 else ''}"
        raise RequestFailed(f"{last.kind} after {n}: {last.detail}" if last.detail else f"{last.kind} after {n}")
