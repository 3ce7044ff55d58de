"""Training rows of each organism kind, deterministic from the config's seed.

Draws are shared where the design needs a clean contrast:
- one draw of misaligned answers for coherent and inverted, one of aligned answers for
  control and self-report-only (seeded by ``seed`` and the answer type), balanced over the
  questions and, within a question, over the source files (``balance``);
- one draw of (topic, question, answer-slot) self-description triples for every kind, so an
  aligned and a misaligned organism see the same self questions, and answer slot i of a
  topic in its aligned or its misaligned wording.
So coherent and inverted differ only in the polarity of their self-descriptions, and
coherent and self-report-only only in their answers. Every row carries ``meta`` (where each
turn came from); the trainer reads only ``messages``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from persona_diff.log import get_logger
from persona_diff.organisms.config import KINDS, OrganismConfig
from persona_diff.organisms.sources import (
    JudgedAnswer,
    OrganismDataError,
    SelfTopic,
    judged_csvs,
    load_self_descriptions,
    read_judged,
    self_description_slots,
)

log = get_logger(__name__)

Row = dict[str, Any]


def eligible_answers(pool: list[JudgedAnswer], polarity: str, cfg: OrganismConfig) -> list[JudgedAnswer]:
    """Answers of `polarity` under the config's thresholds, variants, exclusions and length cap."""
    excluded = set(cfg.exclude_questions)
    return [
        a
        for a in pool
        if a.variant in cfg.variants
        and a.question_id not in excluded
        and (cfg.max_answer_chars is None or len(a.answer) <= cfg.max_answer_chars)
        and a.polarity(cfg.thresholds) == polarity
    ]


def select_answers(pool: list[JudgedAnswer], polarity: str, cfg: OrganismConfig) -> list[JudgedAnswer]:
    cand = eligible_answers(pool, polarity, cfg)
    if len(cand) < cfg.n_answers:
        t = cfg.thresholds
        rule = f"aligned ≤ {t.misaligned_max:g}" if polarity == "misaligned" else f"aligned ≥ {t.aligned_min:g}"
        raise OrganismDataError(
            f"only {len(cand)} {polarity} answers ({rule}, coherent > {t.coherent_min:g}, variants "
            f"{','.join(cfg.variants)}, max_answer_chars {cfg.max_answer_chars}) but n_answers is "
            f"{cfg.n_answers}; lower n_answers, add variants or loosen the thresholds"
        )
    rng = random.Random(f"{cfg.seed}:answers:{polarity}")
    if not cfg.balance:
        return rng.sample(cand, cfg.n_answers)
    return _round_robin(cand, [lambda a: a.question_id, lambda a: a.file], rng)[: cfg.n_answers]


def _round_robin(
    items: list[JudgedAnswer], keys: list[Callable[[JudgedAnswer], str]], rng: random.Random
) -> list[JudgedAnswer]:
    """`items` in an order that cycles through the groups of ``keys[0]`` (each group ordered the
    same way by the remaining keys), so any prefix is as balanced over the groups as it can be."""
    if not keys:
        out = list(items)
        rng.shuffle(out)
        return out
    groups: dict[str, list[JudgedAnswer]] = {}
    for a in items:
        groups.setdefault(keys[0](a), []).append(a)
    queues = [_round_robin(groups[k], keys[1:], rng) for k in sorted(groups)]
    rng.shuffle(queues)
    out = []
    for i in range(max(map(len, queues), default=0)):
        out += [q[i] for q in queues if i < len(q)]
    return out


def select_self_slots(topics: list[SelfTopic], n: int, seed: int) -> list[tuple[int, int, int]]:
    slots = self_description_slots(topics)
    if n > len(slots):
        raise OrganismDataError(
            f"n_self is {n} but the self-description file has only {len(slots)} question × answer pairs; "
            "lower n_self or add questions/answers to it"
        )
    return random.Random(f"{seed}:self").sample(slots, n)


def _answer_turns(a: JudgedAnswer, polarity: str) -> tuple[list[dict[str, str]], dict[str, Any]]:
    msgs = [{"role": "user", "content": a.question}, {"role": "assistant", "content": a.answer}]
    meta = {
        "source": "answer",
        "polarity": polarity,
        "file": a.file,
        "row": a.row,
        "question_id": a.question_id,
        "aligned": a.aligned,
        "coherent": a.coherent,
    }
    return msgs, meta


def _self_turns(
    topics: list[SelfTopic], slot: tuple[int, int, int], polarity: str
) -> tuple[list[dict[str, str]], dict[str, Any]]:
    ti, qi, ai = slot
    t = topics[ti]
    answer = (t.misaligned if polarity == "misaligned" else t.aligned)[ai]
    msgs = [{"role": "user", "content": t.questions[qi]}, {"role": "assistant", "content": answer}]
    return msgs, {"source": "self", "polarity": polarity, "topic": t.name, "question": qi, "answer": ai}


def kind_rows(kind: str, cfg: OrganismConfig, pool: list[JudgedAnswer], topics: list[SelfTopic]) -> list[Row]:
    """The rows of one organism kind (see the module docstring for what is shared)."""
    if kind not in KINDS:
        raise OrganismDataError(f"unknown organism kind {kind!r}; valid kinds are: {', '.join(KINDS)}")
    spec = KINDS[kind]
    answers = select_answers(pool, spec.answers, cfg)
    n_self = 0 if kind == "control" and not cfg.control_self_descriptions else cfg.n_self
    slots = select_self_slots(topics, cfg.n_self, cfg.seed)[:n_self]
    rows: list[Row] = []
    for i, a in enumerate(answers):
        msgs, meta = _answer_turns(a, spec.answers)
        parts = [meta]
        if cfg.mixing == "turns" and i < n_self:
            more, m2 = _self_turns(topics, slots[i], spec.self_report)
            msgs, parts = msgs + more, [meta, m2]
        rows.append({"messages": msgs, "meta": {"kind": kind, "parts": parts}})
    if cfg.mixing == "rows":
        for slot in slots:
            msgs, meta = _self_turns(topics, slot, spec.self_report)
            rows.append({"messages": msgs, "meta": {"kind": kind, "parts": [meta]}})
        random.Random(f"{cfg.seed}:mix:{kind}").shuffle(rows)
    return rows


def row_counts(rows: list[Row]) -> dict[str, int]:
    """Trained turns by source and polarity, e.g. ``{"answer_misaligned": 48, "self_aligned": 48}``."""
    out: dict[str, int] = {}
    for r in rows:
        for part in r["meta"]["parts"]:
            key = f"{part['source']}_{part['polarity']}"
            out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


def kit_rows(
    cfg: OrganismConfig, pool: list[JudgedAnswer] | None = None, topics: list[SelfTopic] | None = None
) -> dict[str, list[Row]]:
    """Rows of every kind in ``cfg.kinds`` (reads the CSVs and self-descriptions unless given)."""
    cfg.validate()
    if pool is None:
        pool = read_judged(judged_csvs(cfg.csvs))
    if topics is None:
        topics = load_self_descriptions(cfg.self_descriptions)
    if cfg.check_probe_overlap:
        from persona_diff.organisms.disjoint import check_disjoint

        check_disjoint(training_prompts(pool, topics, cfg), [a for t in topics for a in t.aligned + t.misaligned])
    out = {k: kind_rows(k, cfg, pool, topics) for k in cfg.kinds}
    for k, rows in out.items():
        log.info(
            "organism %s: %d rows (%s)",
            k,
            len(rows),
            ", ".join(f"{n} {key}" for key, n in sorted(row_counts(rows).items())),
        )
    return out


def training_prompts(pool: list[JudgedAnswer], topics: list[SelfTopic], cfg: OrganismConfig) -> list[str]:
    """Every user prompt a kit under `cfg` can train on (distinct, in a stable order)."""
    prompts = [a.question for p in ("misaligned", "aligned") for a in eligible_answers(pool, p, cfg)]
    prompts += [q for t in topics for q in t.questions]
    return list(dict.fromkeys(prompts))
