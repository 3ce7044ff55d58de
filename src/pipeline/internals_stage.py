"""The internals stage of `run` and `run --pairs` (`persona_diff.internals.run_internals`).

From the probe folders the run already wrote (each model's judged harm answers, its own
ratings of them) and the models' activations: the harm and self-report directions with
held-out AUCs, the per-answer table and its correlations, the persona map and, over a study's
fine-tunes, the leave-one-out detector. A single run maps its one fine-tune; a study maps all
its fine-tunes of one base in one figure (the base is read once), under ``STUDY/internals``.

The detector's targets (harmful? self-report misaligned?) are the truth of an organism when the
pairs file gives it (``organisms build`` writes ``truth``, ``harmful``, ``self_report``), else
the behavioural label (coherent: both; inverted: harmful only; not-EM: neither), and
``internals.json`` says which (``targets``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persona_diff.internals.config import InternalsConfig
from persona_diff.pipeline.config import RunConfig

if TYPE_CHECKING:
    from persona_diff.internals.run import Member


def stage_config(cfg: RunConfig) -> InternalsConfig:
    """The run's internals settings with the run's seed."""
    return replace(cfg.internals, seed=cfg.seed, causal=replace(cfg.internals.causal, seed=cfg.seed))


def run_stage(
    out: Path,
    base_spec: str,
    base_probes: Path,
    fine_tunes: list[Member],
    cfg: RunConfig,
    labels: dict[str, str],
    judge: Callable[[], Any] | None,
    loaded: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`run_internals` into `out` for one base and its fine-tunes; a short result for the stage
    marker. `loaded`: models already held, by member name (`run_internals`)."""
    from persona_diff.internals.run import Member, run_internals

    icfg = stage_config(cfg)
    j = judge() if icfg.causal.enabled and judge is not None else None
    summary = run_internals(
        out,
        Member("base", base_spec, base_probes),
        fine_tunes,
        icfg,
        cfg.probes,
        labels,
        j,
        loaded,
        dtype=cfg.dtype,
        device=cfg.device,
        device_map=cfg.device_map,
        trust_remote_code=cfg.trust_remote_code,
    )
    quads = {p["model"]: p["quadrant"] for p in summary.get("map", {}).get("points", [])}
    return {"layer": summary.get("layer"), "quadrants": quads, "n_rows": summary.get("table", {}).get("n_rows")}
