"""A local OpenAI-compatible chat server with faults injected per model, for tests and bench.

stdlib http.server, HTTP/1.1 keep-alive, Nagle disabled, SSE sent with chunked
encoding so a cut stream is an error on the client rather than a silent end.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from collections import defaultdict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def reply_for(model: str, messages: list[dict[str, Any]]) -> str:
    last = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), "")
    return f"{model} says: {last} ({len(messages)} messages)"


class FakeServer:
    """`faults[model]` is a queue of fault names consumed one per request; `always[model]` repeats.

    Faults: "429" or "429:<retry-after>", "400", "500", "503", "401", "401key" (repeats the key), "401glued"
    (repeats it glued to other characters), "404", "timeout",
    "malformed", "cut" (stream cut after 3 chunks), "short" (stream ended cleanly after 3
    chunks, with no finish reason and no [DONE]), "context" (context-length 400),
    "hang" (never answers until shutdown).
    """

    def __init__(self, timeout_sleep: float = 3.0) -> None:
        self.faults: dict[str, deque[str]] = defaultdict(deque)
        self.always: dict[str, str] = {}
        self.fixed: dict[str, str] = {}  # model -> a fixed answer instead of the echo
        self.requests: list[dict[str, Any]] = []
        self.keys: list[str | None] = []  # each request's Authorization header
        self.timeout_sleep = timeout_sleep
        self.max_prompt_chars: dict[str, int] = {}  # model -> reject bigger prompts with a context error
        self._stop = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                server._handle(self, body)

        class Server(ThreadingHTTPServer):
            request_queue_size = 1024  # the stdlib's 5 resets connections when 500 clients connect at once

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # faults cut connections on purpose

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> "FakeServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def fail(self, model: str, *faults: str) -> None:
        with self._lock:
            self.faults[model].extend(faults)

    def reset(self) -> None:
        with self._lock:
            self.faults.clear()
            self.always.clear()
            self.fixed.clear()
            self.requests.clear()
            self.keys.clear()
            self.max_prompt_chars.clear()

    def calls(self, model: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.requests if model is None or r["model"] == model]

    # -- request handling ---------------------------------------------------
    def _next_fault(self, model: str) -> str | None:
        with self._lock:
            q = self.faults.get(model)
            if q:
                return q.popleft()
            return self.always.get(model)

    def _handle(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        model = body.get("model", "")
        messages = body.get("messages", [])
        with self._lock:
            self.requests.append(body)
            self.keys.append(h.headers.get("Authorization"))
        fault = self._next_fault(model)
        limit = self.max_prompt_chars.get(model)
        if limit is not None and sum(len(str(m.get("content", ""))) for m in messages) > limit:
            fault = "context"
        if fault:
            if self._fault(h, fault):
                return
        text = self.fixed.get(model) or reply_for(model, messages)
        pt = sum(len(str(m.get("content", "")).split()) + 4 for m in messages)
        ct = len(text.split())
        usage = {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}
        if body.get("stream"):
            self._stream(h, model, text, usage, bool((body.get("stream_options") or {}).get("include_usage")),
                         cut=(fault == "cut"), short=(fault == "short"))
            return
        self._json(h, 200, {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage,
        })

    def _fault(self, h: BaseHTTPRequestHandler, fault: str) -> bool:
        """Send the fault; False means 'answer normally' (faults that act mid-stream)."""
        name, _, arg = fault.partition(":")
        if name in ("cut", "short"):
            return False
        if name == "slow":  # answers normally after `arg` seconds
            self._stop.wait(float(arg or 0.3))
            return False
        if name == "429":
            self._json(h, 429, {"error": {"message": "rate limited", "type": "rate_limit_error"}},
                       {"Retry-After": arg or "0"})
        elif name in ("400", "500", "503", "401", "404"):
            self._json(h, int(name), {"error": {"message": f"fake {name}", "type": "server_error"}})
        elif name == "401key":  # a provider that repeats the request's key in its error text
            key = (h.headers.get("Authorization") or "").removeprefix("Bearer ")
            self._json(h, 401, {"error": {"message": f"token {key} has expired", "type": "auth_error"}})
        elif name == "401glued":  # ... with the key glued to other characters
            key = (h.headers.get("Authorization") or "").removeprefix("Bearer ")
            self._json(h, 401, {"error": {"message": f"unknown credential {key}-v2, invalid key_{key}_for_project",
                                          "type": "auth_error"}})
        elif name == "context":
            self._json(h, 400, {"error": {
                "message": "This model's maximum context length is 100 tokens. However, your messages resulted in 999 tokens.",
                "type": "invalid_request_error", "code": "context_length_exceeded"}})
        elif name in ("timeout", "hang"):
            self._stop.wait(self.timeout_sleep if name == "timeout" else 3600)
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        elif name == "malformed":
            data = b'{"id": "x", "choices": [ this is not json'
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        else:
            raise ValueError(f"unknown fault {fault!r}")
        return True

    def _json(self, h: BaseHTTPRequestHandler, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def _stream(self, h: BaseHTTPRequestHandler, model: str, text: str, usage: dict[str, int],
                include_usage: bool, cut: bool, short: bool = False) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

        def send(obj: Any) -> None:
            payload = f"data: {obj if isinstance(obj, str) else json.dumps(obj)}\n\n".encode()
            h.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
            h.wfile.flush()

        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        words = text.split(" ")
        for i, w in enumerate(words):
            if cut and i == 3:
                h.wfile.flush()
                h.connection.shutdown(socket.SHUT_RDWR)  # no terminating chunk: the client sees a broken stream
                h.close_connection = True
                return
            if short and i == 3:
                h.wfile.write(b"0\r\n\r\n")  # a well-formed end of the body, mid-answer
                h.wfile.flush()
                return
            piece = w if i == 0 else " " + w
            send({**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
        send({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if include_usage:
            send({**base, "choices": [], "usage": usage})
        send("[DONE]")
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()


def free_port() -> int:
    """A port nothing listens on (for connection-refused tests)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


if __name__ == "__main__":  # run standalone (the benchmark keeps the server out of its own process)
    import sys

    srv = FakeServer().start()
    print(srv.port, flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    srv.stop()
