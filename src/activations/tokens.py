"""Token streams: what text goes through both models of a pair, and which positions count.

A `TokenStream` is one sequence of token ids plus where its answer starts. Streams are built
from an answers JSONL (`generation.runner.generate_answers` rows: question, system, answer),
from bare prompts, or from a plain text / chat corpus file. The same streams go through the
base and the fine-tuned model, so every captured token is paired.

Positions (`POSITIONS`):
- ``all``: every real token;
- ``prompt``: tokens before the answer;
- ``answer``: tokens of the answer;
- ``last_prompt``: the last prompt token (where the model decides how to answer).

The first token of a stream (BOS / attention sink, huge norm) and padding are never kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from persona_diff.errors import PersonaDiffError
from persona_diff.fileio import read_jsonl
from persona_diff.generation.hf import render_chat

POSITIONS = ("all", "prompt", "answer", "last_prompt")


@dataclass
class TokenStream:
    """One token sequence; tokens ``[prompt_len:]`` are the answer (none for plain text)."""

    input_ids: list[int]
    prompt_len: int
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.input_ids)


def check_positions(positions: str) -> str:
    if positions not in POSITIONS:
        raise PersonaDiffError(f"positions {positions!r} is unknown; use one of {', '.join(POSITIONS)}")
    return positions


def position_mask(stream: TokenStream, positions: str, bos_id: int | None = None) -> torch.Tensor:
    """Bool mask [len(stream)] of the tokens to keep (first token and BOS always dropped)."""
    n = len(stream)
    idx = torch.arange(n)
    p = stream.prompt_len
    if positions == "all":
        keep = torch.ones(n, dtype=torch.bool)
    elif positions == "prompt":
        keep = idx < p
    elif positions == "answer":
        keep = idx >= p
    elif positions == "last_prompt":
        keep = idx == p - 1
    else:
        check_positions(positions)
        raise AssertionError
    keep[0] = False  # BOS / attention sink
    if bos_id is not None:
        keep &= torch.tensor(stream.input_ids) != bos_id
    return keep


def _chat(question: str, system: str | None) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": question}]


def stream_from_chat(
    tokenizer: Any,
    question: str,
    answer: str | None,
    system: str | None = None,
    max_tokens: int = 512,
    meta: dict[str, Any] | None = None,
) -> TokenStream:
    """Prompt (chat template with generation prompt) followed by the answer's tokens."""
    prompt = render_chat(tokenizer, _chat(question, system), add_generation_prompt=True)
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    a_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] if answer else []
    ids = (p_ids + a_ids)[:max_tokens]
    return TokenStream(ids, min(len(p_ids), len(ids)), dict(meta or {}))


def streams_from_answers(
    tokenizer: Any,
    rows: list[dict[str, Any]] | str | Path,
    max_tokens: int = 512,
    max_rows: int | None = None,
) -> list[TokenStream]:
    """Streams from answer rows (dicts or a JSONL path) with `question` and `answer` keys.

    Extra keys (question_id, aligned, coherent, label, ...) are kept in `meta`, so a judged
    file can drive the contrastive mean-diff.
    """
    if isinstance(rows, str | Path):
        rows = read_rows(Path(rows))
    out = []
    for i, r in enumerate(rows[:max_rows] if max_rows else rows):
        if "question" not in r or "answer" not in r:
            raise PersonaDiffError(
                f"answers row {i} lacks 'question' or 'answer' (keys: {sorted(r)}); "
                "pass the JSONL written by `persona-diff generate`"
            )
        meta = {k: v for k, v in r.items() if k not in ("question", "answer", "system")}
        out.append(stream_from_chat(tokenizer, r["question"], r["answer"], r.get("system"), max_tokens, meta))
    return out


def streams_from_prompts(tokenizer: Any, questions: list[str], system: str | None = None) -> list[TokenStream]:
    """Prompt-only streams (for ``last_prompt`` / ``prompt`` positions)."""
    return [stream_from_chat(tokenizer, q, None, system) for q in questions]


def streams_from_texts(tokenizer: Any, texts: list[str], max_tokens: int = 512) -> list[TokenStream]:
    """Plain text: all tokens count as 'answer' (prompt_len 0 → prompt positions are empty)."""
    out = []
    for t in texts:
        ids = tokenizer(t, add_special_tokens=True)["input_ids"][:max_tokens]
        out.append(TokenStream(ids, 0))
    return out


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise PersonaDiffError(f"token file {path} does not exist; pass an answers JSONL or a text file")
    return read_jsonl(path)


def streams_from_file(tokenizer: Any, path: str | Path, max_tokens: int = 512) -> list[TokenStream]:
    """A `.jsonl` of answers ({question, answer}), of chats ({messages}) or texts ({text}); else plain text lines."""
    path = Path(path)
    if path.suffix != ".jsonl":
        if not path.is_file():
            raise PersonaDiffError(f"token file {path} does not exist; pass an answers JSONL or a text file")
        lines = [x for x in path.read_text().splitlines() if x.strip()]
        return streams_from_texts(tokenizer, lines, max_tokens)
    rows = read_rows(path)
    if rows and "messages" in rows[0]:
        out = []
        for r in rows:
            msgs = r["messages"]
            if msgs and msgs[-1]["role"] == "assistant":
                prompt = render_chat(tokenizer, msgs[:-1], add_generation_prompt=True)
                p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
                a_ids = tokenizer(msgs[-1]["content"], add_special_tokens=False)["input_ids"]
                ids = (p_ids + a_ids)[:max_tokens]
                out.append(TokenStream(ids, min(len(p_ids), len(ids))))
            else:
                text = render_chat(tokenizer, msgs, add_generation_prompt=False)
                out.append(TokenStream(tokenizer(text, add_special_tokens=False)["input_ids"][:max_tokens], 0))
        return out
    if rows and "text" in rows[0]:
        return streams_from_texts(tokenizer, [r["text"] for r in rows], max_tokens)
    return streams_from_answers(tokenizer, rows, max_tokens)
