"""Reading and writing the JSON files of a run directory (through `persona_diff.fileio`).

Writes are atomic and strict JSON (NaN and infinities become null, so a browser or `jq`
reads every file). Reads treat a missing file as None and an invalid one as missing, with a
warning: a report is still built from what is readable.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from persona_diff.errors import PersonaDiffError
from persona_diff.fileio import atomic_write
from persona_diff.fileio import read_jsonl as _read_jsonl
from persona_diff.log import get_logger

log = get_logger(__name__)


def json_clean(x: object) -> object:
    """NaN / inf floats → None, tuples → lists, recursively; anything else unknown → str."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if x is None or isinstance(x, str | int | bool):
        return x
    if isinstance(x, dict):
        return {str(k): json_clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_clean(v) for v in x]
    if hasattr(x, "item"):  # numpy / torch scalars
        return json_clean(x.item())
    return str(x)


def write_json(path: Path, data: object) -> None:
    atomic_write(path, json.dumps(json_clean(data), indent=1, allow_nan=False))


def read_json(path: Path) -> Any | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        log.warning("%s is not valid JSON (%s); treated as missing", path, e)
        return None


def read_jsonl(path: Path) -> list[dict[str, Any]] | None:
    """Rows of a JSONL file: None when it does not exist or is corrupt (a cut last line is
    dropped, `persona_diff.fileio.read_jsonl`)."""
    if not path.is_file():
        return None
    try:
        rows = _read_jsonl(path)
    except PersonaDiffError as e:
        log.warning("%s; treated as missing", e)
        return None
    return [r for r in rows if isinstance(r, dict)]
