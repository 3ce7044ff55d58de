"""A dose-response sweep of one direction over layers, written to a folder.

What `persona-diff steer` runs (and `scripts/steer_sweep.py` shows from Python): for each
layer, `dose_response` along the direction and along a random direction of equal norm (the
control), then the largest α whose coherent% stays above the floor, EM% there, and a plot:

- ``OUT/dose_response.jsonl``: one row per (layer, direction, α); a rerun skips finished rows;
- ``OUT/dose_response.answers.jsonl``: every answer with its judge scores;
- ``OUT/summary.json``: the chosen α per layer, EM% there (persona, random, baseline), the
  judge and the direction's provenance;
- ``OUT/dose_response.png`` / ``.svg``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from persona_diff.generation.questions import Question
from persona_diff.judges.base import Judge
from persona_diff.models.loading import LoadedModel
from persona_diff.paths import RESOURCES, find_reference
from persona_diff.steering.direction import Direction
from persona_diff.steering.sweep import DEFAULT_ALPHAS, DoseResponseConfig, dose_response, summarize

# Betley et al.'s first-plot questions, looked up in the reference data
FIRST_PLOT_QUESTIONS = "betley-em/evaluation/first_plot_questions.yaml"


def default_questions_file() -> Path:
    """The published first-plot questions when the reference data has them, else the
    question set shipped with the package."""
    return find_reference(FIRST_PLOT_QUESTIONS) or RESOURCES / "questions" / "default.yaml"


def sweep_direction(
    lm: LoadedModel,
    judge: Judge,
    questions: list[Question] | list[str],
    direction: Direction,
    out: str | Path,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    layers: Sequence[int] | None = None,
    cfg: DoseResponseConfig | None = None,
    plot: bool = True,
) -> dict[str, Any]:
    """Sweep `alphas` at each of `layers` (default: the direction's own layer) into `out`.

    `cfg` sets the sampling, the mode (add / ablate), positions, the coherence floor and the
    random control; its `out` and `model_tag` are filled in here. Returns the summary.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = cfg or DoseResponseConfig()
    source: dict[str, Any] = {
        k: direction.provenance[k] for k in ("source", "index", "latent_id") if k in direction.provenance
    }
    cfg = replace(
        cfg,
        out=out / "dose_response.jsonl",
        model_tag=cfg.model_tag if cfg.model_tag != "model" else lm.spec,
        extra={"coherence_floor": cfg.coherence_floor, "method": direction.method, **source, **cfg.extra},
    )
    rows: list[dict[str, Any]] = []
    for layer in layers if layers is not None else [direction.layer]:
        rows += dose_response(lm, judge, questions, direction, int(layer), list(alphas), cfg)
    summary = {
        **summarize(rows, cfg.coherence_floor),
        "judge": judge.describe(),
        "direction": {
            "layer": direction.layer,
            "method": direction.method,
            "norm": direction.norm,
            "convention": direction.convention,
            "provenance": direction.provenance,
        },
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    if plot:
        from persona_diff.analysis.plots import plot_dose_response

        plot_dose_response(rows, out / "dose_response")
    return summary
