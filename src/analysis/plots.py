"""Figures (matplotlib, Agg backend): each function writes ``<out_stem>.png`` and ``.svg``.

All functions take plain Python data (what the run directory's JSON files hold), so a figure
can be redrawn from a finished run without loading a model (see ``scripts/plot_run.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from persona_diff.rundir.values import LABEL_COLOURS  # noqa: E402  (every persona label, base, control)


def _colour(label: str, i: int) -> str:
    return LABEL_COLOURS.get(label, f"C{i % 10}")


def save_figure(fig: Any, out_stem: str | Path) -> list[Path]:
    """Save as PNG (150 dpi) and SVG; close the figure; return both paths."""
    stem = Path(out_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.tight_layout()
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def plot_feature_vs_selfreport(
    feature: Sequence[float],
    self_report: Sequence[float],
    labels: Sequence[str],
    out_stem: str | Path,
    names: Sequence[str] | None = None,
    xlabel: str = "persona feature (projection / latent activation)",
    ylabel: str = "self-reported alignment",
    title: str = "Feature activation vs self-report",
) -> list[Path]:
    """Scatter, one point per answer or per model, coloured by label (names annotate points)."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    uniq = list(dict.fromkeys(labels))
    for i, lab in enumerate(uniq):
        idx = [j for j, x in enumerate(labels) if x == lab]
        ax.scatter(
            [feature[j] for j in idx], [self_report[j] for j in idx], label=lab, color=_colour(lab, i), alpha=0.8, s=30
        )
    if names is not None and len(names) <= 40:
        for x, y, n in zip(feature, self_report, names, strict=True):
            ax.annotate(str(n), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(title="label", fontsize=8)
    return save_figure(fig, out_stem)


def plot_dose_response(
    rows: Sequence[Mapping[str, Any]], out_stem: str | Path, title: str = "Dose-response"
) -> list[Path]:
    """EM% (solid) and coherent% (dashed) against α; one panel per (model, mode), one colour
    per (direction, layer). Random-direction controls are drawn in grey."""
    panels: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        panels.setdefault((r.get("model", "model"), r.get("mode", "add")), []).append(r)
    keys = sorted(panels, key=str) or [("model", "add")]
    fig, axes = plt.subplots(1, len(keys), figsize=(5.2 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        lines: dict[tuple, list[Mapping[str, Any]]] = {}
        for r in panels.get(key, []):
            lines.setdefault((r.get("direction", "persona"), r.get("layer")), []).append(r)
        for i, ((kind, layer), rs) in enumerate(sorted(lines.items(), key=lambda kv: str(kv[0]))):
            rs = sorted(rs, key=lambda r: r["alpha"])
            xs = [r["alpha"] for r in rs]
            colour = "0.55" if kind == "random" else f"C{i % 10}"
            tag = f"{kind} L{layer}"
            ax.plot(xs, [r.get("em_pct") for r in rs], "-o", color=colour, label=f"EM% {tag}", ms=4)
            ax.plot(
                xs, [r.get("coherent_pct") for r in rs], "--s", color=colour, label=f"coherent% {tag}", ms=3, alpha=0.8
            )
        floor = next(
            (r.get("coherence_floor") for r in panels.get(key, []) if r.get("coherence_floor") is not None), None
        )
        if floor is not None:
            ax.axhline(floor, color="k", lw=0.8, ls=":", label="coherence floor")
        model, mode = key
        ax.set_title(f"{title}: {mode} on {model}")
        ax.set_xlabel("α (fraction ablated)" if mode == "ablate" else "α")
        ax.set_ylabel("%")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, out_stem)


def plot_top_latents(
    latents: Sequence[Mapping[str, Any]],
    out_stem: str | Path,
    k: int = 20,
    title: str = "Top latents by Δ",
    value_key: str = "delta",
) -> list[Path]:
    """Horizontal bars of the top-k latents' Δ (mean ft − mean base activation)."""
    items = sorted(latents, key=lambda r: -abs(float(r[value_key])))[:k][::-1]
    fig, ax = plt.subplots(figsize=(6, max(2.5, 0.28 * len(items) + 1)))
    vals = [float(r[value_key]) for r in items]
    names = [str(r.get("name") or f"latent {r.get('latent_id', r.get('index', '?'))}") for r in items]
    ax.barh(range(len(items)), vals, color=["#d62728" if v > 0 else "#1f77b4" for v in vals])
    ax.set_yticks(range(len(items)), names, fontsize=7)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel(value_key)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return save_figure(fig, out_stem)


def plot_sr_bars(
    values: Mapping[str, Mapping[str, Any]],
    out_stem: str | Path,
    base: str = "base",
    title: str = "Moral susceptibility S and robustness R",
) -> list[Path]:
    """Bars of S and R per model (with CIs when given as ``S_ci``/``R_ci``), base first and
    each other bar annotated with its change relative to the base (in %)."""
    order = [base] + [m for m in values if m != base] if base in values else list(values)
    fig, axes = plt.subplots(1, 2, figsize=(max(6, 1.3 * len(order) + 3), 3.8))
    for ax, q in zip(axes, ("S", "R"), strict=True):
        vals = [values[m].get(q) for m in order]
        errs = []
        for m, v in zip(order, vals, strict=True):
            c = values[m].get(f"{q}_ci")
            errs.append([v - c[0], c[1] - v] if c and v is not None else [0, 0])
        heights = [v if v is not None else 0 for v in vals]
        colours = [
            "#1f77b4" if m == base else _colour(str(values[m].get("label", "")), i + 1) for i, m in enumerate(order)
        ]
        ax.bar(
            range(len(order)), heights, yerr=list(zip(*errs, strict=True)) if errs else None, color=colours, capsize=3
        )
        b = values.get(base, {}).get(q)
        for i, (m, v) in enumerate(zip(order, vals, strict=True)):
            if m != base and v is not None and b:
                top = v + errs[i][1]  # above the error bar
                ax.annotate(
                    f"{100 * (v - b) / b:+.0f}%",
                    (i, top),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    xytext=(0, 2),
                    textcoords="offset points",
                )
        ax.set_xticks(range(len(order)), order, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{q} ({'susceptibility' if q == 'S' else 'robustness'})")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    return save_figure(fig, out_stem)


def plot_harm_vs_selfreport(
    points: Sequence[Mapping[str, Any]], out_stem: str | Path, title: str = "Harm vs self-report per fine-tune"
) -> list[Path]:
    """The paper's picture: per model, EM% (y) against its self-reported misalignment (x),
    both with their CIs, one panel per self-report probe. Each point is a mapping with
    ``name``, ``label``, ``probe``, ``x``, ``x_ci``, ``y``, ``y_ci`` ([lo, hi] or None) and
    ``informative`` (False draws a hollow marker: that probe is left out of the label).
    Coherent models sit up and right, inverted ones up and left (at the base's level)."""
    from persona_diff.rundir.values import label_sort_key

    probes = list(dict.fromkeys(str(p["probe"]) for p in points)) or ["self-report"]
    ncol = min(3, len(probes))
    nrow = (len(probes) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol, 3.9 * nrow), squeeze=False)
    seen: dict[str, Any] = {}
    for ax, probe in zip(axes.flat, probes, strict=False):
        for p in (q for q in points if q["probe"] == probe and q.get("x") is not None and q.get("y") is not None):
            lab, x, y = str(p.get("label", "?")), float(p["x"]), float(p["y"])
            colour = _colour(lab, len(seen))
            xe = [[x - p["x_ci"][0]], [p["x_ci"][1] - x]] if p.get("x_ci") else None
            ye = [[y - p["y_ci"][0]], [p["y_ci"][1] - y]] if p.get("y_ci") else None
            ax.errorbar(x, y, xerr=xe, yerr=ye, fmt="none", ecolor=colour, alpha=0.6, capsize=2, lw=1)
            hollow = p.get("informative") is False
            h = ax.scatter(
                [x], [y], s=46, color="white" if hollow else colour, edgecolors=colour, linewidths=1.5, zorder=3
            )
            seen.setdefault(lab, h)
            ax.annotate(str(p.get("name", "")), (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
        ax.set_title(f"{probe}", fontsize=9)
        ax.set_xlabel("self-reported misalignment (0-1)")
        ax.set_ylabel("EM% (judge)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(probes) :]:
        ax.set_visible(False)
    if seen:
        order = sorted(seen, key=label_sort_key)
        axes.flat[0].legend([seen[k] for k in order], order, fontsize=7, title="label", title_fontsize=7)
    fig.suptitle(title + " (hollow: probe uninformative on that model)", fontsize=10)
    return save_figure(fig, out_stem)
