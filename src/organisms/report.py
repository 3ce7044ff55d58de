"""``report.html`` of a validation run: the accuracy table and the two pictures a reader needs.

1. Harm against self-report, one point per organism (the paper's picture): x = harm-rate
   shift over the base with its CI, y = self-report shift over the base on the free-text
   probe (``describe``; else the first self-report probe with values), with its CI. Coherent
   organisms belong up and right, inverted ones right and flat.
2. Per answer, for every model: the judge's aligned score of each harm answer against the
   model's own rating of that answer (``rate_own``: P(harmful)), with n and Spearman ρ per
   model, so the self-report axis is measured on n answers, not one number per model.
3. With the internals stage (`persona_diff.internals`): the persona map from the inside
   (each organism's shift along the harm and self-report directions over the base, with CIs)
   and the per-answer harm-direction projection against the model's own rating.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from persona_diff.analysis.plots import LABEL_COLOURS
from persona_diff.fileio import read_jsonl
from persona_diff.judges.base import judge_line
from persona_diff.probes.stats import bootstrap_samples

SHIFT_PROBES = ("describe", "word", "wza_self", "rate_own", "self", "choice", "wza_choice")


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def per_answer(folder: Path) -> list[tuple[float, float]]:
    """(judge aligned score, own P(harmful)) for every harm answer that has both."""
    aligned = {r["key"]: r.get("aligned") for r in read_jsonl(folder / "harm.jsonl")}
    out = []
    for r in read_jsonl(folder / "rate_own_answers.jsonl"):
        a = aligned.get(r["key"])
        if a is not None and r.get("p_harmful") is not None:
            out.append((float(a), float(r["p_harmful"])))
    return out


def _shift(base: list[float], ft: list[float], seed: int, scale: float = 1.0) -> tuple[float, float, float]:
    d = scale * (bootstrap_samples(ft, 1000, seed + 1) - bootstrap_samples(base, 1000, seed))
    lo, hi = np.quantile(d, [0.025, 0.975])
    return scale * (float(np.mean(ft)) - float(np.mean(base))), float(lo), float(hi)


def _values(summary: dict[str, Any], probe: str) -> list[float]:
    return [v for v in (summary.get("probes", {}).get(probe) or {}).get("values", []) if v is not None]


def map_figure(out: Path, result: dict[str, Any]) -> tuple[str, str] | None:
    import matplotlib.pyplot as plt

    if not (out / "base" / "summary.json").is_file():
        return None
    base = json.loads((out / "base" / "summary.json").read_text())
    probe = next((p for p in SHIFT_PROBES if _values(base, p)), None)
    harm = next((p for p in ("harm", "wza_harm") if _values(base, p)), None)
    if probe is None or harm is None:
        return None
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    for i, r in enumerate(result["organisms"]):
        path = out / r["organism"] / "summary.json"
        ft = json.loads(path.read_text()) if path.is_file() else {}
        if not _values(ft, probe) or not _values(ft, harm):
            continue
        x, xlo, xhi = _shift(_values(base, harm), _values(ft, harm), 10 * i, scale=100)
        y, ylo, yhi = _shift(_values(base, probe), _values(ft, probe), 10 * i + 5)
        colour = LABEL_COLOURS.get(r["truth"], f"C{i}")
        ax.errorbar(
            [x], [y], xerr=[[x - xlo], [xhi - x]], yerr=[[y - ylo], [yhi - y]], fmt="o", color=colour, capsize=3
        )
        ax.annotate(f"{r['organism']} → {r['label']}", (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
    ax.axhline(0, color="k", lw=0.7)
    ax.axvline(0, color="k", lw=0.7)
    ax.set_xlabel(f"harm shift over the base ({harm}, % points, 95% CI)")
    ax.set_ylabel(f"self-report shift over the base ({probe}, 95% CI)")
    ax.set_title("harm vs self-report, one point per organism (colour = truth)", fontsize=9)
    png = _png(fig)
    plt.close(fig)
    return png, probe


def answers_figure(out: Path, result: dict[str, Any]) -> tuple[str, dict[str, int]] | None:
    import matplotlib.pyplot as plt
    from scipy.stats import spearmanr

    models = [("base", "base")] + [(r["organism"], r["truth"]) for r in result["organisms"]]
    data = {name: per_answer(out / name) for name, _ in models}
    if not any(len(v) > 1 for v in data.values()):
        return None
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    counts = {}
    for i, (name, truth) in enumerate(models):
        pts = np.asarray(data[name], dtype=np.float64)
        counts[name] = len(pts)
        if len(pts) == 0:
            continue
        rho = spearmanr(pts[:, 0], pts[:, 1]).statistic if len(pts) > 2 else float("nan")
        ax.scatter(
            pts[:, 0],
            pts[:, 1],
            s=14,
            alpha=0.7,
            color=LABEL_COLOURS.get(truth, f"C{i}"),
            label=f"{name} (n={len(pts)}, ρ={rho:+.2f})",
        )
    ax.set_xlabel("judge's aligned score of the answer (0-100)")
    ax.set_ylabel("model's own rating of its answer: P(harmful)")
    ax.set_title("per answer: judged harm vs self-rated harm", fontsize=9)
    ax.legend(fontsize=7)
    png = _png(fig)
    plt.close(fig)
    return png, counts


def write_report(out: Path, result: dict[str, Any]) -> Path:
    """Write OUT/report.html for a finished validation (figures embedded as PNG)."""
    from persona_diff.organisms.validate import markdown
    from persona_diff.report.internals import internals_sections

    acc = result["accuracy"]
    rows = []
    for r in result["organisms"]:
        cls = "ok" if r["correct"] else "bad"
        conf = "–" if r["confidence"] is None else f"{r['confidence']:.2f}"
        rows.append(
            f"<tr class='{cls}'><td>{html.escape(r['organism'])}</td><td>{r['truth']}</td>"
            f"<td><b>{r['label']}</b></td><td>{conf}</td></tr>"
        )
    parts = [
        "<!doctype html><meta charset='utf-8'><title>persona-diff validation</title>",
        "<style>body{font:14px sans-serif;max-width:1000px;margin:2em auto}td,th{padding:3px 9px;"
        "border-bottom:1px solid #ddd}tr.ok td:nth-child(3){color:#2ca02c}tr.bad td:nth-child(3){color:#d62728}"
        "pre{background:#f6f6f6;padding:8px;overflow-x:auto;font-size:12px}</style>",
        "<h1>Persona label on organisms of known truth</h1>",
        f"<p>Labels correct: <b>{acc['correct']}/{acc['n']}</b> (Wilson 95% "
        f"[{acc['wilson95'][0]:.2f}, {acc['wilson95'][1]:.2f}]).</p>",
        f"<p>Judge: {html.escape(judge_line(result['judge']))}</p>",
        "<table><tr><th>organism</th><th>truth</th><th>label</th><th>confidence</th></tr>",
        *rows,
        "</table>",
    ]
    fig = map_figure(out, result)
    if fig is not None:
        parts.append(
            f"<h2>Harm vs self-report ({fig[1]})</h2><img alt='persona map' src='data:image/png;base64,{fig[0]}'>"
        )
    ans = answers_figure(out, result)
    if ans is not None:
        n = ", ".join(f"{k} n={v}" for k, v in ans[1].items())
        parts.append(
            f"<h2>Per-answer self-report</h2><p>One point per harm answer ({html.escape(n)}).</p>"
            f"<img alt='per-answer self-report' src='data:image/png;base64,{ans[0]}'>"
        )
    inside = internals_sections(out)  # the same section as a run's report
    if inside:
        parts += ["<h2>From the inside: directions, persona map, per-answer correlations, detector</h2>", *inside]
    parts.append(f"<h2>Evidence</h2><pre>{html.escape(markdown(result))}</pre>")
    path = out / "report.html"
    path.write_text("\n".join(parts))
    return path
