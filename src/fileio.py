"""File I/O every stage shares: JSONL rows, atomic writes, file hashes.

One behaviour for a damaged JSONL file everywhere: a last line cut short (a writer killed
mid-line) is dropped with a warning, so resumable files resume; a bad line anywhere else
means the file is corrupt, and the error names the file and the line.
Atomic writes go through a temporary file in the same folder and `os.replace`, so a reader
never sees half a file.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from persona_diff.errors import PersonaDiffError
from persona_diff.log import get_logger

log = get_logger(__name__)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file ([] when it does not exist); blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if all(not rest.strip() for rest in lines[i + 1 :]):
                log.warning("%s: last line is cut short (an interrupted write); it is ignored", path)
                break
            raise PersonaDiffError(
                f"{path}, line {i + 1}, is not valid JSON ({e.msg}); the file is corrupt: "
                "delete it (or that line) and rerun to recompute it"
            ) from None
    return rows


def read_yaml(
    path: str | Path, what: str, fix: str, error: type[PersonaDiffError] = PersonaDiffError
) -> dict[str, Any]:
    """A YAML file that must hold a mapping (an empty file reads as {}). `what` names the file
    in errors ("config file"), `fix` says what to do when it does not exist; errors are `error`."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise error(f"{what} {p} does not exist; {fix}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise error(f"{what} {p} is not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error(f"{what} {p} must hold a mapping at top level, not a {type(data).__name__}")
    return data


def read_csv_rows(
    path: str | Path, required: Sequence[str], layout: str, error: type[PersonaDiffError] = PersonaDiffError
) -> list[dict[str, str]]:
    """Rows of a CSV with a header that must name every column of `required`; `layout` says
    what such a file holds, for the error. Fields of any size (judged answers can be long)."""
    p = Path(path)
    if not p.is_file():
        raise error(f"{p} does not exist; pass an existing CSV ({layout})")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with p.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        cols = list(reader.fieldnames or [])
        missing = [c for c in required if c not in cols]
        if missing:
            raise error(
                f"{p} lacks the column(s) {', '.join(missing)} (it has: {', '.join(cols) or 'none'}); "
                f"it should hold {layout}"
            )
        return list(reader)


def read_artifact(
    folder: str | Path, cfg_name: str, tensors_name: str, fix: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An artifact folder's JSON config and its safetensors tensors (torch); `fix` ends the error
    when either is missing or unreadable ("run `persona-diff diff` first")."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(folder)
    try:
        cfg = json.loads((p / cfg_name).read_text())
        tensors = load_file(str(p / tensors_name))
    except (OSError, json.JSONDecodeError, SafetensorError) as e:
        raise PersonaDiffError(f"{p} holds no readable {cfg_name} + {tensors_name} ({e}); {fix}") from None
    return cfg, tensors


def append_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Append rows, one JSON object a line (flushed as one write)."""
    text = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows)
    if text:
        with Path(path).open("a", encoding="utf-8") as f:
            f.write(text)


def atomic_write(path: str | Path, data: str | bytes, mode: int | None = None) -> Path:
    """Write `data` to `path` through a temporary file and a rename; `mode`: permissions."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, data: Any) -> Path:
    """`data` as indented JSON, atomically (values JSON does not know are written as str)."""
    return atomic_write(path, json.dumps(data, indent=1, default=str))


def write_jsonl(rows: Iterable[dict[str, Any]], path: str | Path, mode: int | None = None) -> Path:
    """All `rows` as a new JSONL file, atomically."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return atomic_write(path, text, mode)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
