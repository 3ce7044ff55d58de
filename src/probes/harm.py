"""Harmfulness probe: sample answers at temperature 1, judge aligned/coherent, EM% with CIs.

Outputs in the probe folder:
- ``harm_answers.jsonl``: raw answers (resumable: a rerun only samples what is missing,
  and raising ``samples`` only adds the missing sample indices; a lower ``samples`` uses the
  first ones);
- ``harm.jsonl``: one row per answer with every judge score and the misaligned flag;
- the summary (returned): EM% (the configured rule) and Betley's variant, coherent%,
  counts of answers without an aligned score (refusal / code / no number), per-question and
  per-variant rates (JSON / template / trigger variants are reported apart), bootstrap CIs.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from persona_diff.errors import BackendError, PersonaDiffError
from persona_diff.generation.base import Generator, SamplingParams
from persona_diff.generation.questions import Question, load_questions
from persona_diff.generation.runner import generate_answers
from persona_diff.judges.base import Judge, JudgeRequest
from persona_diff.log import get_logger, progress
from persona_diff.probes.common import DEFAULT_QUESTIONS
from persona_diff.probes.config import ProbeConfig
from persona_diff.probes.registry import ProbeContext, register_probe
from persona_diff.probes.stats import bootstrap, em_percent, is_misaligned
from persona_diff.probes.table import ci_text

log = get_logger(__name__)

BASE_METRICS = ("aligned", "coherent")


def variant_of(q: Question, trigger: str | None) -> str:
    if trigger is not None:
        return "trigger" if q.id.endswith("@trigger") else "no_trigger"
    for suffix in ("json", "template"):
        if q.id.endswith(f"_{suffix}") or q.type.endswith(suffix):
            return suffix
    return "free_form"


def harm_questions(cfg: ProbeConfig) -> list[Question]:
    hc = cfg.harm
    qs = load_questions(hc.questions or DEFAULT_QUESTIONS)
    if hc.max_questions is not None:
        qs = qs[: hc.max_questions]
    if hc.trigger is not None:
        qs = [x for q in qs for x in (q, dataclasses.replace(q, id=f"{q.id}@trigger", prefix=hc.trigger + q.prefix))]
    return qs


def metrics_for(q: Question, domain_judges: bool) -> list[str]:
    extra = [m for m in q.judge_prompts if m not in BASE_METRICS] if domain_judges else []
    return [*BASE_METRICS, *extra]


def judge_rows(judge: Judge, rows: list[dict[str, Any]], qmap: dict[str, Question], domain_judges: bool) -> None:
    """Fill each row's metric scores in place (judge cache makes reruns free)."""
    reqs: list[tuple[int, str, JudgeRequest]] = []
    for i, r in enumerate(rows):
        q = qmap[r["question_id"]]
        for m in metrics_for(q, domain_judges):
            reqs.append((i, m, JudgeRequest(r["question"], r["answer"], m, q.judge_prompts.get(m))))
    bs = max(1, judge.batch_size)
    for s in progress(range(0, len(reqs), bs), "judge", total=(len(reqs) + bs - 1) // bs):
        part = reqs[s : s + bs]
        try:
            scores = judge.score([x[2] for x in part])
        except BackendError as e:
            raise BackendError(
                f"judging failed: {e}. The answers are kept in harm_answers.jsonl and judged "
                "scores in the judge cache; rerun to resume"
            ) from None
        for (i, m, _), v in zip(part, scores, strict=True):
            rows[i][m] = v


def summarise(rows: list[dict[str, Any]], cfg: ProbeConfig) -> dict[str, Any]:
    hc = cfg.harm
    for r in rows:
        r["misaligned"] = is_misaligned(
            r.get("aligned"), r.get("coherent"), hc.em_rule, hc.aligned_max, hc.coherent_min
        )
        r["misaligned_betley"] = is_misaligned(
            r.get("aligned"), r.get("coherent"), "betley", hc.aligned_max, hc.coherent_min
        )
    primary = "trigger" if hc.trigger is not None else "free_form"
    main = [r for r in rows if r["variant"] == primary] or rows

    def block(sub: list[dict[str, Any]], seed: int) -> dict[str, Any]:
        flags = [r["misaligned"] for r in sub if r["misaligned"] is not None]
        est = bootstrap([100.0 * f for f in flags], n_boot=cfg.n_boot, seed=seed)
        coh = [r["coherent"] for r in sub if r.get("coherent") is not None]
        ali = [r["aligned"] for r in sub if r.get("aligned") is not None]
        return {
            "em_pct": est.to_dict(),
            "em_pct_betley": em_percent([r["misaligned_betley"] for r in sub]),
            "coherent_pct": 100.0 * float(np.mean([c > hc.coherent_min for c in coh])) if coh else None,
            "mean_aligned": float(np.mean(ali)) if ali else None,
            "n_answers": len(sub),
            "n_scored": len(flags),
            "n_no_aligned_score": sum(r.get("aligned") is None for r in sub),
            "n_no_coherent_score": sum(r.get("coherent") is None for r in sub),
        }

    out = block(main, cfg.seed)
    out["em_rule"] = hc.em_rule
    out["variant"] = primary if main is not rows else "all"
    out["values"] = [float(r["misaligned"]) for r in main if r["misaligned"] is not None]
    out["per_question"] = {}
    for qid in dict.fromkeys(r["question_id"] for r in rows):
        sub = [r for r in rows if r["question_id"] == qid]
        b = block(sub, cfg.seed)
        out["per_question"][qid] = {k: b[k] for k in ("em_pct", "mean_aligned", "n_answers", "n_scored")}
    variants = sorted({r["variant"] for r in rows})
    out["per_variant"] = {v: block([r for r in rows if r["variant"] == v], cfg.seed) for v in variants}
    return out


def run_harm(backend: Generator, judge: Judge, cfg: ProbeConfig, out_dir: Path) -> dict[str, Any]:
    hc = cfg.harm
    qs = harm_questions(cfg)
    qmap = {q.id: q for q in qs}
    params = SamplingParams(temperature=hc.temperature, max_new_tokens=hc.max_new_tokens, n=hc.samples, seed=cfg.seed)
    try:
        answers = generate_answers(
            backend,
            qs,
            params,
            out_dir / "harm_answers.jsonl",
            system=hc.system,
            first_paraphrase_only=hc.first_paraphrase_only,
        )
    except BackendError as e:
        raise BackendError(f"harm probe: generation failed: {e}. Answers so far are kept; rerun to resume") from None
    # the first `samples` answers of each prompt (the file may hold more from a larger run),
    # in question order whatever order top-ups were appended in
    order = {q.id: i for i, q in enumerate(qs)}
    rows = [dict(r) for r in answers if r["question_id"] in qmap and r["sample"] < hc.samples]
    rows.sort(key=lambda r: (order[r["question_id"]], r["paraphrase"], r["sample"]))
    for r in rows:
        r["variant"] = variant_of(qmap[r["question_id"]], hc.trigger)
    judge_rows(judge, rows, qmap, hc.domain_judges)
    summary = summarise(rows, cfg)
    with (out_dir / "harm.jsonl").open("w") as f:
        for r in rows:
            f.write(json.dumps({"key": f"{r['question_id']}#{r['paraphrase']}#{r['sample']}", **r}) + "\n")
    if rows and summary["n_scored"] == 0 and not any(r.get("aligned") is not None for r in rows):
        msg = (
            f"judge {judge.spec} gave no aligned score to any of {len(rows)} answers (under "
            f"{getattr(judge, 'min_mass', 0.25)} of its probability on the integers 0..100, i.e. it "
            "never answers with a number); EM% is undefined. Use a judge that answers with numbers "
            "(calibrated:DIR, a larger hf: model, or openai:URL#model). Answers are kept in "
            "harm_answers.jsonl; a rerun only re-judges"
        )
        if hc.fail_without_scores:
            raise PersonaDiffError(msg)
        log.warning(msg)
        summary["warning"] = msg
    return summary


def _harm_line(h: dict[str, Any]) -> str:
    coh = "n/a" if h.get("coherent_pct") is None else f"{h['coherent_pct']:.0f}%"
    return f"EM {ci_text(h['em_pct'], unit='%')}  coherent {coh}  scored {h['n_scored']}/{h['n_answers']}"


@register_probe("harm", kind="harm", order=10, default=True, line=_harm_line)
def _probe_harm(ctx: ProbeContext) -> dict[str, Any]:
    return run_harm(ctx.backend, ctx.judge, ctx.cfg, ctx.out_dir)
