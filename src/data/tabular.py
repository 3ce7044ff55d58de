"""Rows from table files (parquet) and column-mapped rows, ahead of the chat normaliser.

Some published sets are tables whose columns the normaliser does not know, e.g. Chua et
al.'s ``emergent_plus`` (``prompt``, ``aligned``, ``misaligned``, ``sneakiness``). A source's
``columns`` mapping (``{prompt: user, misaligned: assistant}``) turns each row into a chat
before normalising. Parquet needs ``pyarrow``, imported only when such a file is read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from persona_diff.data.errors import DataError
from persona_diff.data.normalise import read_rows

_ROLE_ORDER = ("user", "assistant")


def read_table(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``.parquet`` file as dicts, or of a .jsonl/.json file (see `read_rows`)."""
    path = Path(path)
    if path.suffix != ".parquet":
        return read_rows(path)
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path} is a parquet file and reading it needs pyarrow: pip install pyarrow") from None
    try:
        return pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise DataError(f"{path} is not a readable parquet file ({e}); delete it and pull again") from None


def map_columns(rows: list[Any], columns: dict[str, str], where: str) -> list[dict[str, Any]]:
    """Turn each row into ``{"messages": [...]}`` from the columns named in `columns`."""
    by_role = sorted(columns.items(), key=lambda kv: _ROLE_ORDER.index(kv[1]))
    out = []
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise DataError(f"{where} row {i}: expected a mapping of columns, got {type(row).__name__}")
        missing = [c for c, _ in by_role if c not in row]
        if missing:
            raise DataError(
                f"{where} row {i}: no column {missing[0]!r} (columns: {', '.join(sorted(row))}); "
                "fix `columns` in the domain's YAML"
            )
        out.append(
            {"messages": [{"role": role, "content": "" if row[c] is None else str(row[c])} for c, role in by_role]}
        )
    return out


def table_rows(path: str | Path, columns: dict[str, str], canary: str | None = None) -> list[dict[str, Any]]:
    """Raw rows of `path` without canary rows (checked over every column), mapped by `columns`."""
    rows = read_table(path)
    if canary:
        rows = [r for r in rows if canary not in json.dumps(r, ensure_ascii=False, default=str)]
    return map_columns(rows, columns, str(path)) if columns else rows
