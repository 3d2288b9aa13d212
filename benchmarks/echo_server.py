"""A lean OpenAI-compatible chat server for the benchmarks: asyncio, HTTP/1.1 keep-alive, answers
`POST .../chat/completions` with the last user text echoed after a fixed delay.

The test suite's FaultServer (threads, scripted faults) costs the server about as much CPU per
request as safemlrm's whole client side; on a 2-core machine that would make a 100k-probe
benchmark measure the server. This one does the least an OpenAI-style server must do.
"""
from __future__ import annotations

import asyncio
import json
import time

_HEAD = ("HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n"
         "connection: keep-alive\r\n\r\n")


def _echo(body: dict) -> str:
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(p.get("text", "") for p in content if p.get("type") == "text")
            return f"echo: {content}"
    return "echo: "


class EchoServer:
    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.requests = 0
        self.port: int | None = None

    async def start(self) -> None:
        server = await asyncio.start_server(self._connection, "127.0.0.1", 0, backlog=1024)
        self.port = server.sockets[0].getsockname()[1]
        self._server = server

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                raw = await reader.readexactly(length) if length else b""
                self.requests += 1
                if self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(self._answer(lines[0], raw))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def _answer(self, request_line: str, raw: bytes) -> bytes:
        if not request_line.startswith("POST ") or "/chat/completions" not in request_line:
            payload, status, reason = b'{"error": {"message": "not found"}}', 404, "Not Found"
        else:
            body = json.loads(raw)
            text = _echo(body)
            payload = json.dumps({
                "id": f"cmpl-{self.requests}", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", "echo"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": len(raw) // 4, "completion_tokens": len(text) // 4,
                          "total_tokens": (len(raw) + len(text)) // 4},
            }).encode()
            status, reason = 200, "OK"
        return _HEAD.format(status=status, reason=reason, length=len(payload)).encode() + payload


def serve(conn, delay: float) -> None:
    """Run in a process of its own; answers "count" on the pipe with the requests seen, stops on "stop"."""
    async def main() -> None:
        srv = EchoServer(delay)
        await srv.start()
        conn.send(srv.base_url)
        loop = asyncio.get_running_loop()
        while (msg := await loop.run_in_executor(None, conn.recv)) != "stop":
            if msg == "count":
                conn.send(srv.requests)

    asyncio.run(main())
