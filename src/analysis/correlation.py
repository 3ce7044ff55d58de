"""Pearson and Spearman correlation with percentile-bootstrap confidence intervals.

Used per answer (a feature's projection or latent activation against the judge's aligned
score or a self-report probe) and per model (persona-feature shift against EM%). Pairs with a
NaN/None on either side are dropped; the bootstrap resamples (x, y) pairs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats


@dataclass
class CorrelationResult:
    n: int
    pearson: float
    pearson_ci: tuple[float, float]
    spearman: float
    spearman_ci: tuple[float, float]
    pearson_p: float
    spearman_p: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["pearson_ci"] = list(self.pearson_ci)
        d["spearman_ci"] = list(self.spearman_ci)
        return d


def _clean(
    x: Sequence[float | None] | np.ndarray, y: Sequence[float | None] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    xa = np.array([np.nan if v is None else v for v in x], dtype=np.float64)
    ya = np.array([np.nan if v is None else v for v in y], dtype=np.float64)
    if xa.shape != ya.shape:
        raise ValueError(f"x and y have different lengths ({xa.shape[0]} vs {ya.shape[0]})")
    keep = np.isfinite(xa) & np.isfinite(ya)
    return xa[keep], ya[keep]


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    xc, yc = x - x.mean(), y - y.mean()
    den = np.sqrt((xc * xc).sum() * (yc * yc).sum())
    return float((xc * yc).sum() / den) if den > 0 else float("nan")


def _rank(a: np.ndarray) -> np.ndarray:
    return stats.rankdata(a, axis=-1)


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise Pearson for [B, n] arrays (vectorised bootstrap)."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    den = np.sqrt((xc * xc).sum(1) * (yc * yc).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (xc * yc).sum(1) / den, np.nan)


def correlate(
    x: Sequence[float | None] | np.ndarray,
    y: Sequence[float | None] | np.ndarray,
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
) -> CorrelationResult:
    """Pearson r and Spearman ρ of paired samples with bootstrap percentile CIs."""
    xa, ya = _clean(x, y)
    n = len(xa)
    nan2 = (float("nan"), float("nan"))
    if n < 3:
        return CorrelationResult(n, float("nan"), nan2, float("nan"), nan2, float("nan"), float("nan"))
    r = _pearson(xa, ya)
    rho = _pearson(_rank(xa), _rank(ya))
    pr = float(stats.pearsonr(xa, ya).pvalue) if np.isfinite(r) else float("nan")
    ps = float(stats.spearmanr(xa, ya).pvalue) if np.isfinite(rho) else float("nan")
    rng = np.random.default_rng(seed)
    lo_q, hi_q = 100 * (1 - ci) / 2, 100 * (1 + ci) / 2
    boot_r, boot_s = [], []
    for s in range(0, n_boot, 500):  # chunks bound the memory of [B, n] index arrays
        idx = rng.integers(0, n, size=(min(500, n_boot - s), n))
        bx, by = xa[idx], ya[idx]
        boot_r.append(_pearson_rows(bx, by))
        boot_s.append(_pearson_rows(_rank(bx), _rank(by)))
    br, bs = np.concatenate(boot_r), np.concatenate(boot_s)
    br, bs = br[np.isfinite(br)], bs[np.isfinite(bs)]

    def interval(b: np.ndarray) -> tuple[float, float]:
        return (float(np.percentile(b, lo_q)), float(np.percentile(b, hi_q))) if len(b) else nan2

    return CorrelationResult(n, r, interval(br), rho, interval(bs), pr, ps)


def correlation_table(
    features: Mapping[str, Sequence[float | None] | np.ndarray],
    targets: Mapping[str, Sequence[float | None] | np.ndarray],
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Every feature against every target: one row each (feature, target, n, r, CIs, ρ, ...).

    Typical use: features = {"proj:persona_L14": per-answer projections, "latent:1234": ...},
    targets = {"aligned": judge scores, "self_report": per-answer self-report}.
    """
    rows = []
    for fname, f in features.items():
        for tname, t in targets.items():
            rows.append({"feature": fname, "target": tname, **correlate(f, t, n_boot, ci, seed).to_dict()})
    return rows
