"""persona-diff: persona features in emergently misaligned language models.

The Python API, one name per step of the chain (README, "From Python"):

- `load_model(spec)` / `CheckpointPair.load(base, finetuned)`: checkpoints;
- `run_probes(model, ProbeConfig(), judge, out)` and `label_persona(base, ft)`: behaviour,
  self-report and the coherent / inverted / not-EM label;
- `capture(pair, streams, layers, ...)`: both models' activations into a store;
- `get_method("mean")().fit(store)`: model diffing → ranked directions;
- `Direction`, `steer`, `dose_response`: steering along a direction, with its controls;
- `load_run(run_dir)`: the outputs of a `persona-diff run`.

Each name is imported on first use, so ``import persona_diff`` stays light (no torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name → the modules it is looked up in, first found wins
_EXPORTS: dict[str, tuple[str, ...]] = {
    "load_model": ("persona_diff.models.loading",),
    "CheckpointPair": ("persona_diff.models.pair",),
    "run_probes": ("persona_diff.probes.runner",),
    "label_persona": ("persona_diff.probes.label",),
    "capture": ("persona_diff.activations.capture",),
    "get_method": ("persona_diff.diffing.base",),
    "Direction": ("persona_diff.steering.direction",),
    "steer": ("persona_diff.steering.hooks",),
    "dose_response": ("persona_diff.steering.sweep",),
    "load_run": ("persona_diff.rundir",),
}

__all__ = [
    "CheckpointPair",
    "Direction",
    "__version__",
    "capture",
    "dose_response",
    "get_method",
    "label_persona",
    "load_model",
    "load_run",
    "run_probes",
    "steer",
]

if TYPE_CHECKING:
    from persona_diff.activations.capture import capture
    from persona_diff.diffing.base import get_method
    from persona_diff.models.loading import load_model
    from persona_diff.models.pair import CheckpointPair
    from persona_diff.probes.label import label_persona
    from persona_diff.probes.runner import run_probes
    from persona_diff.rundir import load_run  # type: ignore[import-not-found,unused-ignore]
    from persona_diff.steering.direction import Direction
    from persona_diff.steering.hooks import steer
    from persona_diff.steering.sweep import dose_response


def __getattr__(name: str) -> Any:
    modules = _EXPORTS.get(name)
    if modules is None:
        raise AttributeError(f"module 'persona_diff' has no attribute {name!r}")
    for module in modules:
        try:
            value = getattr(importlib.import_module(module), name)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"persona_diff.{name} needs {' or '.join(modules)}, which this installation lacks")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
