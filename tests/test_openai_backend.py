"""The OpenAI-compatible backend against a scripted fault server and a real `transformers serve`."""
from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import io
import json
import time

import pytest

from safemlrm.errors import ConfigError, SafeMLRMError
from safemlrm.models.base import Backend, ChatRequest
from safemlrm.models.cards import ModelCard
from safemlrm.models.openai_api import OpenAIBackend, parse_retry_after
from safemlrm.records import Completion, GenerationSettings, ImagePart, Message, Modality, TextPart
from servers import Fault, FaultServer, fault_server, serve_transformers, smollm2_hf_dir, smollm2_server  # noqa: F401

CARD = ModelCard(name="served", hub_id="org/served-model", revision="abc123")
FAST = {"backoff_base": 0.01, "backoff_max": 0.05, "timeout": 5, "max_retries": 3}


def _png(color=(220, 20, 20), size=(32, 24)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


RED_PNG = _png()


def backend(base_url: str, *, settings: GenerationSettings | None = None, card: ModelCard = CARD,
            **options) -> OpenAIBackend:
    return OpenAIBackend(card, settings or GenerationSettings(max_new_tokens=16), {"base_url": base_url, **FAST,
                                                                                 **options})


def request(text: str = "hello there", *, images: dict[str, bytes] | None = None, key: str = "ck") -> ChatRequest:
    parts: list = [TextPart(text=text)]
    for sha in images or {}:
        parts.insert(0, ImagePart(sha256=sha, media_type="image/png"))
    return ChatRequest(key=key, probe_key="pk", messages=(Message(role="user", content=tuple(parts)),),
                       images=dict(images or {}))


def run(backend_: OpenAIBackend, req: ChatRequest) -> Completion:
    async def go() -> Completion:
        try:
            return await backend_.agenerate(req)
        finally:
            await backend_.aclose()

    return asyncio.run(go())


# --- construction and identity ----------------------------------------------------------------


def test_is_an_async_backend():
    b = backend("http://127.0.0.1:1/v1")
    assert isinstance(b, Backend) and b.mode == "async" and b.registered_name == "openai"
    assert b.concurrency == 16 and b.max_retries == 3
    assert backend("http://127.0.0.1:1/v1", concurrency=4).concurrency == 4


def test_missing_base_url_names_the_option():
    with pytest.raises(SafeMLRMError, match="base_url"):
        OpenAIBackend(CARD, GenerationSettings(), {})
    with pytest.raises(ConfigError, match="base_url"):
        OpenAIBackend(CARD, GenerationSettings(), {"base_url": "ftp://example.org"})


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="max_retrys"):
        backend("http://127.0.0.1:1/v1", max_retrys=2)
    with pytest.raises(ConfigError, match="timeout"):
        backend("http://127.0.0.1:1/v1", timeout="soon")
    with pytest.raises(ConfigError, match="messages"):
        backend("http://127.0.0.1:1/v1", extra_body={"messages": []})


def test_identity_strips_credentials_and_query_and_makes_no_request(fault_server):
    url = f"http://user:hunter2@127.0.0.1:{fault_server.port}/v1/?token=hunter2#frag"
    b = backend(url, model="served-name", extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    ident = b.identity()
    assert ident["backend"] == "openai"
    assert ident["base_url"] == f"127.0.0.1:{fault_server.port}/v1"
    assert ident["served_model"] == "served-name"
    assert ident["revision"] == "abc123" and ident["model"] == "org/served-model"
    assert ident["prompt"] == ["none", None]
    assert ident["extra_body"] == {"chat_template_kwargs": {"enable_thinking": False}}
    assert not any("template" in k for k in ident)  # no chat template hash: unknown remotely
    assert "hunter2" not in json.dumps(ident) and "hunter2" not in repr(b)
    assert fault_server.requests == 0
    assert backend(url, model="other").identity() != ident  # the served model is part of it


# --- the request ------------------------------------------------------------------------------


def test_request_body_maps_messages_images_and_settings(fault_server):
    sha = hashlib.sha256(RED_PNG).hexdigest()
    settings = GenerationSettings(max_new_tokens=7, temperature=0.3, top_p=0.9, seed=11)
    b = backend(fault_server.base_url, settings=settings, model="served-name",
                extra_body={"chat_template_kwargs": {"enable_thinking": True}})
    req = ChatRequest(key="k", probe_key="p", images={sha: RED_PNG}, messages=(
        Message(role="system", content=(TextPart(text="be safe"),)),
        Message(role="user", content=(ImagePart(sha256=sha), TextPart(text="what is this?"))),
    ))
    c = run(b, req)
    assert c.error is None and c.text == "echo: what is this?"
    body = fault_server.bodies[0]
    assert body["model"] == "served-name" and body["max_tokens"] == 7 and body["seed"] == 11
    assert body["temperature"] == 0.3 and body["top_p"] == 0.9
    assert body["chat_template_kwargs"] == {"enable_thinking": True}
    assert body["messages"][0] == {"role": "system", "content": "be safe"}
    image, text = body["messages"][1]["content"]
    assert text == {"type": "text", "text": "what is this?"}
    assert image["type"] == "image_url"
    assert image["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(RED_PNG).decode()
    assert "stream" not in body


def test_unset_sampling_settings_are_not_sent(fault_server):
    run(backend(fault_server.base_url, settings=GenerationSettings()), request())
    body = fault_server.bodies[0]
    assert "temperature" not in body and "top_p" not in body
    assert body["max_tokens"] == 4096 and body["seed"] == 0 and body["model"] == "org/served-model"
    run(backend(fault_server.base_url, settings=GenerationSettings(do_sample=False)), request())
    assert fault_server.bodies[1]["temperature"] == 0.0  # greedy, spelled the OpenAI way


def test_missing_image_bytes_is_an_error_without_a_request(fault_server):
    req = ChatRequest(key="k", probe_key="p", messages=(
        Message(role="user", content=(ImagePart(sha256="ab" * 32), TextPart(text="x"))),))
    c = run(backend(fault_server.base_url), req)
    assert c.error and "missing" in c.error and fault_server.requests == 0


# --- the response -----------------------------------------------------------------------------


def test_answer_usage_finish_and_latency(fault_server):
    b = backend(fault_server.base_url)
    c = run(b, request("hi you", key="the-key"))
    assert (c.key, c.probe_key, c.model) == ("the-key", "pk", "served")
    assert c.text == "echo: hi you" and c.error is None and c.finish_reason == "stop"
    assert c.reasoning_content is None
    assert c.prompt_tokens and c.completion_tokens == 3
    assert c.latency_s is not None and c.latency_s >= 0
    assert b.attempts == 1 and fault_server.requests == 1


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_content_is_read(fault_server, field):
    fault_server.script(Fault("ok", reasoning="step 1, step 2", reasoning_field=field))
    c = run(backend(fault_server.base_url), request())
    assert c.reasoning_content == "step 1, step 2" and c.text == "echo: hello there"


def test_content_filter_finish_is_a_normal_completion(fault_server):
    fault_server.script("filter")
    b = backend(fault_server.base_url)
    c = run(b, request())
    assert c.error is None and c.finish_reason == "content_filter" and c.text == ""
    assert b.attempts == 1


# --- faults -----------------------------------------------------------------------------------

TRANSIENT = [
    pytest.param(Fault("http", status=500), id="500"),
    pytest.param(Fault("http", status=502), id="502"),
    pytest.param(Fault("http", status=503), id="503"),
    pytest.param(Fault("http", status=504), id="504"),
    pytest.param(Fault("http", status=429), id="429"),
    pytest.param(Fault("reset"), id="reset"),
    pytest.param(Fault("timeout", seconds=3), id="timeout"),
    pytest.param(Fault("slow", seconds=2.0), id="slow-past-deadline"),
    pytest.param(Fault("malformed"), id="malformed"),
    pytest.param(Fault("truncated"), id="truncated"),
    pytest.param(Fault("empty"), id="empty"),
]


@pytest.mark.parametrize("fault", TRANSIENT)
def test_transient_fault_is_retried_to_an_answer(fault_server, fault):
    fault_server.script(fault, fault)
    b = backend(fault_server.base_url, timeout=0.5)
    c = run(b, request())
    assert c.error is None and c.text == "echo: hello there"
    assert b.attempts == 3 and fault_server.requests == 3
    assert fault_server.counts[fault.label] == 2 and fault_server.counts["ok"] == 1


@pytest.mark.parametrize("fault, cause", [
    (Fault("http", status=503, body="upstream overloaded " + "x" * 400), "HTTP 503 after 3 attempts: upstream overloaded"),
    (Fault("http", status=429), "HTTP 429 after 3 attempts"),
    (Fault("timeout", seconds=3), "timeout after 3 attempts"),
    (Fault("reset"), "connection error after 3 attempts"),
    (Fault("truncated"), "connection error after 3 attempts"),
    (Fault("malformed"), "malformed JSON after 3 attempts"),
    (Fault("empty"), "empty choices after 3 attempts"),
], ids=["503", "429", "timeout", "reset", "truncated", "malformed", "empty"])
def test_persistent_fault_ends_as_an_error_completion(fault_server, fault, cause):
    fault_server.default = fault
    b = backend(fault_server.base_url, timeout=0.5, max_retries=2)
    c = run(b, request())
    assert c.error is not None and c.error.startswith(cause), c.error
    assert len(c.error) < 320  # the body is cut to its first 200 characters
    assert c.text == "" and c.finish_reason is None
    assert b.attempts == 3 and fault_server.requests == 3


def test_slow_body_within_the_deadline_is_an_answer(fault_server):
    fault_server.script(Fault("slow", seconds=0.5))
    b = backend(fault_server.base_url, timeout=3)
    c = run(b, request())
    assert c.error is None and c.text == "echo: hello there" and b.attempts == 1


def test_connection_refused_is_retried_then_recorded():
    from servers import free_port

    b = backend(f"http://127.0.0.1:{free_port()}/v1", max_retries=1)
    c = run(b, request())
    assert c.error.startswith("connection error after 2 attempts") and b.attempts == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not_retried(fault_server, status):
    payload = json.dumps({"error": {"message": "Your request was rejected by the content filter",
                                    "code": "content_filter"}})
    fault_server.default = Fault("http", status=status, body=payload)
    b = backend(fault_server.base_url)
    c = run(b, request())
    assert fault_server.requests == 1 and b.attempts == 1
    assert c.error.startswith(f"HTTP {status}: ") and "content filter" in c.error
    assert c.text == ""


def test_retry_after_seconds_is_honoured(fault_server):
    fault_server.script(Fault("http", status=429, retry_after="1"))
    b = backend(fault_server.base_url, backoff_max=5)
    t0 = time.perf_counter()
    c = run(b, request())
    assert time.perf_counter() - t0 >= 1.0
    assert c.error is None and b.attempts == 2


def test_retry_after_http_date_is_honoured(fault_server):
    fault_server.script(Fault("http", status=503, retry_after=email.utils.formatdate(time.time() + 2, usegmt=True)))
    b = backend(fault_server.base_url, backoff_max=5)
    t0 = time.perf_counter()
    c = run(b, request())
    assert time.perf_counter() - t0 >= 0.9  # the date has whole seconds: 1 to 2 s from now
    assert c.error is None and b.attempts == 2


def test_retry_after_is_capped_by_backoff_max(fault_server):
    fault_server.script(Fault("http", status=429, retry_after="30"))
    b = backend(fault_server.base_url, backoff_max=0.2)
    t0 = time.perf_counter()
    c = run(b, request())
    assert time.perf_counter() - t0 < 5 and c.error is None


def test_parse_retry_after():
    assert parse_retry_after("3") == 3.0 and parse_retry_after("0.5") == 0.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    now = 1_700_000_000.0
    assert parse_retry_after(email.utils.formatdate(now + 10, usegmt=True), now=now) == pytest.approx(10, abs=1)
    assert parse_retry_after(email.utils.formatdate(now - 10, usegmt=True), now=now) == 0.0


def test_backoff_is_full_jitter_exponential_and_capped():
    b = backend("http://127.0.0.1:1/v1", backoff_base=1.0, backoff_max=4.0)
    for attempt, top in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 4.0)]:
        waits = [b._delay(attempt, None) for _ in range(200)]
        assert all(0 <= w <= top for w in waits) and max(waits) > top / 2
    assert b._delay(1, 2.5) == 2.5 and b._delay(1, 99) == 4.0


def test_cancellation_propagates(fault_server):
    fault_server.default = Fault("timeout", seconds=10)

    async def go():
        b = backend(fault_server.base_url, timeout=30)
        task = asyncio.create_task(b.agenerate(request()))
        await asyncio.sleep(0.3)
        task.cancel()
        try:
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            await b.aclose()

    asyncio.run(go())


# --- the API key ------------------------------------------------------------------------------

SECRET = "sk-test-0123456789abcdef-SECRET"


def test_api_key_is_sent_and_never_leaks(fault_server, monkeypatch):
    monkeypatch.setenv("SAFEMLRM_TEST_KEY", SECRET)
    b = backend(fault_server.base_url, api_key_env="SAFEMLRM_TEST_KEY", max_retries=0)
    ok = run(b, request())
    assert fault_server.auth_headers[-1] == f"Bearer {SECRET}"
    # a server that echoes the key in an error body: the key is masked in the recorded cause
    fault_server.script(Fault("http", status=401, body=f"invalid api key {SECRET}"),
                        Fault("http", status=503, body=f"overloaded for {SECRET}"))
    bad401 = run(b, request())
    bad503 = run(b, request())
    assert bad401.error.startswith("HTTP 401") and "***" in bad401.error
    assert bad503.error.startswith("HTTP 503") and "***" in bad503.error
    leaks = [json.dumps(b.identity()), repr(b), str(b.__dict__.get("options")), *(
        c.model_dump_json() for c in (ok, bad401, bad503))]
    assert not any(SECRET in text for text in leaks)
    with pytest.raises(ConfigError) as e:
        OpenAIBackend(CARD, GenerationSettings(), {"api_key_env": "SAFEMLRM_TEST_KEY"})
    assert SECRET not in str(e.value)


def test_no_key_no_authorization_header(fault_server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    run(backend(fault_server.base_url), request())
    assert fault_server.auth_headers == [None]


# --- concurrency and lifetime -----------------------------------------------------------------


def test_many_requests_gathered_under_a_semaphore():
    n, delay = 40, 0.2
    with FaultServer(default=Fault("ok", seconds=delay)) as srv:
        b = backend(srv.base_url, concurrency=8)

        async def go():
            sem = asyncio.Semaphore(b.concurrency)

            async def one(i):
                async with sem:
                    return await b.agenerate(request(f"question {i}", key=f"k{i}"))

            try:
                return await asyncio.gather(*(one(i) for i in range(n)))
            finally:
                await b.aclose()

        t0 = time.perf_counter()
        out = asyncio.run(go())
        elapsed = time.perf_counter() - t0
    assert [c.text for c in out] == [f"echo: question {i}" for i in range(n)]
    assert [c.key for c in out] == [f"k{i}" for i in range(n)]
    assert srv.requests == n and 2 <= srv.max_in_flight <= 8
    assert elapsed < n * delay / 2  # really concurrent


def test_backend_survives_successive_event_loops_and_sync_close(fault_server):
    b = backend(fault_server.base_url)
    clients = []

    async def one(text):
        c = await b.agenerate(request(text))
        clients.append(b._client)
        return c

    first = asyncio.run(one("one"))  # the runner uses asyncio.run per stage, then close()
    second = asyncio.run(one("two"))
    assert (first.text, second.text) == ("echo: one", "echo: two")
    assert clients[0] is not clients[1]
    assert all(c.closed for c in clients)  # each client closed with its loop: no leaked sockets
    b.close()
    b.close()  # idempotent
    assert b._client is None


def test_aclose_closes_the_client(fault_server):
    b = backend(fault_server.base_url)

    async def go():
        async with b:
            await b.agenerate(request())
            client = b._client
        return client

    assert asyncio.run(go()).closed and b._client is None


# --- a real server: transformers serve --------------------------------------------------------


@pytest.mark.slow
def test_transformers_serve_text_completion(smollm2_server):
    settings = GenerationSettings(max_new_tokens=48, do_sample=False)
    b = backend(smollm2_server.base_url, settings=settings, model=smollm2_server.model, timeout=120)
    c = run(b, request("What is the capital of France? Answer in one word."))
    assert c.error is None, c.error
    assert c.text.strip()
    assert c.finish_reason in ("stop", "length")
    assert c.prompt_tokens and c.prompt_tokens > 5 and c.completion_tokens and c.completion_tokens > 0
    assert c.latency_s and c.latency_s > 0
    assert b.attempts == 1


@pytest.mark.slow
def test_transformers_serve_length_limit(smollm2_server):
    settings = GenerationSettings(max_new_tokens=3, do_sample=False)
    b = backend(smollm2_server.base_url, settings=settings, model=smollm2_server.model, timeout=120)
    c = run(b, request("Write a long story about a dragon."))
    assert c.error is None and c.finish_reason == "length" and c.completion_tokens == 3 and c.text


@pytest.mark.slow
def test_transformers_serve_rejects_another_model_name_without_retry(smollm2_server):
    b = backend(smollm2_server.base_url, model="not-the-served-model", timeout=120)
    c = run(b, request())
    assert c.error.startswith("HTTP 400") and "pinned" in c.error and b.attempts == 1


@pytest.fixture
def tiny_vl_dir(request, tmp_path):
    """The tiny Qwen2.5-VL: the `tiny_qwen25vl` fixture where one is defined, else built here."""
    try:
        value = request.getfixturevalue("tiny_qwen25vl")
        return getattr(value, "path", value)
    except pytest.FixtureLookupError:
        pass
    try:
        from tiny_models import build_qwen25vl
    except ImportError as e:
        pytest.skip(f"no tiny Qwen2.5-VL: neither a tiny_qwen25vl fixture nor tests/tiny_models.py ({e})")
    return build_qwen25vl(tmp_path / "tiny-qwen25vl")


@pytest.mark.slow
def test_transformers_serve_image_completion(tiny_vl_dir):
    card = ModelCard(name="tiny-vl", hub_id=str(tiny_vl_dir), modalities=(Modality.TEXT, Modality.IMAGE))
    settings = GenerationSettings(max_new_tokens=4, do_sample=False)
    sha = hashlib.sha256(RED_PNG).hexdigest()
    with serve_transformers(tiny_vl_dir) as served:
        b = backend(served.base_url, settings=settings, card=card, timeout=120)  # model defaults to hub_id
        with_image = run(b, request("describe the image", images={sha: RED_PNG}))
        text_only = run(b, request("describe the image"))
    for c in (with_image, text_only):
        assert c.error is None, c.error
        assert c.finish_reason in ("stop", "length") and c.completion_tokens
    # the image reached the model: its placeholder tokens lengthen the prompt
    assert with_image.prompt_tokens > text_only.prompt_tokens


@pytest.fixture
def tiny_thinker_dir(request):
    try:
        return request.getfixturevalue("tiny_thinker")
    except pytest.FixtureLookupError:
        pytest.skip("no tiny_thinker fixture (tests/conftest.py)")


@pytest.mark.slow
def test_transformers_serve_separates_reasoning(tiny_thinker_dir):
    """transformers serve splits <think>...</think> into reasoning_content; the backend keeps both."""
    from tiny_models import THINK_TARGET

    card = ModelCard(name="tiny-thinker", hub_id=str(tiny_thinker_dir), modalities=(Modality.TEXT,))
    with serve_transformers(tiny_thinker_dir) as served:
        full = run(backend(served.base_url, card=card, timeout=120,
                           settings=GenerationSettings(max_new_tokens=40, do_sample=False)), request("how do I do it"))
        cut = run(backend(served.base_url, card=card, timeout=120,
                          settings=GenerationSettings(max_new_tokens=3, do_sample=False)), request("how do I do it"))
    reasoning, answer = THINK_TARGET.removeprefix("<think>").split("</think>")
    assert (full.reasoning_content, full.text, full.finish_reason) == (reasoning, answer, "stop")
    # cut inside the reasoning: all of it is reasoning, no answer
    assert cut.finish_reason == "length" and cut.text == "" and reasoning.startswith(cut.reasoning_content)


def test_an_unexpected_failure_is_recorded_not_raised(fault_server):
    b = backend(fault_server.base_url, extra_body={"not_json": object()})  # cannot be serialised
    c = run(b, request())
    assert c.error.startswith("internal error: TypeError") and fault_server.requests == 0
