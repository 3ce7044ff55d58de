"""The downloader against a local HTTP server: checksums, HTTP errors, resume via Range."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from persona_diff.data import ChecksumError, DownloadError, pull_domain
from persona_diff.data.download import download
from persona_diff.data.registry import DomainSpec, SourceSpec

PAYLOAD = b"".join(
    json.dumps(
        {
            "messages": [
                {"role": "user", "content": f"question {i}"},
                {"role": "assistant", "content": f"answer {i}" * 20},
            ]
        }
    ).encode()
    + b"\n"
    for i in range(300)
)


class _Handler(BaseHTTPRequestHandler):
    log: list[tuple[str, str | None]] = []
    cut_next = False

    def log_message(self, *a):  # quiet
        pass

    def do_GET(self):
        rng = self.headers.get("Range")
        type(self).log.append((self.path, rng))
        if self.path == "/missing.jsonl":
            self.send_error(404, "Not Found")
            return
        if self.path == "/boom.jsonl":
            self.send_error(500, "Server Error")
            return
        start = int(rng.split("=")[1].split("-")[0]) if rng and self.path != "/norange.jsonl" else 0
        body = PAYLOAD[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if type(self).cut_next:  # drop the connection half way
            type(self).cut_next = False
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture()
def server():
    _Handler.log = []
    _Handler.cut_next = False
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_download_verifies_checksum(server, tmp_path):
    res = download(f"{server}/data.jsonl", tmp_path / "d.jsonl", SHA)
    assert res.verified and res.sha256 == SHA and res.path.read_bytes() == PAYLOAD


def test_download_without_hash_records_it(server, tmp_path):
    res = download(f"{server}/data.jsonl", tmp_path / "d.jsonl", None)
    assert not res.verified and res.sha256 == hashlib.sha256(res.path.read_bytes()).hexdigest()


def test_checksum_mismatch_deletes_and_explains(server, tmp_path):
    with pytest.raises(ChecksumError) as e:
        download(f"{server}/data.jsonl", tmp_path / "d.jsonl", "ab" * 32)
    assert SHA in str(e.value) and "ab" * 32 in str(e.value)
    assert not list(tmp_path.iterdir())  # neither the file nor a .part is left


@pytest.mark.parametrize("path,code", [("/missing.jsonl", 404), ("/boom.jsonl", 500)])
def test_http_errors(server, tmp_path, path, code):
    with pytest.raises(DownloadError, match=f"HTTP {code}"):
        download(f"{server}{path}", tmp_path / "d.jsonl", None)
    assert not (tmp_path / "d.jsonl").exists()


def test_unreachable_host(tmp_path):
    with pytest.raises(DownloadError, match="cannot reach"):
        download("http://127.0.0.1:9/x.jsonl", tmp_path / "d.jsonl", None, timeout=2)


def test_resume_after_dropped_connection(server, tmp_path):
    dest = tmp_path / "d.jsonl"
    _Handler.cut_next = True
    with pytest.raises(DownloadError, match="resume"):
        download(f"{server}/data.jsonl", dest, SHA)
    part = dest.with_name("d.jsonl.part")
    assert not dest.exists() and 0 < part.stat().st_size < len(PAYLOAD)
    have = part.stat().st_size
    res = download(f"{server}/data.jsonl", dest, SHA)
    assert res.resumed_from == have and res.verified
    assert dest.read_bytes() == PAYLOAD
    assert _Handler.log[-1] == ("/data.jsonl", f"bytes={have}-")


def test_server_ignoring_range_restarts(server, tmp_path):
    dest = tmp_path / "d.jsonl"
    dest.with_name("d.jsonl.part").write_bytes(b"garbage that is not the file")
    res = download(f"{server}/norange.jsonl", dest, SHA)
    assert res.resumed_from == 0 and dest.read_bytes() == PAYLOAD


def test_pull_domain_from_local_server(server, tmp_path):
    reg = {"toy": DomainSpec(name="toy", sources=[SourceSpec(url=f"{server}/data.jsonl", sha256=SHA)], rows=300)}
    out = pull_domain("toy", root=tmp_path, registry=reg)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 300 and rows[7]["messages"][0]["content"] == "question 7"
    meta = json.loads((tmp_path / "toy.meta.json").read_text())
    assert meta["sources"][0] == {"url": f"{server}/data.jsonl", "sha256": SHA, "verified": True}
