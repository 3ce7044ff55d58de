"""Per-model table across fine-tunes: persona-feature shift beside EM%, self-report, label.

One `ModelRecord` per fine-tune (six domains, controls). `model_table` sorts them into rows;
`label_contrast` answers the question the table exists for: do coherent and inverted models
differ in the feature, in self-report, or in both? For each quantity it gives the mean per
label and the coherent − inverted difference with a bootstrap CI over models (a CI that
excludes 0 marks a difference). `cross_model_correlations` correlates the feature shift with
EM% and with self-report across models.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from persona_diff.analysis.correlation import correlate
from persona_diff.rundir.values import label_sort_key


@dataclass
class ModelRecord:
    name: str
    label: str  # a `persona_diff.rundir.Label` (coherent | inverted | em-unmeasured | not-EM | undetermined), or base | control
    feature_shift: float | None  # finetuning shift along the persona direction
    em_pct: float | None
    self_report: float | None  # self-reported misalignment in [0, 1] (higher = says misaligned)
    coherent_pct: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


QUANTITIES = ("feature_shift", "em_pct", "self_report")


def model_table(records: list[ModelRecord]) -> list[dict[str, Any]]:
    """Rows sorted by label (`persona_diff.rundir.LABEL_ORDER`: base, coherent, inverted,
    em-unmeasured, not-EM, undetermined, control, anything else) then name (JSON-ready)."""
    return [
        {**{k: v for k, v in asdict(r).items() if k != "extra"}, **r.extra}
        for r in sorted(records, key=lambda r: label_sort_key(r.label, r.name))
    ]


def _boot_diff(a: np.ndarray, b: np.ndarray, n_boot: int, seed: int, ci: float) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    da = a[rng.integers(0, len(a), size=(n_boot, len(a)))].mean(1)
    db = b[rng.integers(0, len(b), size=(n_boot, len(b)))].mean(1)
    d = da - db
    return float(np.percentile(d, 100 * (1 - ci) / 2)), float(np.percentile(d, 100 * (1 + ci) / 2))


MIN_PER_LABEL = 2


def label_contrast(
    records: list[ModelRecord],
    a: str = "coherent",
    b: str = "inverted",
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
) -> dict[str, Any]:
    """Mean of each quantity per label, and (mean_a − mean_b) with a bootstrap CI over models.

    A CI needs at least `MIN_PER_LABEL` models of each label (a bootstrap over one model has no
    spread and would call any difference real); with fewer the verdict is "too few models"."""
    out: dict[str, Any] = {"labels": [a, b], "quantities": {}}
    for q in QUANTITIES:
        va = np.array([getattr(r, q) for r in records if r.label == a and getattr(r, q) is not None], dtype=np.float64)
        vb = np.array([getattr(r, q) for r in records if r.label == b and getattr(r, q) is not None], dtype=np.float64)
        row: dict[str, Any] = {
            f"mean_{a}": float(va.mean()) if len(va) else None,
            f"mean_{b}": float(vb.mean()) if len(vb) else None,
            f"n_{a}": len(va),
            f"n_{b}": len(vb),
            "diff": float(va.mean() - vb.mean()) if len(va) and len(vb) else None,
            "diff_ci": list(_boot_diff(va, vb, n_boot, seed, ci)) if min(len(va), len(vb)) >= MIN_PER_LABEL else None,
        }
        ci_ = row["diff_ci"]
        row["differs"] = bool(ci_ is not None and (ci_[0] > 0 or ci_[1] < 0))
        out["quantities"][q] = row
    f, s = out["quantities"]["feature_shift"]["differs"], out["quantities"]["self_report"]["differs"]
    if any(out["quantities"][q]["diff_ci"] is None for q in ("feature_shift", "self_report")):
        out["verdict"] = f"too few models (a CI over models needs at least {MIN_PER_LABEL} of each label)"
        return out
    out["verdict"] = {
        (True, True): "both",
        (True, False): "feature",
        (False, True): "self-report",
        (False, False): "neither",
    }[(f, s)]
    return out


def cross_model_correlations(records: list[ModelRecord], n_boot: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
    """Feature shift against EM% and against self-report, across models (needs >= 3)."""
    fs = [r.feature_shift for r in records]
    return [
        {
            "feature": "feature_shift",
            "target": t,
            **correlate(fs, [getattr(r, t) for r in records], n_boot, seed=seed).to_dict(),
        }
        for t in ("em_pct", "self_report")
    ]
