"""Stub OpenAI-compatible chat server on 127.0.0.1, for tests (a test stand-in, not a model).

A real HTTP server (``http.server.ThreadingHTTPServer`` in a daemon thread) that answers
``POST /v1/chat/completions`` in the OpenAI wire format from a script, so the clients are
tested over real sockets: timeouts, HTTP errors and malformed bodies included.

Usage::

    with StubOpenAIServer() as server:
        server.push(Reply(status=500), Reply("hello"))      # scripted, in order
        server.responder = lambda body: "fallback answer"     # when the script is empty
        ChatClient(LLMEndpoint(base_url=server.base_url, model="stub")).complete(...)
        server.requests                                       # parsed request bodies
        server.push(Reply(tool_calls=[tool_call("check_status_bar")]))   # a tool-call answer
        server.tools_sent                                     # each request's ``tools`` (or None)

Reusable from other test folders: ``from tests.llm.openai_stub import StubOpenAIServer, Reply``
(run pytest from the repository root, e.g. ``python -m pytest``).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Reply", "StubOpenAIServer", "tool_call"]


@dataclass
class Reply:
    """One scripted answer.

    Attributes:
        content: assistant text, wrapped into a chat.completion JSON body (``None`` with
            ``tool_calls`` sends ``"content": null``, as OpenAI does; else ``""``).
        tool_calls: the answer's tool calls in the OpenAI wire form (see :func:`tool_call`);
            the finish reason is then ``"tool_calls"``.
        status: HTTP status; non-200 sends an OpenAI-style error body.
        delay_s: sleep before answering (to trigger client timeouts).
        body: raw body bytes, sent instead of a generated one (garbage tests).
        content_type: Content-Type of the response.
        headers: extra response headers (e.g. ``{"retry-after-ms": "10"}``).
    """

    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    status: int = 200
    delay_s: float = 0.0
    body: bytes | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


Responder = Callable[[dict[str, Any]], "str | Reply"]


class StubOpenAIServer:
    """Loopback stub of ``/v1/chat/completions``; scripted replies first, then ``responder``."""

    def __init__(self, responder: Responder | None = None) -> None:
        self.script: deque[Reply] = deque()
        self.responder = responder
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self) -> StubOpenAIServer:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, b'{"error":{"message":"not found"}}', "application/json", {})
                    return
                body = json.loads(raw or b"{}")
                with stub._lock:
                    stub.requests.append(body)
                    stub.headers.append({k.lower(): v for k, v in self.headers.items()})
                    reply = stub.script.popleft() if stub.script else None
                if reply is None:
                    if stub.responder is None:
                        reply = Reply(status=500, body=b'{"error":{"message":"stub: no reply scripted"}}')
                    else:
                        out = stub.responder(body)
                        reply = out if isinstance(out, Reply) else Reply(content=out)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                payload = reply.body
                if payload is None:
                    payload = json.dumps(
                        _completion(body, reply.content, reply.tool_calls) if reply.status == 200
                        else {"error": {"message": f"stub error {reply.status}", "type": "server_error"}}
                    ).encode()
                self._send(reply.status, payload, reply.content_type, reply.headers)

            def _send(self, status: int, payload: bytes, ctype: str, headers: dict[str, str]) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(payload)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True, name="openai-stub")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> StubOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- scripting ----------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the stub server first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def tools_sent(self) -> list[list[dict[str, Any]] | None]:
        """The ``tools`` of each request so far, in order (None where a request sent none)."""
        with self._lock:
            return [body.get("tools") for body in self.requests]

    def push(self, *replies: Reply | str) -> None:
        """Append scripted replies (a str is a normal answer with that text)."""
        with self._lock:
            self.script.extend(r if isinstance(r, Reply) else Reply(content=r) for r in replies)


def tool_call(name: str, arguments: dict[str, Any] | None = None, call_id: str | None = "call_stub_0") -> dict[str, Any]:
    """One tool call of an answer in the OpenAI wire form (``arguments`` JSON-encoded;
    ``call_id=None`` leaves the id out, as some servers do)."""
    call: dict[str, Any] = {"type": "function",
                            "function": {"name": name, "arguments": json.dumps(arguments or {})}}
    if call_id is not None:
        call["id"] = call_id
    return call


def _completion(request: dict[str, Any], text: str | None, tool_calls: list[dict[str, Any]] | None = None,
                ) -> dict[str, Any]:
    """A minimal chat.completion body in the OpenAI wire format."""
    content = text if text is not None else (None if tool_calls else "")
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "stub"),
        "choices": [{"index": 0, "finish_reason": "tool_calls" if tool_calls else "stop",
                     "message": message}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }
