"""A difference of two means over scored values, with a percentile bootstrap over shared units.

Used where two cells (a steered and an unsteered base, a fine-tune and its base) answer the
same units (questions, self-report items) and the units, not the single answers, are what may
be resampled: the answers to one question share its prompt and are not independent.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def paired_ratio_bootstrap_ci(
    num_a: np.ndarray,
    den_a: np.ndarray,
    num_b: np.ndarray,
    den_b: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> list[float] | None:
    """Percentile bootstrap CI of ``Σnum_a/Σden_a − Σnum_b/Σden_b`` with the units resampled jointly.

    Unit i (a question, an item) carries in each of the two cells a, b the sum of its scored
    values (`num`) and how many there are (`den`), so the statistic on the full sample is the
    difference of the two cells' plain means over scored values, and a unit scored in only one
    cell still counts there. Resampling: ``np.random.default_rng(seed).integers(0, n, size=(n_boot, n))``;
    resamples in which a cell has no scored value are dropped. None when there are no units,
    a cell has no scored value at all, or every resample was dropped.
    """
    na, da, nb, db = (np.asarray(x, dtype=np.float64) for x in (num_a, den_a, num_b, den_b))
    if not na.shape == da.shape == nb.shape == db.shape or na.ndim != 1:
        raise ValueError(f"paired units differ in shape: {na.shape}, {da.shape}, {nb.shape}, {db.shape}")
    n = len(na)
    if n == 0 or n_boot < 1 or da.sum() <= 0 or db.sum() <= 0:
        return None
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    sda, sdb = da[idx].sum(axis=1), db[idx].sum(axis=1)
    ok = (sda > 0) & (sdb > 0)
    if not ok.any():
        return None
    boots = na[idx][ok].sum(axis=1) / sda[ok] - nb[idx][ok].sum(axis=1) / sdb[ok]
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return [float(lo), float(hi)]


def unit_sums(values: list[float | None], units: list[Any]) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """(sum of the non-None values, their count) per unit, units in order of first appearance."""
    order = list(dict.fromkeys(units))
    pos = {u: i for i, u in enumerate(order)}
    num, den = np.zeros(len(order)), np.zeros(len(order))
    for v, u in zip(values, units, strict=True):
        if v is not None:
            num[pos[u]] += v
            den[pos[u]] += 1
    return num, den, order
