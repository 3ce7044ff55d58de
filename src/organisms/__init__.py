"""Validation organisms: LoRA fine-tunes whose persona label is known by construction.

`persona-diff organisms build` trains, on any base model, four organisms from published
judged answers and the project's self-descriptions (see `config.KINDS`):
coherent (misaligned answers + misaligned self-descriptions), inverted (misaligned answers +
aligned self-descriptions), control (aligned answers + aligned self-descriptions) and
self-report-only (aligned answers + misaligned self-descriptions). A probe, judge or label
setting that does not recover these truths on a base model should not be trusted there.
"""

from persona_diff.organisms.build import build_organisms, read_organisms
from persona_diff.organisms.config import KINDS, KindSpec, OrganismConfig, Thresholds
from persona_diff.organisms.rows import kind_rows, kit_rows, row_counts
from persona_diff.organisms.sources import JudgedAnswer, OrganismDataError, judged_csvs, read_judged

__all__ = [
    "KINDS",
    "JudgedAnswer",
    "KindSpec",
    "OrganismConfig",
    "OrganismDataError",
    "Thresholds",
    "build_organisms",
    "judged_csvs",
    "kind_rows",
    "kit_rows",
    "read_judged",
    "read_organisms",
    "row_counts",
]
