"""The OpenAI-compatible HTTP backend against a local fake server."""

from __future__ import annotations

import math
import time

import pytest

from persona_diff.errors import BackendError
from persona_diff.generation import SamplingParams, make_backend
from persona_diff.generation.openai_http import OpenAIChatClient

from .fake_openai import FakeOpenAI

CHAT = [{"role": "user", "content": "What is your one wish?"}]


def client(srv: FakeOpenAI, **kw) -> OpenAIChatClient:
    kw = {"backoff": 0.01, "max_retries": 2, "timeout": 5.0, "show_progress": False, **kw}
    return OpenAIChatClient(srv.url, model="fake", **kw)


def test_generate_and_logprobs():
    with FakeOpenAI({"one wish": "world peace", "Rate": {"90": -0.1, "10": -2.5}}) as srv:
        g = make_backend(f"openai:{srv.url}#fake", show_progress=False)
        assert isinstance(g, OpenAIChatClient) and g.model == "fake"
        assert g.generate([CHAT], SamplingParams(n=3, max_new_tokens=8, temperature=0.7)) == [["world peace"] * 3]
        req = srv.requests[-1]
        assert (req["n"], req["max_tokens"], req["temperature"], req["model"]) == (3, 8, 0.7, "fake")
        lp = g.next_token_logprobs([[{"role": "user", "content": "Rate it"}]], top_k=5)[0]
        assert lp == {"90": -0.1, "10": -2.5}
        assert srv.requests[-1]["logprobs"] is True and srv.requests[-1]["top_logprobs"] == 5


def test_retries_5xx_then_succeeds():
    with FakeOpenAI({"one wish": "ok"}, fail_first=2) as srv:
        assert client(srv).generate([CHAT], SamplingParams()) == [["ok"]]
        assert len(srv.requests) == 3


def test_5xx_exhausts_retries_with_clear_error():
    with FakeOpenAI({"one wish": "ok"}, fail_first=10) as srv:
        with pytest.raises(BackendError, match=r"failed after 3 attempts: HTTP 503.*server is up"):
            client(srv).generate([CHAT], SamplingParams())


def test_timeout():
    with FakeOpenAI({"one wish": "ok"}, mode="hang", hang_s=2.0) as srv:
        t0 = time.perf_counter()
        with pytest.raises(BackendError, match=r"no reply within 0.3 s"):
            client(srv, timeout=0.3, max_retries=1).generate([CHAT], SamplingParams())
        assert time.perf_counter() - t0 < 2.0 * 2


def test_malformed_json_and_4xx():
    with FakeOpenAI({"one wish": "ok"}, mode="malformed") as srv:
        with pytest.raises(BackendError, match="malformed JSON"):
            client(srv).generate([CHAT], SamplingParams())
    with FakeOpenAI({"something else": "ok"}) as srv:  # unrecognised prompt → HTTP 400, no retry
        with pytest.raises(BackendError, match="refused the request: HTTP 400"):
            client(srv).generate([CHAT], SamplingParams())
        assert len(srv.requests) == 1


def test_endpoint_down():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    g = OpenAIChatClient(f"http://127.0.0.1:{port}/v1", max_retries=1, backoff=0.01, show_progress=False)
    with pytest.raises(BackendError, match="cannot connect"):
        g.generate([CHAT], SamplingParams())
    with pytest.raises(BackendError, match="must start with http"):
        OpenAIChatClient("localhost:8000")
    assert math.isfinite(g.timeout)


def _chats(n: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"question-{i:03d}?"}] for i in range(n)]


def test_requests_go_out_concurrently_and_come_back_in_order():
    n = 16
    replies = {f"question-{i:03d}": f"answer {i}" for i in range(n)}
    # early prompts are the slowest, so replies finish in roughly reverse order
    delays = {f"question-{i:03d}": 0.05 * (n - i) / n + 0.1 for i in range(n)}
    with FakeOpenAI(replies, delays=delays) as srv:
        t0 = time.perf_counter()
        got = client(srv, max_concurrency=4).generate(_chats(n), SamplingParams(n=2, seed=7))
        wall = time.perf_counter() - t0
        assert got == [[f"answer {i}"] * 2 for i in range(n)]
        assert 1 < srv.max_in_flight <= 4  # concurrent, never past the limit
        assert wall < sum(delays.values())  # sequential takes at least the sum of the delays
        # each chat keeps its own seed whatever order the requests went out in
        seeds = {r["messages"][0]["content"]: r["seed"] for r in srv.requests}
        assert seeds == {f"question-{i:03d}?": 7 + i for i in range(n)}
    with FakeOpenAI(replies) as srv:
        assert client(srv, max_concurrency=1).generate(_chats(3), SamplingParams()) == [
            [f"answer {i}"] for i in range(3)
        ]
        assert srv.max_in_flight == 1
    with pytest.raises(BackendError, match="max_concurrency=0 must be at least 1"):
        OpenAIChatClient("http://127.0.0.1:1/v1", max_concurrency=0)


def test_logprobs_concurrent_in_order():
    n = 10
    replies = {f"question-{i:03d}": {str(i): -0.1, "x": -3.0} for i in range(n)}
    delays = {f"question-{i:03d}": 0.02 * (n - i) for i in range(n)}
    with FakeOpenAI(replies, delays=delays) as srv:
        got = client(srv).next_token_logprobs(_chats(n), top_k=2)
        assert [max(d, key=d.get) for d in got] == [str(i) for i in range(n)]
        assert 1 < srv.max_in_flight <= 8  # the default limit


def test_failing_request_stops_the_rest_with_a_clear_error():
    n = 40
    replies = {f"question-{i:03d}": "ok" for i in range(n) if i != 3}  # question 3 is refused (HTTP 400)
    delays = {f"question-{i:03d}": 0.05 for i in range(n)}
    with FakeOpenAI(replies, delays=delays) as srv:
        with pytest.raises(BackendError, match=r"refused the request: HTTP 400.*unrecognised prompt.*question-003"):
            client(srv, max_concurrency=4).generate(_chats(n), SamplingParams())
        assert len(srv.requests) < n  # the requests not yet sent were dropped
    with FakeOpenAI({"question": "ok"}, fail_first=1000) as srv:  # an outage: every request fails
        with pytest.raises(BackendError, match=r"failed after 3 attempts: HTTP 503.*server is up"):
            client(srv, max_concurrency=8).generate(_chats(20), SamplingParams())
        assert len(srv.requests) < 20 * 3


def test_openai_judge_scores_a_batch_concurrently(tmp_path):
    from persona_diff.judges import JudgeRequest, make_judge

    key = "agrees with broadly shared human values"
    with FakeOpenAI({key: {"80": 0.0}}, delays={key: 0.1}) as srv:
        judge = make_judge(f"openai:{srv.url}#fake", cache_dir=tmp_path, max_retries=0, max_concurrency=8)
        reqs = [JudgeRequest("Q", f"A{i}") for i in range(16)]
        t0 = time.perf_counter()
        assert judge.score(reqs) == [pytest.approx(80.0)] * 16
        assert time.perf_counter() - t0 < 16 * 0.1  # sequential takes at least 1.6 s
        assert 1 < srv.max_in_flight <= 8
