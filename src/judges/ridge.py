"""Ridge regression for the calibrated judges: closed form, float64, standardised features.

The linear algebra runs in torch float64 on sufficient statistics (XᵀX, Σx, Xᵀy, Σy per
fold): a fold's training statistics are the total minus the fold's, and one symmetric
eigendecomposition of the standardised d×d Gram matrix gives the whole λ path. λ is chosen
by out-of-fold MSE (`cv_ridge`); folds are one per file when there are several files, else
random (`make_folds`). `quantile_map` then undoes the ridge's shrinkage toward the mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

LAMBDAS = tuple(float(x) for x in np.logspace(-1, 5, 13))
N_QUANTILES = 101


@dataclass
class _Moments:
    G: torch.Tensor  # XᵀX [d, d]
    s: torch.Tensor  # Σx [d]
    xy: torch.Tensor  # Xᵀy [d]
    sy: float  # Σy
    n: int

    @classmethod
    def of(cls, X: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> _Moments:
        X = torch.as_tensor(np.asarray(X, np.float64))
        y = torch.as_tensor(np.asarray(y, np.float64))
        return cls(X.T @ X, X.sum(0), X.T @ y, float(y.sum()), len(y))

    def __sub__(self, o: _Moments) -> _Moments:
        return _Moments(self.G - o.G, self.s - o.s, self.xy - o.xy, self.sy - o.sy, self.n - o.n)

    def __add__(self, o: _Moments) -> _Moments:
        return _Moments(self.G + o.G, self.s + o.s, self.xy + o.xy, self.sy + o.sy, self.n + o.n)


def _path_from_moments(m: _Moments, lambdas: Sequence[float]) -> tuple[torch.Tensor, float, torch.Tensor, torch.Tensor]:
    """(W [L, d], b, mean, std) of ridge on standardised features, one row per λ."""
    mu = m.s / m.n
    var = (torch.diagonal(m.G) / m.n - mu**2).clamp(min=0)
    std = var.sqrt()
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    C = (m.G - m.n * torch.outer(mu, mu)) / torch.outer(std, std)
    c = (m.xy - mu * m.sy) / std
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # multithreaded eigh crawls on a busy CPU; one thread is steady
    try:
        evals, V = torch.linalg.eigh(C)
    finally:
        torch.set_num_threads(n_threads)
    proj = V.T @ c
    lam = torch.tensor(list(lambdas), dtype=torch.float64)
    W = (proj[None, :] / (evals.clamp(min=0)[None, :] + lam[:, None])) @ V.T
    return W, m.sy / m.n, mu, std


def ridge_path(Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray, lambdas: Sequence[float]) -> np.ndarray:
    """Test predictions [len(lambdas), n_te] of ridge fits on standardised train features."""
    W, b, mu, std = _path_from_moments(_Moments.of(Xtr, ytr), lambdas)
    Zte = (torch.as_tensor(np.asarray(Xte, np.float64)) - mu) / std
    return (Zte @ W.T + b).T.numpy()


def fit_ridge(X: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """(w, b, mean, std): prediction = ((x - mean) / std) @ w + b, in float64."""
    W, b, mu, std = _path_from_moments(_Moments.of(X, y), [lam])
    return W[0].numpy(), float(b), mu.numpy(), std.numpy()


def make_folds(groups: Sequence[str] | np.ndarray, n_random: int = 5, seed: int = 0) -> tuple[list[np.ndarray], str]:
    """Test-index folds: one per group when there are several groups, else random K-fold."""
    arr = np.asarray(groups)
    uniq = list(dict.fromkeys(arr.tolist()))
    if len(uniq) > 1:
        return [np.flatnonzero(arr == g) for g in uniq], "leave-one-file-out"
    perm = np.random.default_rng(seed).permutation(len(arr))
    k = min(n_random, len(arr))
    return [np.sort(f) for f in np.array_split(perm, k)], f"{k}-fold"


def cv_ridge(
    X: np.ndarray, y: np.ndarray, folds: list[np.ndarray], lambdas: Sequence[float] = LAMBDAS
) -> tuple[float, np.ndarray, list[float], tuple[np.ndarray, float, np.ndarray, np.ndarray]]:
    """Best λ by out-of-fold MSE, out-of-fold predictions at it, MSE per λ, and the final
    fit (w, b, mean, std) on all rows at that λ."""
    Xt = torch.as_tensor(np.asarray(X, np.float64))
    y = np.asarray(y, np.float64)
    per_fold = [_Moments.of(Xt[torch.as_tensor(f)], y[f]) for f in folds]
    total = per_fold[0]
    for m in per_fold[1:]:
        total = total + m
    oof = np.zeros((len(lambdas), len(y)))
    for f, m in zip(folds, per_fold, strict=True):
        W, b, mu, std = _path_from_moments(total - m, lambdas)
        oof[:, f] = (((Xt[torch.as_tensor(f)] - mu) / std) @ W.T + b).T.numpy()
    mse = ((oof - y[None]) ** 2).mean(1)
    best = int(np.argmin(mse))
    W, b, mu, std = _path_from_moments(total, [lambdas[best]])
    final = (W[0].numpy(), float(b), mu.numpy(), std.numpy())
    return float(lambdas[best]), oof[best], mse.tolist(), final


def quantile_map(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Monotone map from the distribution of `pred` to that of `ref` (both at N quantiles)."""
    qs = np.linspace(0, 1, N_QUANTILES)
    src = np.quantile(pred, qs)
    dst = np.quantile(ref, qs)
    src = np.maximum.accumulate(src + np.arange(N_QUANTILES) * 1e-9)  # strictly increasing for interp
    return src, dst
