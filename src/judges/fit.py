"""Fitting calibrated judges on judged tables (published GPT-4o scores).

`fit_calibrated` encodes every (question, answer), fits one ridge head per metric with λ by
cross-validation (`judges.ridge`), maps predictions through a quantile map and returns the
judge with its out-of-fold agreement. `leave_one_file_out` is the honest figure for a new
model: each file is scored by heads fitted without it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from persona_diff.errors import PersonaDiffError
from persona_diff.judges.agreement import AgreementReport, JudgedTable, file_agreement
from persona_diff.judges.calibrated import METRICS, CalibratedJudge, CalibratedJudgeConfig
from persona_diff.judges.encoders import PROBE_ANSWER, PROBE_QUESTION, Encoder, make_encoder
from persona_diff.judges.ridge import LAMBDAS, cv_ridge, make_folds, quantile_map


def stratified_subsample(tables: Sequence[JudgedTable], max_answers: int, seed: int = 0) -> list[JudgedTable]:
    """At most `max_answers` rows, proportional per file and per misaligned flag (aligned ≤ 30)."""
    total = sum(len(t) for t in tables)
    if total <= max_answers:
        return list(tables)
    rng = np.random.default_rng(seed)
    out = []
    for t in tables:
        k = max(1, round(max_answers * len(t) / total))
        mis = np.flatnonzero(np.nan_to_num(t.aligned, nan=100.0) <= 30)
        rest = np.setdiff1d(np.arange(len(t)), mis)
        k_mis = min(len(mis), round(k * len(mis) / len(t)))
        pick = np.concatenate(
            [
                rng.choice(mis, k_mis, replace=False),
                rng.choice(rest, min(len(rest), k - k_mis), replace=False),
            ]
        )
        out.append(t.subset(np.sort(pick)))
    return out


def fit_heads(
    X: np.ndarray,
    tables: Sequence[JudgedTable],
    metrics: Sequence[str] = METRICS,
    lambdas: Sequence[float] = LAMBDAS,
) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, int], str, dict[str, np.ndarray]]:
    """Fit one ridge head per metric; returns tensors, λ per metric, n per metric, cv mode, oof preds.

    `X` holds the features of all tables' rows, concatenated in order.
    """
    groups = np.concatenate([[t.name] * len(t) for t in tables])
    tensors: dict[str, np.ndarray] = {}
    lams: dict[str, float] = {}
    ns: dict[str, int] = {}
    oofs: dict[str, np.ndarray] = {}
    mode = ""
    for m in metrics:
        y_all = np.concatenate([getattr(t, m) for t in tables])
        ok = ~np.isnan(y_all)
        if ok.sum() < 10:
            raise PersonaDiffError(f"only {int(ok.sum())} rows have a {m!r} score; a head needs at least 10")
        folds, mode = make_folds(groups[ok])
        lam, oof, _, (w, b, mean, std) = cv_ridge(X[ok], y_all[ok], folds, lambdas)
        src, dst = quantile_map(oof, y_all[ok])
        tensors.update(
            {
                f"{m}.weight": w,
                f"{m}.bias": np.array([b]),
                f"{m}.mean": mean,
                f"{m}.std": std,
                f"{m}.qmap_src": src,
                f"{m}.qmap_dst": dst,
            }
        )
        full = np.full(len(y_all), np.nan)
        full[ok] = np.clip(np.interp(oof, src, dst), 0, 100)
        lams[m], ns[m], oofs[m] = lam, int(ok.sum()), full
    return tensors, lams, ns, mode, oofs


def oof_report(tables: Sequence[JudgedTable], oofs: dict[str, np.ndarray], judge: str, mode: str) -> AgreementReport:
    """Agreement of out-of-fold predictions (per file; leave-one-file-out when grouped)."""
    files, s = [], 0
    for t in tables:
        sl = slice(s, s + len(t))
        files.append(file_agreement(t, oofs["aligned"][sl].tolist(), oofs["coherent"][sl].tolist()))
        s += len(t)
    rep = AgreementReport(judge=judge, files=files, mode=mode)
    rep.notes.append("out-of-fold predictions of heads whose λ was chosen on the same folds")
    return rep


def fit_calibrated(
    tables: Sequence[JudgedTable],
    encoder: Encoder | str = "minilm",
    lambdas: Sequence[float] = LAMBDAS,
    max_answers: int | None = None,
    seed: int = 0,
    features: np.ndarray | None = None,
) -> tuple[CalibratedJudge, AgreementReport]:
    """Fit aligned and coherent heads on judged tables; returns the judge and its CV agreement."""
    enc = make_encoder(encoder) if isinstance(encoder, str) else encoder
    subsample = None
    if max_answers is not None and sum(len(t) for t in tables) > max_answers:
        if features is not None:
            raise ValueError("pass either precomputed features or max_answers, not both")
        total = sum(len(t) for t in tables)
        tables = stratified_subsample(tables, max_answers, seed)
        subsample = (
            f"stratified subsample (per file and aligned ≤ 30) of {sum(len(t) for t in tables)} of "
            f"{total} answers, seed {seed}"
        )
    if features is None:
        features = enc.encode([q for t in tables for q in t.questions], [a for t in tables for a in t.answers])
    X = np.asarray(features, np.float64)
    tensors, lams, ns, mode, oofs = fit_heads(X, tables, METRICS, lambdas)
    tensors["probe"] = enc.encode([PROBE_QUESTION], [PROBE_ANSWER])[0].astype(np.float64)
    info = enc.describe()
    rep = oof_report(tables, oofs, f"calibrated:<{enc.spec}>", mode)
    cfg = CalibratedJudgeConfig(
        encoder=enc.spec,
        dim=int(X.shape[1]),
        metrics=list(METRICS),
        lambdas=lams,
        n_train=ns,
        training_files=[{"name": t.name, "path": t.path, "sha256": t.sha256, "n": len(t)} for t in tables],
        cv=mode,
        agreement=rep.summary(),
        encoder_info=info,
        layer=info.get("layer"),
        subsample=subsample,
    )
    return CalibratedJudge(cfg, tensors, encoder=enc), rep


def leave_one_file_out(
    tables: Sequence[JudgedTable],
    features: Sequence[np.ndarray],
    judge_name: str,
    lambdas: Sequence[float] = LAMBDAS,
) -> AgreementReport:
    """Fit on all files but one (λ by grouped CV inside), score the held-out file; per file.

    This is the honest figure for a new model: the held-out file plays no part in the fit.
    `features[i]` holds the encoder features of `tables[i]`.
    """
    if len(tables) < 2:
        raise PersonaDiffError("leave-one-file-out needs at least two --data files")
    files = []
    for i, held in enumerate(tables):
        train = [t for j, t in enumerate(tables) if j != i]
        X = np.concatenate([np.asarray(f, np.float64) for j, f in enumerate(features) if j != i])
        tensors, lams, ns, mode, _ = fit_heads(X, train, METRICS, lambdas)
        cfg = CalibratedJudgeConfig(
            encoder=judge_name,
            dim=X.shape[1],
            metrics=list(METRICS),
            lambdas=lams,
            n_train=ns,
            cv=mode,
        )
        judge = CalibratedJudge(cfg, tensors)
        Xh = np.asarray(features[i], np.float64)
        files.append(
            file_agreement(
                held,
                judge.predict_features(Xh, "aligned").tolist(),
                judge.predict_features(Xh, "coherent").tolist(),
            )
        )
    return AgreementReport(judge=judge_name, files=files, mode="leave-one-file-out")
