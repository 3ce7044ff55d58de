"""HTTP(S) download with sha256 verification and resume of partial files (HTTP Range).

A download writes to ``DEST.part``; a rerun after a dropped connection asks the server for
the missing bytes only (``Range: bytes=N-``) and starts over when the server ignores ranges.
The finished file is renamed into place only after its hash checked out, so ``DEST`` is
either absent or complete.
"""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from persona_diff.data.errors import ChecksumError, DownloadError
from persona_diff.fileio import sha256_file
from persona_diff.log import get_logger

log = get_logger(__name__)

_CHUNK = 1 << 16


@dataclass
class DownloadResult:
    path: Path
    sha256: str
    verified: bool  # False when no expected hash was given (the hash is only recorded)
    resumed_from: int = 0  # bytes already on disk when this call started


def _open(url: str, start: int, timeout: float):
    req = urllib.request.Request(url, headers={"User-Agent": "persona-diff"})
    if start > 0:
        req.add_header("Range", f"bytes={start}-")
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start > 0:  # range past the end: the part file is complete or stale
            return None
        raise DownloadError(
            f"download of {url} failed: HTTP {e.code} {e.reason}; check the URL in its registry "
            "YAML (configs/domains/ or configs/reference/) or try again later"
        ) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(
            f"cannot reach {url} ({reason}); check the network or the URL, then rerun (partial downloads resume)"
        ) from None


def download(url: str, dest: str | Path, sha256: str | None = None, timeout: float = 60.0) -> DownloadResult:
    """Fetch `url` to `dest`, resuming ``dest.part``; verify against `sha256` when given."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file():
        got = sha256_file(dest)
        if sha256 is None or got == sha256:
            return DownloadResult(dest, got, sha256 is not None)
        log.warning("%s exists but its hash %s differs from %s; downloading again", dest, got, sha256)
        dest.unlink()
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.is_file() else 0
    resp = _open(url, start, timeout)
    if resp is None:  # 416: restart from scratch
        part.unlink(missing_ok=True)
        start = 0
        resp = _open(url, 0, timeout)
    with resp:
        status = getattr(resp, "status", 200)
        if start > 0 and status != 206:
            log.info("server ignored the range request for %s; downloading from the start", url)
            start = 0
        if start > 0:
            log.info("resuming %s from byte %d", url, start)
        mode = "ab" if start > 0 else "wb"
        try:
            with open(part, mode) as f:
                while True:
                    block = resp.read(_CHUNK)
                    if not block:
                        break
                    f.write(block)
        except (http.client.IncompleteRead, OSError) as e:
            raise DownloadError(
                f"connection to {url} dropped after {part.stat().st_size} bytes ({type(e).__name__}); "
                "rerun the same command to resume from there"
            ) from None
        expected_len = resp.headers.get("Content-Length")
    if expected_len is not None and part.stat().st_size != start + int(expected_len):
        raise DownloadError(
            f"download of {url} stopped early ({part.stat().st_size} of {start + int(expected_len)} "
            "bytes); rerun the same command to resume"
        )
    got = sha256_file(part)
    if sha256 is not None and got != sha256.lower():
        part.unlink()
        raise ChecksumError(
            f"{url} has sha256 {got}, expected {sha256}; the file changed upstream or is corrupt. "
            "The bad copy was deleted: rerun to fetch it again, or update sha256 in its registry "
            "YAML (configs/domains/ or configs/reference/) if the authors published a new version"
        )
    os.replace(part, dest)
    if sha256 is None:
        log.warning("no sha256 recorded for %s: NOT verified; its hash is %s", url, got)
    return DownloadResult(dest, got, sha256 is not None, resumed_from=start)
