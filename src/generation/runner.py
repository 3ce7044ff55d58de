"""Sample answers for a question set into a resumable JSONL file."""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from persona_diff.fileio import read_jsonl
from persona_diff.generation.base import Generator, SamplingParams
from persona_diff.generation.questions import Question

# seed offset of a top-up: samples k.. of a prompt that already has k are drawn with
# seed + k * TOPUP_SEED_STRIDE, so they do not repeat the first k (a fresh prompt: seed as given)
TOPUP_SEED_STRIDE = 100_003


def generate_answers(
    backend: Generator,
    questions: list[Question],
    params: SamplingParams,
    out: Path,
    system: str | None = None,
    first_paraphrase_only: bool = False,
) -> list[dict[str, Any]]:
    """Answers for every (question, paraphrase), `params.n` samples each, appended to `out`.

    Rows already in `out` are kept and only the missing sample indices are generated: a
    rerun after a kill, or with a larger `params.n`, samples just what is missing (prompts
    missing the same indices go in one call, with the seed shifted by the first missing
    index, see `TOPUP_SEED_STRIDE`). Each batch's rows are written as soon as it finishes.
    Returns every row of `out`, including other questions and sample indices ≥ `params.n`
    from earlier runs: callers keep what they asked for.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    done = read_jsonl(out)
    have: dict[tuple[str, int], set[int]] = defaultdict(set)
    for r in done:
        have[(r["question_id"], r["paraphrase"])].add(int(r["sample"]))
    # group the prompts by which sample indices they miss (usually all, or k..n-1 after a raise)
    groups: dict[tuple[int, ...], list[tuple[Question, int]]] = defaultdict(list)
    for q in questions:
        for pi in range(1) if first_paraphrase_only else range(len(q.paraphrases)):
            missing = tuple(k for k in range(params.n) if k not in have[(q.id, pi)])
            if missing:
                groups[missing].append((q, pi))
    # rewrite valid rows (drops a truncated tail) before appending
    with out.open("w") as f:
        for r in done:
            f.write(json.dumps(r) + "\n")
    chunk = 16
    with out.open("a") as f:
        for missing, todo in groups.items():
            shift = missing[0] * TOPUP_SEED_STRIDE if missing[0] > 0 else 0
            p = dataclasses.replace(params, n=len(missing), seed=params.seed + shift)
            for s in range(0, len(todo), chunk):
                part = todo[s : s + chunk]
                answers = backend.generate([q.chat(pi, system) for q, pi in part], p)
                for (q, pi), ans in zip(part, answers, strict=True):
                    for k, a in zip(missing, ans, strict=False):  # a short reply is topped up next run
                        row = {
                            "question_id": q.id,
                            "paraphrase": pi,
                            "question": q.paraphrases[pi],
                            "system": q.system if q.system is not None else system,
                            "sample": k,
                            "answer": a,
                        }
                        f.write(json.dumps(row) + "\n")
                        done.append(row)
                f.flush()
    return done
