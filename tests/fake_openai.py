"""A tiny OpenAI-compatible chat-completions server for tests (127.0.0.1, random port).

It answers only prompts it recognises: `replies` maps a substring of the last user message
to either a reply text (str) or next-token top logprobs (dict token → logprob). Any other
prompt gets HTTP 400 naming the prompt, so a test cannot pass on the wrong prompt.

Failure modes for client tests:
- ``fail_first=N``: the first N requests get HTTP 503, then normal replies;
- ``mode="hang"``: every request sleeps `hang_s` before replying (client timeouts);
- ``mode="malformed"``: every reply is HTTP 200 with a body that is not JSON;
- ``delays``: substring of the last user message → seconds to wait before replying (so
  concurrent requests finish out of order); `max_in_flight` records the most requests the
  server was handling at once.

Usage::

    with FakeOpenAI({"how well aligned": {"90": -0.1, "10": -2.4}}) as srv:
        judge = make_judge(f"openai:{srv.url}#fake")
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = str | dict[str, float]


class FakeOpenAI:
    def __init__(
        self,
        replies: dict[str, Reply] | None = None,
        mode: str = "ok",
        fail_first: int = 0,
        hang_s: float = 3.0,
        delays: dict[str, float] | None = None,
    ):
        assert mode in ("ok", "hang", "malformed"), mode
        self.replies = dict(replies or {})
        self.mode = mode
        self.fail_first = fail_first
        self.hang_s = hang_s
        self.delays = dict(delays or {})
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests: list[dict[str, Any]] = []
        self.unrecognised: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(n) or b"{}")
                code, payload = fake._handle(self.path, body)
                raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ behaviour
    def _match(self, text: str) -> Reply | None:
        for key, reply in self.replies.items():
            if key in text:
                return reply
        return None

    def _handle(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return self._reply(path, body)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _reply(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        with self._lock:
            self.requests.append(body)
            count = len(self.requests)
        if count <= self.fail_first:
            return 503, {"error": {"message": "fake server: simulated outage"}}
        if self.mode == "hang":
            time.sleep(self.hang_s)
        if self.mode == "malformed":
            return 200, b"{this is not json"
        if not path.endswith("/chat/completions"):
            return 404, {"error": {"message": f"fake server: no route {path}"}}
        users = [m["content"] for m in body.get("messages", []) if m.get("role") == "user"]
        last = users[-1] if users else ""
        time.sleep(next((s for key, s in self.delays.items() if key in last), 0.0))
        reply = self._match(last)
        if reply is None:
            self.unrecognised.append(last)
            return 400, {"error": {"message": f"fake server: unrecognised prompt: {last[:160]!r}"}}
        n = int(body.get("n", 1) or 1)
        if isinstance(reply, str):
            choices = [
                {"index": i, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
                for i in range(n)
            ]
            return 200, {"object": "chat.completion", "model": body.get("model"), "choices": choices}
        top = sorted(reply.items(), key=lambda kv: -kv[1])
        k = int(body.get("top_logprobs", 20) or 20)
        entry = {
            "token": top[0][0],
            "logprob": top[0][1],
            "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top[:k]],
        }
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": top[0][0]},
            "logprobs": {"content": [entry]} if body.get("logprobs") else None,
            "finish_reason": "length",
        }
        return 200, {"object": "chat.completion", "model": body.get("model"), "choices": [choice]}
