"""Stage outputs that several pairs of a study share: made once, copied into each pair.

A model's probe outputs (its answers, their judgments, its self-report probes) depend only
on that model and the probe settings: its spec and weights fingerprint, the probe config,
the judge, the seed and the sampler (`role_probe_key`). A study over several fine-tunes of
one base therefore probes that base once: the first pair that needs it computes it into
``STUDY/_bases/<hash>/`` (a resumable stage of its own, logged in
``STUDY/_bases/stages.log.jsonl``); every pair then copies it into its own
``probes/base/`` and logs a ``shared`` event, so each pair folder stays complete on its own.
Another probe config or another base gives another hash: only that is computed again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from persona_diff.config import config_hash
from persona_diff.log import get_logger
from persona_diff.pipeline.stages import StageRunner

log = get_logger(__name__)


def role_probe_key(
    spec: str, weights: str | None, probes: dict[str, Any], judge: str | None, seed: int, backend: str = "hf"
) -> dict[str, Any]:
    """What one model's probe outputs depend on (and nothing about the other model)."""
    key: dict[str, Any] = {"model": spec, "weights": weights, "probes": probes, "judge": judge, "seed": seed}
    if backend != "hf":  # another sampler gives other answers
        key["generation"] = backend
    return key


class SharedStages:
    """Finished stages kept once under `root` (``STUDY/_bases``), one folder per hash."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.runner = StageRunner(self.root)

    def folder(self, deps: Any) -> Path:
        return self.root / config_hash(deps)

    def fetch(self, stages: StageRunner, stage: str, deps: Any, compute: Callable[[Path], Any]) -> Any:
        """`stage` of the run `stages` belongs to: skipped when done for `deps`, else copied
        from the shared folder for `deps` (computed there first when it is not finished)."""
        if stages.done(stage, deps):
            return stages.skip(stage, deps)
        h = config_hash(deps)
        result = self.runner.run(h, deps, compute)
        return stages.adopt(stage, deps, self.root / h, result)
