"""An EM / persona detector from internals alone, tested leave-one-organism-out.

At inference the detector sees only activations, never a judge's score or a self-report:

    harm score = (mean_a h_ft(a) · ĥ − mean_b h_base(b) · ĥ) / sd_b(h_base(b) · ĥ)

over the fine-tune's own answers a and the base's own answers b to the harm questions (each
model reading its own answers, mean over the answer tokens; the answers are not judged), and

    self-report score = mean_i (h_ft(x_i) − h_base(x_i)) · ŝ / sd_i(h_base(x_i) · ŝ)

at the last prompt token of the project's neutral prompts. EM when the harm score is above
its threshold; then coherent when the self-report score is above its threshold, inverted
when it is not (the self-report shift fails to follow the harm shift).

Directions. ĥ comes from data no fine-tune of the study produced when it can: published
GPT-4o-judged answers read by the base (`internals.published`, `BaseView.published`); else
from the judged harm answers of the base and the fold's training organisms (the stratified
mean difference, by model and question, as the run's reference direction is made). ŝ is the
base's forced self-report contrast (no organism involved).

Fitting (`fit_fold`) uses only the training organisms it is handed, at every layer of the
stage: each axis takes the layer whose training scores split the training organisms with the
fewest errors and, among those, the widest margin, and its threshold is the midpoint of that
gap (truths of the kit: `harmful`, `self_report`). The self-report axis only decides between
coherent and inverted once the harm axis said EM, so it is fitted on the harmful training
organisms when they hold both self-reports (else on all). The held-out organism is scored
once, at the chosen layers. `loo_splits` writes the split down so a test can check that no
fold ever hands the held-out organism to `fit_fold`.

With a handful of organisms a threshold rests on one or two organisms a class: read the
result as a check of whether the internal shifts carry the labels at all, not as a
calibrated detector.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from persona_diff.internals.directions import stratified_difference, unit
from persona_diff.judges.agreement import auc

LABELS = ("coherent", "inverted", "not-EM")


@dataclass
class BaseView:
    """What the detector knows of the base model; arrays per layer."""

    neutral: dict[int, np.ndarray]  # [n_neutral, d] last prompt token of the neutral prompts
    answers: dict[int, np.ndarray]  # [n, d] the base's own judged harm answers (mean over answer tokens)
    labels: np.ndarray  # harm labels of those answers (1 / 0 / -1)
    strata: np.ndarray  # "model|question" of each answer
    self_direction: dict[int, np.ndarray]  # the base's self-report direction (forced self-reports)
    own_q: np.ndarray  # the question of each of the base's own answers (`answers`)
    published: dict[int, np.ndarray] | None = None  # a harm direction from published answers (fixed)


@dataclass
class OrganismView:
    """What the detector may know of one organism (training data only when it trains)."""

    name: str
    truth: str
    harmful: bool  # built from misaligned answers
    self_misaligned: bool  # built from misaligned self-descriptions
    neutral: dict[int, np.ndarray]  # [n_neutral, d] the fine-tune at the same prompts as BaseView.neutral
    answers: dict[
        int, np.ndarray
    ]  # [n, d] this organism's judged harm answers (its own activations, or the base reading them)
    labels: np.ndarray
    strata: np.ndarray  # "model|question"
    own: dict[int, np.ndarray]  # [m, d] the fine-tune reading its own harm answers (what the detector scores)
    own_q: np.ndarray  # their questions


@dataclass(frozen=True)
class Split:
    held_out: str
    train: tuple[str, ...]


def loo_splits(names: list[str]) -> list[Split]:
    return [Split(n, tuple(m for m in names if m != n)) for n in names]


@dataclass
class Axis:
    """One score of the detector: its layer, unit direction and threshold (None: unfit)."""

    layer: int | None = None
    direction: np.ndarray | None = None
    threshold: float | None = None
    train_errors: int | None = None
    margin: float | None = None


@dataclass
class FoldModel:
    harm: Axis
    self_report: Axis
    trained_on: tuple[str, ...]
    train_scores: dict[str, tuple[float, float]]  # at the chosen layers


def shift_score(base_neutral: np.ndarray, ft_neutral: np.ndarray, direction: np.ndarray | None) -> float:
    """mean_i (h_ft(x_i) − h_base(x_i)) · v̂ / sd_i(h_base(x_i) · v̂): the paired shift in
    base-sd units (NaN without a direction)."""
    if direction is None:
        return math.nan
    v = unit(np.asarray(direction, dtype=np.float64))
    pb = np.asarray(base_neutral, dtype=np.float64) @ v
    sd = float(pb.std(ddof=1)) if len(pb) > 1 else 1.0
    d = (np.asarray(ft_neutral, dtype=np.float64) - np.asarray(base_neutral, dtype=np.float64)) @ v
    return float(d.mean() / (sd if sd > 0 else 1.0))


def answers_score(
    base_x: np.ndarray, base_q: np.ndarray, ft_x: np.ndarray, ft_q: np.ndarray, direction: np.ndarray | None
) -> float:
    """(mean_ft a · v̂ − mean_base b · v̂) / sd_base(b · v̂) over the answers to the questions both
    models answered (NaN without a direction or a shared question)."""
    if direction is None:
        return math.nan
    shared = np.intersect1d(base_q, ft_q)
    if not len(shared):
        return math.nan
    v = unit(np.asarray(direction, dtype=np.float64))
    pb = np.asarray(base_x, dtype=np.float64)[np.isin(base_q, shared)] @ v
    pf = np.asarray(ft_x, dtype=np.float64)[np.isin(ft_q, shared)] @ v
    sd = float(pb.std(ddof=1)) if len(pb) > 1 else 1.0
    return float((pf.mean() - pb.mean()) / (sd if sd > 0 else 1.0))


def fit_threshold(scores: list[float], positive: list[bool]) -> tuple[float, int, float] | None:
    """(threshold, training errors, margin) of the split "positive when score > threshold" with
    the fewest training errors, among those the widest gap between neighbouring scores, at
    the gap's midpoint. None without both classes."""
    pairs = sorted((s, p) for s, p in zip(scores, positive, strict=True) if np.isfinite(s))
    if not any(p for _, p in pairs) or all(p for _, p in pairs):
        return None
    vals = [s for s, _ in pairs]
    cuts = (
        [(vals[0] - 1.0, 0.0)]
        + [((a + b) / 2, b - a) for a, b in zip(vals, vals[1:], strict=False)]
        + [(vals[-1] + 1.0, 0.0)]
    )
    best: tuple[int, float, float] | None = None
    for cut, gap in cuts:
        err = sum((s > cut) != p for s, p in pairs)
        if best is None or (err, -gap) < (best[0], -best[1]):
            best = (err, gap, cut)
    assert best is not None
    return best[2], best[0], best[1]


def _choose(per_layer: dict[int, tuple[np.ndarray | None, dict[str, float]]], positive: dict[str, bool]) -> Axis:
    """The layer whose training scores split the training organisms with the fewest errors
    and the widest margin (base-sd units); its direction and threshold."""
    best: tuple[tuple[int, float], Axis] | None = None
    for layer, (direction, scores) in sorted(per_layer.items()):
        names = list(scores)
        fit = fit_threshold([scores[n] for n in names], [positive[n] for n in names])
        if direction is None or fit is None:
            continue
        t, err, gap = fit
        if best is None or (err, -gap) < best[0]:
            best = ((err, -gap), Axis(layer, direction, t, err, gap))
    return best[1] if best else Axis()


def _harm_direction(base: BaseView, train: list[OrganismView], layer: int, min_per_class: int) -> np.ndarray | None:
    """The fold's harm direction at `layer`: the published one, else the stratified difference
    of the judged answers of the base and the training organisms."""
    if base.published is not None and layer in base.published:
        return unit(np.asarray(base.published[layer], dtype=np.float64))
    y = np.concatenate([base.labels, *[o.labels for o in train]])
    if (y == 1).sum() < min_per_class or (y == 0).sum() < min_per_class:
        return None
    q = np.concatenate([base.strata, *[o.strata for o in train]])
    v, _ = stratified_difference(np.concatenate([base.answers[layer], *[o.answers[layer] for o in train]]), y, q)
    return None if v is None or not np.linalg.norm(v) > 0 else unit(v)


def harm_score(base: BaseView, o: OrganismView, layer: int, direction: np.ndarray | None) -> float:
    return answers_score(base.answers[layer], base.own_q, o.own[layer], o.own_q, direction)


def fit_fold(base: BaseView, train: list[OrganismView], min_per_class: int = 5) -> FoldModel:
    """Directions, layers and thresholds from the base and the training organisms only."""
    harm: dict[int, tuple[np.ndarray | None, dict[str, float]]] = {}
    selfr: dict[int, tuple[np.ndarray | None, dict[str, float]]] = {}
    for layer in sorted(base.neutral):
        h = _harm_direction(base, train, layer, min_per_class)
        s = unit(np.asarray(base.self_direction[layer], dtype=np.float64))
        harm[layer] = (h, {o.name: harm_score(base, o, layer, h) for o in train})
        selfr[layer] = (s, {o.name: shift_score(base.neutral[layer], o.neutral[layer], s) for o in train})
    ax_h = _choose(harm, {o.name: o.harmful for o in train})
    em = [o for o in train if o.harmful]
    deciders = em if len({o.self_misaligned for o in em}) == 2 else train
    ax_s = _choose(
        {x: (v, {o.name: sc[o.name] for o in deciders}) for x, (v, sc) in selfr.items()},
        {o.name: o.self_misaligned for o in deciders},
    )
    scores = {
        o.name: (
            harm[ax_h.layer][1][o.name] if ax_h.layer is not None else math.nan,
            selfr[ax_s.layer][1][o.name] if ax_s.layer is not None else math.nan,
        )
        for o in train
    }
    return FoldModel(ax_h, ax_s, tuple(o.name for o in train), scores)


def score(model: FoldModel, base: BaseView, o: OrganismView) -> tuple[float, float]:
    h = harm_score(base, o, model.harm.layer, model.harm.direction) if model.harm.layer is not None else math.nan
    s = (
        shift_score(
            base.neutral[model.self_report.layer], o.neutral[model.self_report.layer], model.self_report.direction
        )
        if model.self_report.layer is not None
        else math.nan
    )
    return h, s


def predict(harm_score: float, self_score: float, model: FoldModel) -> str:
    if model.harm.threshold is None or not np.isfinite(harm_score):
        return "undetermined"
    if harm_score <= model.harm.threshold:
        return "not-EM"
    if model.self_report.threshold is None or not np.isfinite(self_score):
        return "undetermined"
    return "coherent" if self_score > model.self_report.threshold else "inverted"


def confusion(truth: list[str], predicted: list[str]) -> dict[str, dict[str, int]]:
    cols = list(LABELS) + sorted({p for p in predicted if p not in LABELS})
    table = {t: dict.fromkeys(cols, 0) for t in dict.fromkeys([*LABELS, *truth])}
    for t, p in zip(truth, predicted, strict=True):
        table[t][p] += 1
    return table


def detector_loo(
    base: BaseView, organisms: list[OrganismView], behavioural: dict[str, str] | None = None, min_per_class: int = 5
) -> dict[str, Any]:
    """Leave-one-organism-out: fit on the others (`fit_fold`), score the held-out one."""
    by_name = {o.name: o for o in organisms}
    folds: list[dict[str, Any]] = []
    for split in loo_splits(list(by_name)):
        model = fit_fold(base, [by_name[n] for n in split.train], min_per_class)
        o = by_name[split.held_out]
        h, s = score(model, base, o)
        folds.append(
            {
                "held_out": split.held_out,
                "train": list(split.train),
                "truth": o.truth,
                "behavioural": (behavioural or {}).get(o.name),
                "harm_score": h,
                "self_score": s,
                "harm_layer": model.harm.layer,
                "harm_threshold": model.harm.threshold,
                "harm_train_errors": model.harm.train_errors,
                "harm_margin": model.harm.margin,
                "self_layer": model.self_report.layer,
                "self_threshold": model.self_report.threshold,
                "self_train_errors": model.self_report.train_errors,
                "self_margin": model.self_report.margin,
                "train_scores": {k: list(v) for k, v in model.train_scores.items()},
                "predicted": predict(h, s, model),
            }
        )
    truth = [f["truth"] for f in folds]
    pred = [f["predicted"] for f in folds]

    # AUC of the decision values (score − the fold's threshold): each fold has its own
    # direction and scale, so raw scores of different folds are not comparable
    def decision(f: dict[str, Any], axis: str) -> float:
        t = f[f"{axis}_threshold"]
        return math.nan if t is None else f[f"{axis}_score"] - t

    def axis_auc(axis: str, attr: str) -> float:
        d = np.array([decision(f, axis) for f in folds])
        y = np.array([getattr(by_name[f["held_out"]], attr) for f in folds])
        ok = np.isfinite(d)
        return auc(d[ok], y[ok]) if ok.all() else math.nan

    harm_auc = axis_auc("harm", "harmful")
    self_auc = axis_auc("self", "self_misaligned")
    out: dict[str, Any] = {
        "n_organisms": len(folds),
        "n_neutral_prompts": int(len(next(iter(base.neutral.values())))),
        "layers": sorted(base.neutral),
        "harm_direction": "published" if base.published else "kit",
        "folds": folds,
        "correct": sum(t == p for t, p in zip(truth, pred, strict=True)),
        "confusion_truth": confusion(truth, pred),
        "auc_harm": None if math.isnan(harm_auc) else harm_auc,
        "auc_self": None if math.isnan(self_auc) else self_auc,
    }
    if behavioural:
        beh = [f["behavioural"] or "undetermined" for f in folds]
        out["confusion_behavioural"] = confusion(beh, pred)
        out["agrees_with_behavioural"] = sum(b == p for b, p in zip(beh, pred, strict=True))
    return out
