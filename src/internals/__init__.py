"""Persona consistency from the inside: harm and self-report directions in each model's
activations, a per-answer table, the persona map, an internal EM / persona detector and a
small causal 2 × 2 by steering.

Modules: `config` (typed settings), `data` (probe folders, self-report items, prompt sets),
`activations` (one model's forwards, cached as safetensors), `directions` (stratified mean
differences, grouped held-out AUC), `table` (per-answer join and correlations),
`persona_map`, `detector` (leave one organism out), `causal`, `bootstrap` (a difference of
means resampled over shared units: the map's harm axis, the causal effects), `markdown`, and `run`
(`run_internals`: everything for one base and its organisms from a validation run's probe
folders; `persona-diff organisms validate` calls it when ``internals.enabled``).
"""

from __future__ import annotations

import importlib
from typing import Any

# name → submodule; imported on first use, so reading the config (every `persona-diff run`)
# does not import scipy and the detector
_EXPORTS = {
    "CausalConfig": "config",
    "InternalsConfig": "config",
    "detector_loo": "detector",
    "fit_fold": "detector",
    "loo_splits": "detector",
    "Direction": "directions",
    "fit_direction": "directions",
    "grouped_folds": "directions",
    "stratified_difference": "directions",
    "markdown_section": "markdown",
    "Member": "run",
    "run_internals": "run",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
