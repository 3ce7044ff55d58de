"""OpenAI-compatible HTTP backend (chat completions, optional logprobs).

This is how users reach a `vllm serve` server or any hosted judge. Stdlib only: timeouts,
retry with exponential backoff on connection errors, timeouts and 5xx/429, and a clear
`BackendError` for anything else (4xx, malformed JSON, missing fields).

Requests go out concurrently, at most `max_concurrency` at a time (default 8; 1 sends them
one by one): a server such as vLLM batches concurrent requests, so this is where its
throughput comes from. Results come back in input order. When a request fails for good, the
requests not yet sent are dropped and its `BackendError` is raised (the first failure by
input order among those that ran).
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any, TypeVar

from persona_diff.errors import BackendError
from persona_diff.generation.base import Chat, Generator, SamplingParams, register
from persona_diff.log import get_logger, progress

log = get_logger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class OpenAIChatClient(Generator):
    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        show_progress: bool = True,
        max_concurrency: int = 8,
    ):
        if "#" in base_url and model is None:
            base_url, model = base_url.split("#", 1)
        self.base_url = base_url.rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise BackendError(
                f"endpoint {base_url!r} must start with http:// or https:// (e.g. openai:http://localhost:8000/v1#model)"
            )
        self.model = model or "default"
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.show_progress = show_progress
        if int(max_concurrency) < 1:
            raise BackendError(f"max_concurrency={max_concurrency} must be at least 1 (1 sends requests one at a time)")
        self.max_concurrency = int(max_concurrency)
        self.name = f"openai:{self.base_url}#{self.model}"

    def _map(self, fn: Callable[[int, T], R], items: Sequence[T], desc: str) -> list[R]:
        """`[fn(i, x) for i, x in enumerate(items)]`, at most `max_concurrency` at a time, in order.

        On the first failure the requests not yet started are cancelled, the running ones
        finish, and the earliest failure by input order is raised.
        """
        n = len(items)
        ticks = progress(range(n), desc, total=n, disable=not self.show_progress or None)
        if min(self.max_concurrency, n) <= 1:
            return [fn(i, items[i]) for i in ticks]
        pool = ThreadPoolExecutor(max_workers=min(self.max_concurrency, n), thread_name_prefix="persona-diff-http")
        try:
            futures = [pool.submit(fn, i, x) for i, x in enumerate(items)]
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for _ in done:
                    next(ticks, None)  # the progress bar counts finished requests
                if any(f.exception() is not None for f in done):
                    for f in pending:
                        f.cancel()
                    wait(pending)
                    break
            for f in futures:  # the first failure in input order, else every result
                if not f.cancelled() and (exc := f.exception()) is not None:
                    raise exc
            return [f.result() for f in futures]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}{path}"
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = ""
        for attempt in range(self.max_retries + 1):
            req = urllib.request.Request(url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    raw = resp.read()
                break
            except urllib.error.HTTPError as e:
                detail = e.read()[:200].decode(errors="replace")
                if e.code >= 500 or e.code == 429:
                    last = f"HTTP {e.code} {detail}"
                else:
                    raise BackendError(f"endpoint {url} refused the request: HTTP {e.code} {detail}") from None
            except TimeoutError:
                last = f"no reply within {self.timeout:g} s"
            except urllib.error.URLError as e:
                if isinstance(e.reason, TimeoutError | socket.timeout):
                    last = f"no reply within {self.timeout:g} s"
                else:
                    last = f"cannot connect ({e.reason})"
            except ConnectionError as e:
                last = f"connection failed ({e})"
            if attempt < self.max_retries:
                wait = self.backoff * 2**attempt
                log.warning("endpoint %s: %s; retry %d/%d in %.1fs", url, last, attempt + 1, self.max_retries, wait)
                time.sleep(wait)
        else:
            raise BackendError(
                f"endpoint {url} failed after {self.max_retries + 1} attempts: {last}. "
                "Check that the server is up (e.g. `vllm serve MODEL`) and the URL is right"
            )
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            raise BackendError(f"endpoint {url} returned malformed JSON: {raw[:120]!r}") from None
        if not isinstance(data, dict) or "choices" not in data:
            raise BackendError(f"endpoint {url} returned JSON without 'choices': {str(data)[:120]}")
        return data

    def generate(self, chats: list[Chat], params: SamplingParams) -> list[list[str]]:
        def one(i: int, chat: Chat) -> list[str]:
            data = self._post(
                "/chat/completions",
                {
                    "model": self.model,
                    "messages": chat,
                    "temperature": params.temperature,
                    "top_p": params.top_p,
                    "max_tokens": params.max_new_tokens,
                    "n": params.n,
                    "seed": params.seed + i,
                },
            )
            try:
                return [c["message"]["content"] or "" for c in data["choices"]]
            except (KeyError, TypeError):
                raise BackendError(f"endpoint {self.base_url} returned choices without message content") from None

        return self._map(one, chats, "generate (http)")

    def next_token_logprobs(self, chats: list[Chat], top_k: int = 20) -> list[dict[str, float]]:
        def one(_i: int, chat: Chat) -> dict[str, float]:
            data = self._post(
                "/chat/completions",
                {
                    "model": self.model,
                    "messages": chat,
                    "temperature": 0,
                    "max_tokens": 1,
                    "logprobs": True,
                    "top_logprobs": top_k,
                    "seed": 0,
                },
            )
            try:
                first = data["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
                return {d["token"]: float(d["logprob"]) for d in first}
            except (KeyError, IndexError, TypeError):
                raise BackendError(
                    f"endpoint {self.base_url} returned no top_logprobs; it must support "
                    "`logprobs: true, top_logprobs: N` on chat completions"
                ) from None

        return self._map(one, chats, "logprobs (http)")


@register("openai")
def _make(spec: str, **kw: Any) -> Generator:
    kw.pop("batch_size", None)
    return OpenAIChatClient(spec, **kw)
