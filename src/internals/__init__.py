"""Persona consistency from the inside: harm and self-report directions in each model's
activations, a per-answer table, the persona map, an internal EM / persona detector and a
small causal 2 × 2 by steering.

Modules: `config` (typed settings), `data` (probe folders, self-report items, prompt sets),
`activations` (one model's forwards, cached as safetensors), `directions` (stratified mean
differences, grouped held-out AUC), `table` (per-answer join and correlations),
`persona_map`, `detector` (leave one organism out), `causal`, `markdown`, and `run`
(`run_internals`: everything for one base and its organisms from a validation run's probe
folders; `persona-diff organisms validate` calls it when ``internals.enabled``).
"""

from persona_diff.internals.config import CausalConfig, InternalsConfig
from persona_diff.internals.detector import detector_loo, fit_fold, loo_splits
from persona_diff.internals.directions import (
    Direction,
    fit_direction,
    grouped_folds,
    stratified_difference,
)
from persona_diff.internals.markdown import markdown_section
from persona_diff.internals.run import Member, run_internals

__all__ = [
    "CausalConfig", "Direction", "InternalsConfig", "Member", "detector_loo", "fit_direction", "fit_fold", "grouped_folds",
    "loo_splits", "markdown_section", "run_internals", "stratified_difference",
]
