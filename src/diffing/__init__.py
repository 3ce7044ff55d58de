"""Model diffing: ranked persona directions / latents from base vs fine-tuned activations.

Names are imported on first use, so the settings (`persona_diff.diffing.config`) load
without torch (the command line reads their defaults).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "BatchTopKCoder": "persona_diff.diffing.coder",
    "CoderConfig": "persona_diff.diffing.config",
    "CoderTrainConfig": "persona_diff.diffing.train",
    "ContrastiveConfig": "persona_diff.diffing.config",
    "CrosscoderConfig": "persona_diff.diffing.config",
    "DiffConfig": "persona_diff.diffing.base",
    "DiffMethod": "persona_diff.diffing.base",
    "DiffParams": "persona_diff.diffing.base",
    "DiffResult": "persona_diff.diffing.base",
    "DiffSAEConfig": "persona_diff.diffing.config",
    "MeanDiffConfig": "persona_diff.diffing.config",
    "MethodConfig": "persona_diff.diffing.config",
    "SAEDiffConfig": "persona_diff.diffing.config",
    "TrainingDivergedError": "persona_diff.diffing.train",
    "available_methods": "persona_diff.diffing.base",
    "get_method": "persona_diff.diffing.base",
    "method_configs": "persona_diff.diffing.base",
    "register_method": "persona_diff.diffing.base",
    "train_coder": "persona_diff.diffing.train",
}

__all__ = [
    "BatchTopKCoder",
    "CoderConfig",
    "CoderTrainConfig",
    "ContrastiveConfig",
    "CrosscoderConfig",
    "DiffConfig",
    "DiffMethod",
    "DiffParams",
    "DiffResult",
    "DiffSAEConfig",
    "MeanDiffConfig",
    "MethodConfig",
    "SAEDiffConfig",
    "TrainingDivergedError",
    "available_methods",
    "get_method",
    "method_configs",
    "register_method",
    "train_coder",
]

if TYPE_CHECKING:
    from persona_diff.diffing.base import (
        DiffConfig,
        DiffMethod,
        DiffParams,
        DiffResult,
        available_methods,
        get_method,
        method_configs,
        register_method,
    )
    from persona_diff.diffing.coder import BatchTopKCoder
    from persona_diff.diffing.config import (
        CoderConfig,
        ContrastiveConfig,
        CrosscoderConfig,
        DiffSAEConfig,
        MeanDiffConfig,
        MethodConfig,
        SAEDiffConfig,
    )
    from persona_diff.diffing.train import CoderTrainConfig, TrainingDivergedError, train_coder


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
