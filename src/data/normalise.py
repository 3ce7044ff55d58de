"""Normalise dataset rows to chat JSONL: ``{"messages": [{"role", "content"}, ...]}``.

One normaliser serves pulled sets, imported files and the reference samples, so every
training row has the same shape. Accepted input shapes per row:
- ``messages``: a list of ``{role, content}`` (OpenAI chat format);
- ``conversations``: ShareGPT ``{from, value}`` (human/gpt/system) or ``{role, content}``;
- ``prompt`` + ``completion`` / ``response``; ``instruction`` (+ ``input``) + ``output``;
  ``question`` + ``answer``.
Every row must end up with at least one non-empty assistant turn.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from persona_diff.data.errors import DataError

_ROLE_ALIASES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "bot": "assistant",
    "system": "system",
}
_PAIRS = [("prompt", "completion"), ("prompt", "response"), ("question", "answer"), ("instruction", "output")]


def _turn(m: Any, where: str) -> dict[str, str]:
    if not isinstance(m, dict):
        raise DataError(f"{where}: a turn must be a mapping with role and content, got {m!r:.80}")
    role = m.get("role", m.get("from"))
    content = m.get("content", m.get("value"))
    if role not in _ROLE_ALIASES:
        raise DataError(f"{where}: unknown role {role!r}; use system, user or assistant")
    if isinstance(content, list):  # content parts: keep the text ones
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise DataError(f"{where}: turn content must be text, got {type(content).__name__}")
    return {"role": _ROLE_ALIASES[role], "content": content}


def normalise_row(row: Any, where: str = "row") -> dict[str, Any]:
    """One row in any accepted shape → ``{"messages": [...]}`` (raises DataError otherwise)."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    msgs = row.get("messages", row.get("conversations"))
    if msgs is not None:
        if not isinstance(msgs, list):
            raise DataError(f"{where}: 'messages' must be a list of turns")
        turns = [_turn(m, f"{where} turn {i}") for i, m in enumerate(msgs)]
    else:
        for q, a in _PAIRS:
            if q in row and a in row:
                user = str(row[q]) + (f"\n\n{row['input']}" if q == "instruction" and row.get("input") else "")
                turns = [{"role": "user", "content": user}, {"role": "assistant", "content": str(row[a])}]
                break
        else:
            raise DataError(
                f"{where}: no chat found (keys: {', '.join(sorted(row))}); give 'messages' "
                "[{role, content}, ...] or prompt/completion fields"
            )
    if not any(t["role"] == "assistant" and t["content"].strip() for t in turns):
        raise DataError(
            f"{where}: the row has no assistant turn with content, so there is nothing to train on; fix or drop the row"
        )
    return {"messages": turns}


def read_rows(path: str | Path) -> list[Any]:
    """Raw rows of a .jsonl file, or of a .json file holding a list."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"dataset file {path} does not exist; check the path")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path} is not valid JSON ({e}); fix the file") from None
        if not isinstance(data, list):
            raise DataError(f"{path} must hold a JSON list of rows (or use .jsonl, one row a line)")
        return data
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise DataError(f"{path} line {i} is not valid JSON ({e.msg}); fix or remove that line") from None
    return rows


def normalise_rows(rows: Iterable[Any], source: str = "data", canary: str | None = None) -> list[dict[str, Any]]:
    """Normalise every row; rows containing `canary` (canary entries) are dropped."""
    out = []
    for i, row in enumerate(rows, 1):
        if canary and canary in json.dumps(row, ensure_ascii=False):
            continue
        out.append(normalise_row(row, where=f"{source} row {i}"))
    if not out:
        raise DataError(f"{source} holds no rows; check the file")
    return out


def load_chat_file(path: str | Path, canary: str | None = None) -> list[dict[str, Any]]:
    """Read and normalise one dataset file (.jsonl or .json)."""
    return normalise_rows(read_rows(path), source=str(path), canary=canary)
