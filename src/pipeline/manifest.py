"""Run manifest: library versions, seeds, and fingerprints of models and data."""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import platform
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from persona_diff.fileio import sha256_file

_LIBS = ("persona-diff", "torch", "transformers", "peft", "nnsight", "sae-lens", "numpy", "safetensors")
_CHUNK = 1 << 20


def fingerprint(path: str | Path) -> dict[str, Any]:
    """A cheap, stable identity for a model folder or file.

    Small files (configs, adapters, tokenizers: < 64 MiB) are hashed in full; large weight
    files contribute their size and the hash of their first and last MiB, so a 32B
    checkpoint is fingerprinted in milliseconds. Hub ids (not on disk) are recorded as-is.
    """
    p = Path(path)
    if not p.exists():
        return {"id": str(path), "on_disk": False}
    files = sorted(x for x in (p.rglob("*") if p.is_dir() else [p]) if x.is_file())
    h = hashlib.sha256()
    for f in files:
        size = f.stat().st_size
        h.update(f"{f.relative_to(p) if p.is_dir() else f.name}:{size}".encode())
        if size < 64 * _CHUNK:
            h.update(sha256_file(f).encode())
        else:
            with f.open("rb") as fh:
                h.update(fh.read(_CHUNK))
                fh.seek(-_CHUNK, 2)
                h.update(fh.read(_CHUNK))
    return {"path": str(p), "fingerprint": h.hexdigest()[:16], "files": len(files)}


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": sys.version.split()[0], "platform": platform.platform()}
    for lib in _LIBS:
        try:
            out[lib] = md.version(lib)
        except md.PackageNotFoundError:
            out[lib] = None
    return out


def build_manifest(
    models: dict[str, str], data: Mapping[str, str | Path], seed: int, config_hash: str
) -> dict[str, Any]:
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config_hash": config_hash,
        "seed": seed,
        "versions": versions(),
        "models": {k: fingerprint(v) for k, v in models.items()},
        "data": {k: fingerprint(v) for k, v in data.items()},
    }
