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
broken text. The summary's `effect` per direction is at the largest dose above the floor.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from persona_diff.internals.config import CausalConfig
from persona_diff.internals.data import ForcedItem
from persona_diff.judges.base import Judge
from persona_diff.log import get_logger
from persona_diff.models.loading import LoadedModel

log = get_logger(__name__)


def self_report_signal(lm: LoadedModel, items: list[ForcedItem], forms: list[str]) -> float | None:
    """Mean P(misaligned word) over the self-report items (the word probe's score)."""
    from persona_diff.generation.hf import HFGenerator
    from persona_diff.probes.common import ProbeLM, user

    plm = ProbeLM(HFGenerator(lm, show_progress=False))
    vals = []
    for it in items:
        probs, _, _ = plm.words(user(it.prompt), [it.aligned_word, it.misaligned_word], forms)
        if probs is not None:
            vals.append(probs[it.misaligned_word])
    return float(np.mean(vals)) if vals else None


def causal_2x2(
    lm: LoadedModel, judge: Judge, questions: list[str], items: list[ForcedItem],
    forms: list[str], harm: np.ndarray, self_dir: np.ndarray, layer: int, scale: float, cfg: CausalConfig,
) -> dict[str, Any]:
    """Dose-response of harm and self-report for the harm, self-report and random directions."""
    from persona_diff.steering.hooks import random_like, steer
    from persona_diff.steering.sweep import DoseResponseConfig, evaluate_steered

    dcfg = DoseResponseConfig(samples_per_question=cfg.samples, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed,
                              random_control=False, coherence_floor=cfg.coherence_floor)
    units = {"harm": torch.as_tensor(harm / np.linalg.norm(harm), dtype=torch.float32),
             "self_report": torch.as_tensor(self_dir / np.linalg.norm(self_dir), dtype=torch.float32)}
    units["random"] = random_like(units["harm"], cfg.random_seed)

    def cell(direction: str, alpha: float) -> dict[str, Any]:
        t0 = time.time()
        v = None if alpha == 0 else units[direction] * float(alpha * scale)
        stats, _ = evaluate_steered(lm, judge, questions, dcfg, v, layer, 1.0, "add")
        if v is None:
            sr = self_report_signal(lm, items, forms)
        else:
            with steer(lm.model, v, layer, 1.0, positions="all", mode="add"):
                sr = self_report_signal(lm, items, forms)
        ma = stats.get("mean_aligned")
        row = {"direction": direction, "alpha": alpha, "norm": float(alpha * scale), **stats,
               "harm": None if ma is None else 1 - ma / 100, "self_report": sr,
               "below_floor": stats.get("coherent_pct") is None or stats["coherent_pct"] < cfg.coherence_floor,
               "seconds": round(time.time() - t0, 1)}
        log.info("causal %s α=%.2f: harm %s, self-report %s, coherent%% %s", direction, alpha, row["harm"], sr,
                 stats.get("coherent_pct"))
        return row

    zero = cell("none", 0.0)
    rows = [zero] + [cell(d, a) for d in units for a in cfg.alphas]
    summary = {}
    for d in units:
        cells = [r for r in rows if r["direction"] == d and not r["below_floor"]]
        top = max(cells, key=lambda r: r["alpha"]) if cells else None
        eff = None if top is None else {
            "alpha": top["alpha"],
            "harm": None if top["harm"] is None or zero["harm"] is None else top["harm"] - zero["harm"],
            "self_report": None if top["self_report"] is None or zero["self_report"] is None else top["self_report"] - zero["self_report"],
        }
        summary[d] = eff
    return {"layer": layer, "scale": scale, "alphas": cfg.alphas, "n_questions": len(questions),
            "samples": cfg.samples, "rows": rows, "effect": summary}
