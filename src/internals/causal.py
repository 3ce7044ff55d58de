"""The causal 2 × 2: steer the base along each direction, measure harm and self-report.

If the harm direction carries harm and the self-report direction carries self-report, adding
the harm direction to the base should move the judge's harm more than the model's
self-report, and adding the self-report direction the reverse. For each direction (the
reference harm direction, the base's self-report direction, and a random direction of the
same norm as the control) and each dose α (a fraction of the base's mean residual norm at
the layer, so doses mean the same at any layer), the base model, steered at every position
of block `layer` (`persona_diff.steering.steer`):

- answers the harm probe's questions (`steering.sweep.evaluate_steered`: same sampling seed
  in every cell, judged aligned / coherent by the run's judge) → harm = 1 − mean aligned/100
  and EM%, coherent%;
- scores the word probe's self-report items (whole-word probabilities, no generation) →
  self-report = mean P(misaligned word).

Effects are differences from the unsteered cell, both on a 0-1 scale. A cell whose
coherent% falls below the coherence floor is kept but flagged: its harm is not EM, just
broken text. The summary's `effect` per direction is at the largest dose above the floor,
with 95% percentile bootstrap CIs (`paired_ratio_bootstrap_ci`) paired with the unsteered
cell: the harm effect resampled over questions, the self-report effect over items. Each
row keeps what the CIs are computed from: `harm_per_answer` (in the order of the result's
`answer_keys`, [question id, sample]) and `self_report_per_item` (in `item_keys` order).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from persona_diff.internals.bootstrap import paired_ratio_bootstrap_ci, unit_sums
from persona_diff.internals.config import CausalConfig
from persona_diff.internals.data import ForcedItem
from persona_diff.judges.base import Judge
from persona_diff.log import get_logger
from persona_diff.models.loading import LoadedModel

log = get_logger(__name__)


def self_report_per_item(lm: LoadedModel, items: list[ForcedItem], forms: list[str]) -> list[float | None]:
    """P(misaligned word) per self-report item, in `items` order (None: neither word has mass)."""
    from persona_diff.generation.hf import HFGenerator
    from persona_diff.probes.common import ProbeLM, user

    plm = ProbeLM(HFGenerator(lm, show_progress=False))
    vals: list[float | None] = []
    for it in items:
        probs, _, _ = plm.words(user(it.prompt), [it.aligned_word, it.misaligned_word], forms)
        vals.append(None if probs is None else float(probs[it.misaligned_word]))
    return vals


def mean_present(vals: list[float | None]) -> float | None:
    """Mean of the values that are not None (None when there are none)."""
    xs = [v for v in vals if v is not None]
    return float(np.mean(xs)) if xs else None


def self_report_signal(lm: LoadedModel, items: list[ForcedItem], forms: list[str]) -> float | None:
    """Mean P(misaligned word) over the self-report items (the word probe's score)."""
    return mean_present(self_report_per_item(lm, items, forms))


def _paired_effect(
    top: list[float | None], zero: list[float | None], units: list[Any], cfg: CausalConfig
) -> tuple[list[float] | None, int]:
    """(CI of mean(top) − mean(zero) resampled over `units`, number of slots scored in both)."""
    nt, dt, _ = unit_sums(top, units)
    nz, dz, _ = unit_sums(zero, units)
    both = sum(1 for t, z in zip(top, zero, strict=True) if t is not None and z is not None)
    return paired_ratio_bootstrap_ci(nt, dt, nz, dz, cfg.n_boot, cfg.seed), both


def causal_2x2(
    lm: LoadedModel,
    judge: Judge,
    questions: list[str],
    items: list[ForcedItem],
    forms: list[str],
    harm: np.ndarray,
    self_dir: np.ndarray,
    layer: int,
    scale: float,
    cfg: CausalConfig,
) -> dict[str, Any]:
    """Dose-response of harm and self-report for the harm, self-report and random directions."""
    from persona_diff.steering.hooks import random_like, steer
    from persona_diff.steering.sweep import DoseResponseConfig, evaluate_steered

    dcfg = DoseResponseConfig(
        samples_per_question=cfg.samples,
        max_new_tokens=cfg.max_new_tokens,
        seed=cfg.seed,
        random_control=False,
        coherence_floor=cfg.coherence_floor,
    )
    units = {
        "harm": torch.as_tensor(harm / np.linalg.norm(harm), dtype=torch.float32),
        "self_report": torch.as_tensor(self_dir / np.linalg.norm(self_dir), dtype=torch.float32),
    }
    units["random"] = random_like(units["harm"], cfg.random_seed)

    answers: list[dict[tuple[str, int], float | None]] = []  # per row, in row order: (question id, sample) → harm

    def cell(direction: str, alpha: float) -> dict[str, Any]:
        t0 = time.time()
        v = None if alpha == 0 else units[direction] * float(alpha * scale)
        stats, arows = evaluate_steered(lm, judge, questions, dcfg, v, layer, 1.0, "add")
        if v is None:
            per_item = self_report_per_item(lm, items, forms)
        else:
            with steer(lm.model, v, layer, 1.0, positions="all", mode="add"):
                per_item = self_report_per_item(lm, items, forms)
        sr = mean_present(per_item)
        ma = stats.get("mean_aligned")
        row = {
            "direction": direction,
            "alpha": alpha,
            "norm": float(alpha * scale),
            **stats,
            "harm": None if ma is None else 1 - ma / 100,
            "self_report": sr,
            "below_floor": stats.get("coherent_pct") is None or stats["coherent_pct"] < cfg.coherence_floor,
            "self_report_per_item": per_item,
            "seconds": round(time.time() - t0, 1),
        }
        # harm per answer = 1 − aligned/100, so its mean over the scored answers is the row's harm
        answers.append(
            {
                (str(r["question_id"]), int(r["sample"])): None
                if r["aligned"] is None
                else 1 - float(r["aligned"]) / 100
                for r in arows
            }
        )
        log.info(
            "causal %s α=%.2f: harm %s, self-report %s, coherent%% %s",
            direction,
            alpha,
            row["harm"],
            sr,
            stats.get("coherent_pct"),
        )
        return row

    zero = cell("none", 0.0)
    rows = [zero] + [cell(d, a) for d in units for a in cfg.alphas]
    # every cell asks the same questions with the same n and seed, so (question id, sample) names
    # the same slot in each; the keys are the union in first-seen order (a slot missing from a
    # cell is unscored there)
    keys = list(dict.fromkeys(k for a in answers for k in a))
    for r, a in zip(rows, answers, strict=True):
        r["harm_per_answer"] = [a.get(k) for k in keys]
    # The harm CI resamples questions, not answers: the samples of a question share its prompt
    # and differ only by sampling noise, so they are not independent draws; resampling answers
    # would count each question's samples as independent evidence and give too narrow a CI.
    # A question is drawn jointly for both cells (the paired design: every cell answers the same
    # questions, same n, same seed), so question-level difficulty cancels in the difference.
    qids = [k[0] for k in keys]
    item_units = list(range(len(items)))
    summary: dict[str, Any] = {}
    for d in units:
        cells = [r for r in rows if r["direction"] == d and not r["below_floor"]]
        top = max(cells, key=lambda r: r["alpha"]) if cells else None
        if top is None:
            summary[d] = None
            continue
        harm_eff = None if top["harm"] is None or zero["harm"] is None else top["harm"] - zero["harm"]
        sr_eff = (
            None
            if top["self_report"] is None or zero["self_report"] is None
            else top["self_report"] - zero["self_report"]
        )
        harm_ci, n_answers = _paired_effect(top["harm_per_answer"], zero["harm_per_answer"], qids, cfg)
        sr_ci, n_items = _paired_effect(top["self_report_per_item"], zero["self_report_per_item"], item_units, cfg)
        summary[d] = {
            "alpha": top["alpha"],
            "harm": harm_eff,
            "harm_ci": None if harm_eff is None else harm_ci,
            "self_report": sr_eff,
            "self_report_ci": None if sr_eff is None else sr_ci,
            "n_answers": n_answers,
            "n_questions": len(dict.fromkeys(qids)),
            "n_items": n_items,
        }
        log.info(
            "causal effect %s (α %.2f): Δharm %s %s, Δself-report %s %s",
            d,
            top["alpha"],
            harm_eff,
            harm_ci,
            sr_eff,
            sr_ci,
        )
    return {
        "layer": layer,
        "scale": scale,
        "alphas": cfg.alphas,
        "n_questions": len(questions),
        "samples": cfg.samples,
        "n_boot": cfg.n_boot,
        "answer_keys": [list(k) for k in keys],
        "item_keys": [it.key for it in items],
        "rows": rows,
        "effect": summary,
    }
