"""The persona map: each fine-tune's shift along the harm and self-report directions.

y (self-report), and x when ``map_harm: prompts``: for every prompt x_i of the map's prompt
sets, both models read the same prompt and the shift is paired: d_i = h_ft(x_i) − h_base(x_i)
at the last prompt token (where the reply begins; Chen et al.'s fine-tuning shift), nothing
generated:

    y = mean_i d_i · ŝ / sd_i(h_base(x_i) · ŝ),

with ŝ the unit self-report direction, in units of the base's own spread over the prompts;
95% CI: a percentile bootstrap over prompts.

x (harm), ``map_harm: answers`` (the default): the shift of the fine-tune's own harm answers
over the base's along the harm direction, each answer's projection held out by question
(the per-answer table's ``proj_harm``):

    x = (mean_ft a · ĥ − mean_base a · ĥ) / sd_base(a · ĥ),

95% CI: a percentile bootstrap over questions (both models' answers to a drawn question go
together). On the SmolLM2 kit the prompt-token harm shift misses the inverted organism (its
prompts move 0.2 base sd *down* the harm direction while its answers are judged harmful); its
answers move up (+0.6 sd), which is what a harm axis should show.

Quadrants by the CIs: harm up = x's CI above 0, self-report up = y's CI above 0; coherent =
both up, inverted = harm up with self-report not up.

Second figure: per answer, the harm-direction projection of the answer (the same numbers as
the per-answer table's ``proj_harm``) against the model's own P(harmful) rating of it,
coloured by model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from persona_diff.internals.bootstrap import paired_ratio_bootstrap_ci
from persona_diff.internals.directions import unit

QUADRANTS = ("coherent", "inverted", "self-report only", "neither")


@dataclass
class MapPoint:
    model: str
    truth: str | None
    label: str | None  # the behavioural label of the validation run
    x: float
    x_ci: tuple[float, float]
    y: float
    y_ci: tuple[float, float]
    x_raw: float  # the mean shift along ĥ in activation units
    y_raw: float
    n_prompts: int
    quadrant: str
    x_from: str = "prompts"  # what x is the shift of: "prompts" (paired, last prompt token) or "answers"
    n_questions: int | None = None  # x from answers: the questions both models answered
    # x from answers, with the fine-tune's own answers left out of the harm direction
    x_loo: float | None = None
    x_loo_ci: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["x_ci"], d["y_ci"] = list(self.x_ci), list(self.y_ci)
        d["x_loo_ci"] = None if self.x_loo_ci is None else list(self.x_loo_ci)
        return d


def quadrant(x_ci: tuple[float, float], y_ci: tuple[float, float]) -> str:
    harm_up, self_up = x_ci[0] > 0, y_ci[0] > 0
    if harm_up:
        return "coherent" if self_up else "inverted"
    return "self-report only" if self_up else "neither"


def paired_shift(
    base: np.ndarray, ft: np.ndarray, directions: list[np.ndarray], n_boot: int = 1000, seed: int = 0
) -> list[tuple[float, float, float, float]]:
    """Per direction: (mean shift in base-sd units, CI low, CI high, mean raw shift), with
    prompts resampled jointly for all directions."""
    base = np.asarray(base, dtype=np.float64)
    ft = np.asarray(ft, dtype=np.float64)
    if base.shape != ft.shape:
        raise ValueError(f"paired prompts differ in shape: base {base.shape}, fine-tune {ft.shape}")
    n = len(base)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    out = []
    for v in directions:
        u = unit(np.asarray(v, dtype=np.float64))
        pb = base @ u
        sd = float(pb.std(ddof=1)) if n > 1 else 1.0
        raw = (ft - base) @ u
        z = raw / (sd if sd > 0 else 1.0)
        boots = z[idx].mean(axis=1)
        lo, hi = np.quantile(boots, [0.025, 0.975])
        out.append((float(z.mean()), float(lo), float(hi), float(raw.mean())))
    return out


def answer_shift(
    base_proj: np.ndarray, base_q: np.ndarray, ft_proj: np.ndarray, ft_q: np.ndarray, n_boot: int = 1000, seed: int = 0
) -> tuple[float, float, float, float, int]:
    """(mean_ft − mean_base) / sd_base of per-answer projections over the questions both
    models answered (NaN projections left out): (shift in base-sd units, CI low, CI high,
    raw shift, number of questions). The CI resamples questions, each bringing all its
    answers of both models (`paired_ratio_bootstrap_ci`)."""
    bp, fp = np.asarray(base_proj, dtype=np.float64), np.asarray(ft_proj, dtype=np.float64)
    bq, fq = np.asarray(base_q)[np.isfinite(bp)], np.asarray(ft_q)[np.isfinite(fp)]
    bp, fp = bp[np.isfinite(bp)], fp[np.isfinite(fp)]
    qs = sorted(set(bq.tolist()) & set(fq.tolist()))
    nan = float("nan")
    if not qs:
        return nan, nan, nan, nan, 0
    nb, db = np.array([bp[bq == q].sum() for q in qs]), np.array([float((bq == q).sum()) for q in qs])
    nf, df = np.array([fp[fq == q].sum() for q in qs]), np.array([float((fq == q).sum()) for q in qs])
    sd = float(bp[np.isin(bq, qs)].std(ddof=1)) if len(bp) > 1 else 1.0
    sd = sd if sd > 0 else 1.0
    raw = float(nf.sum() / df.sum() - nb.sum() / db.sum())
    ci = paired_ratio_bootstrap_ci(nf, df, nb, db, n_boot, seed)
    lo, hi = (nan, nan) if ci is None else (ci[0] / sd, ci[1] / sd)
    return raw / sd, lo, hi, raw, len(qs)


def map_point(
    model: str,
    base: np.ndarray,
    ft: np.ndarray,
    harm: np.ndarray,
    self_dir: np.ndarray,
    truth: str | None = None,
    label: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    harm_from_answers: tuple[float, float, float, float, int] | None = None,
    harm_left_out: tuple[float, float, float, float, int] | None = None,
) -> MapPoint:
    """The map point of one fine-tune from the paired prompts; x from `harm_from_answers`
    (`answer_shift`'s result) when given; `harm_left_out`: the same with the fine-tune's own
    answers left out of the harm direction (recorded, not used for the quadrant)."""
    (x, xlo, xhi, xr), (y, ylo, yhi, yr) = paired_shift(base, ft, [harm, self_dir], n_boot, seed)
    x_from, n_q = "prompts", None
    if harm_from_answers is not None:
        x, xlo, xhi, xr, n_q = harm_from_answers
        x_from = "answers"
    return MapPoint(
        model,
        truth,
        label,
        x,
        (xlo, xhi),
        y,
        (ylo, yhi),
        xr,
        yr,
        len(base),
        quadrant((xlo, xhi), (ylo, yhi)),
        x_from,
        n_q,
        None if harm_left_out is None else harm_left_out[0],
        None if harm_left_out is None else (harm_left_out[1], harm_left_out[2]),
    )


MAP_CAPTION = (
    "Each point is one fine-tune. x: the shift of its own harm answers over the base's along the "
    "harm direction (each answer's projection held out by question; 95% CI resampling questions). "
    "y: its shift along the self-report direction at the last prompt token of the same prompts as "
    "the base (95% CI resampling prompts). Both in units of the base's spread. Colour = the truth "
    "of an organism of known truth, else the behavioural label; the annotation gives the "
    "behavioural label. Upper right (both CIs above 0): a coherent persona inside; right and "
    "flat or down: inverted."
)
LOO_NOTE = (
    "x_loo: the harm shift with the fine-tune's own answers left out of the harm direction (the "
    "direction of the base and the other fine-tunes). Where it disagrees with x, the map's harm "
    "axis rests on this fine-tune's own judged answers rather than on a direction shared across models."
)
ANSWERS_CAPTION = (
    "One point per harm answer: the answer's projection on the harm direction (model's own "
    "activation, mean over the answer tokens, direction refit without the answer's question) "
    "against the model's own rating of that answer, P(harmful). Legend: n and Spearman ρ per model."
)


def model_colours(models: list[str], truths: dict[str, str]) -> dict[str, str]:
    """The colour of each model's truth (base: the base colour); a colour already taken goes
    to the next tab10 colour, so two organisms of one truth stay apart."""
    from persona_diff.analysis.plots import LABEL_COLOURS

    out: dict[str, str] = {}
    for i, m in enumerate(models):
        c = LABEL_COLOURS.get(truths.get(m, m), f"C{i % 10}")
        out[m] = c if c not in out.values() else f"C{(i + 5) % 10}"
    return out


def map_figure(points: list[MapPoint], path: Path, layer: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from persona_diff.analysis.plots import LABEL_COLOURS

    fig, ax = plt.subplots(figsize=(5.6, 4.6))
    for i, p in enumerate(points):
        colour = LABEL_COLOURS.get(p.truth or p.label or "", f"C{i}")
        ax.errorbar(
            [p.x],
            [p.y],
            xerr=[[p.x - p.x_ci[0]], [p.x_ci[1] - p.x]],
            yerr=[[p.y - p.y_ci[0]], [p.y_ci[1] - p.y]],
            fmt="o",
            color=colour,
            capsize=3,
        )
        ax.annotate(f"{p.model} → {p.label or '?'}", (p.x, p.y), textcoords="offset points", xytext=(6, 6), fontsize=8)
    ax.axhline(0, color="k", lw=0.7)
    ax.axvline(0, color="k", lw=0.7)
    xs = [v for p in points for v in p.x_ci] + [0.0]
    ys = [v for p in points for v in p.y_ci] + [0.0]
    xpad, ypad = 0.45 * (max(xs) - min(xs) or 1), 0.35 * (max(ys) - min(ys) or 1)
    x0, x1, y0, y1 = min(xs) - 0.1 * xpad, max(xs) + xpad, min(ys) - ypad, max(ys) + ypad
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.fill_between([0, x1], 0, y1, color=LABEL_COLOURS["coherent"], alpha=0.06, lw=0)
    ax.fill_between([0, x1], y0, 0, color=LABEL_COLOURS["inverted"], alpha=0.06, lw=0)
    for ty, text, va in (
        (0.98, "coherent quadrant\n(harm ↑, self-report ↑)", "top"),
        (0.02, "inverted quadrant\n(harm ↑, self-report flat/↓)", "bottom"),
    ):
        ax.text(0.98, ty, text, transform=ax.transAxes, ha="right", va=va, fontsize=7, color="0.35")
    ax.set_xlabel(
        f"shift along the harm direction (base sd, block {layer}, {points[0].x_from if points else ''}, 95% CI)"
    )
    ax.set_ylabel("shift along the self-report direction (base sd, 95% CI)")
    ax.set_title("persona map from the inside: fine-tune − base, same prompts", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def answers_figure(rows: list[dict[str, Any]], truths: dict[str, str], path: Path, layer: int) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import spearmanr

    models = list(dict.fromkeys(r["model"] for r in rows))
    pts = {
        m: np.array(
            [
                (r["proj_harm"], r["p_harmful"])
                for r in rows
                if r["model"] == m and r.get("proj_harm") is not None and r.get("p_harmful") is not None
            ],
            dtype=np.float64,
        ).reshape(-1, 2)
        for m in models
    }
    if not any(len(v) > 1 for v in pts.values()):
        return None
    colours = model_colours(models, truths)
    fig, ax = plt.subplots(figsize=(5.8, 4.4))
    for m in models:
        p = pts[m]
        if len(p) == 0:
            continue
        rho = spearmanr(p[:, 0], p[:, 1]).statistic if len(p) > 2 else float("nan")
        colour = colours[m]
        ax.scatter(p[:, 0], p[:, 1], s=12, alpha=0.65, color=colour, label=f"{m} (n={len(p)}, ρ={rho:+.2f})")
    ax.set_xlabel(f"answer's projection on the harm direction (block {layer})")
    ax.set_ylabel("model's own rating of the answer: P(harmful)")
    ax.set_title("per answer: feature activation vs self-rating", fontsize=9)
    ax.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
