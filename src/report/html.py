"""`build_report(run_dir)`: one self-contained ``report.html`` from a run directory.

Everything comes from the files `persona_diff.rundir.load_run` reads (no model is loaded), so
``persona-diff report RUN_DIR`` rebuilds the page after any stage reran. A study directory
(`run --pairs`) gets the study page (`persona_diff.report.study`). Figures are redrawn from
the data into ``RUN_DIR/plots/report_*.{png,svg}`` and embedded as base64 PNG; other PNGs in
``plots/`` are embedded as they are. A section whose inputs are missing says "stage not
run". A judge without measured agreement gets a visible warning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from persona_diff.analysis import plots
from persona_diff.errors import PersonaDiffError
from persona_diff.fileio import atomic_write
from persona_diff.log import get_logger
from persona_diff.report.htmlkit import (
    badge,
    details_json,
    e,
    figure,
    img,
    judge_section,
    missing,
    page,
    table,
)
from persona_diff.report.internals import internals_sections
from persona_diff.rundir import ROLES, RunResult, load_run

log = get_logger(__name__)


def _roles(d: RunResult) -> list[str]:
    return [r for r in ROLES if r in d.probes] + [r for r in d.probes if r not in ROLES]


def _section_summary(d: RunResult) -> str:
    s = d.summary
    if s is None:
        return ""
    row: dict[str, Any] = {"label": s.label, "confidence": s.label_confidence}
    for role in ROLES:
        row[f"EM% {role}"] = s.em_pct(role)
    row["self-report (fine-tune, informative probes)"] = s.self_report("finetuned")
    row["feature shift"] = s.feature_shift
    row["judge"] = s.judge.spec if s.judge else None
    return "<h2>Summary</h2>" + table([row])


def _section_label(d: RunResult) -> str:
    lab = d.label
    if lab is None:
        return missing("persona label (probes)")
    out = [f"<p>Persona label: {badge(lab.label, element_id='persona-label')}</p>"]
    if lab.label_text:
        out.append(f"<p>{e(lab.label_text)}</p>")
    if lab.confidence is not None:
        out.append(f"<p class='muted'>bootstrap agreement with this label: {lab.confidence:.0%}</p>")
    if lab.evidence:
        rows = [
            {"probe": k, **{f: v for f, v in ev.items() if f not in ("measured", "adaptive")}}
            for k, ev in lab.evidence.items()
        ]
        out.append("<h3>Evidence per probe</h3>" + table(rows))
    elif lab.notes:
        out.append("<h3>Evidence</h3><ul>" + "".join(f"<li>{e(x)}</li>" for x in lab.notes) + "</ul>")
    for key in ("metrics", "thresholds"):
        val = lab.extra.get(key)
        if isinstance(val, dict):
            out.append(f"<h3>{key.title()}</h3>" + table([{"name": k, "value": v} for k, v in val.items()]))
    return "".join(out)


def _section_probes(d: RunResult, figdir: Path) -> str:
    if not d.probes:
        return missing("probes")
    roles = _roles(d)
    names = list(dict.fromkeys(p for r in roles for p in d.probes[r]))
    rows = []
    for p in names:
        row: dict[str, Any] = {"probe": p}
        for r in roles:
            ps = d.probes[r].get(p)
            if ps is not None and ps.kind == "moral":
                row[r] = ", ".join(f"{q} {v.fmt()}" for q, v in ps.details.items()) or None
            else:
                row[r] = None if ps is None else ps.estimate
        rows.append(row)
    out = [
        "<p class='muted'>harm: EM% (0-100); self-report probes: self-reported misalignment (0-1); "
        "95% bootstrap CIs in brackets</p>",
        table(rows, ["probe", *roles]),
    ]
    diag = [
        {"probe": p.name, "model": r, "informative": p.informative, **p.diagnostics, "reasons": "; ".join(p.reasons)}
        for r in roles
        for p in d.probes[r].values()
        if p.informative is not None
    ]
    if diag:  # persona_diff.probes.informative
        out.append(
            "<h3>Self-report informativeness</h3><p class='muted'>position bias = |P(first option) over both "
            "orders − 0.5|; an uninformative probe is left out of the persona label</p>" + table(diag)
        )
    if d.moral:
        base = "base" if "base" in d.moral else next(iter(d.moral))
        label = d.label.label if d.label else None
        values = {m: s.plot_row(label if m != base else None) for m, s in d.moral.items()}
        out.append("<h3>Moral susceptibility / robustness</h3>")
        out.append(figure(plots.plot_sr_bars, figdir / "report_sr_bars", "S/R bars", values, base=base))
        out.append(table([{"model": m, "S": s.S, "R": s.R} for m, s in d.moral.items()]))
    return "".join(out)


def _section_diffing(d: RunResult, figdir: Path) -> str:
    if not d.directions:
        return missing("diffing")
    out = []
    for method, ds in d.directions.items():
        rows = [r.to_dict() for r in ds.rows]
        out.append(f"<h3>{e(method)} (layer {e(ds.layer)})</h3>")
        if rows:
            out.append(
                figure(
                    plots.plot_top_latents,
                    figdir / f"report_top_{method}",
                    f"top latents {method}",
                    rows,
                    value_key="score",
                    title=f"{method}: top directions",
                )
            )
        cols = [
            c
            for c in ("rank", "latent_id", "score", "sign", "norm", "mean_base", "mean_ft")
            if any(c in r for r in rows)
        ]
        out.append(table(rows[:20], cols or None))
    return "".join(out)


def _section_steering(d: RunResult, figdir: Path) -> str:
    if not d.dose_response:
        return missing("steering")
    rows = [r.to_dict() for r in d.dose_response]
    out = [figure(plots.plot_dose_response, figdir / "report_dose_response", "dose-response", rows)]
    if d.steering:
        out.append(table([c.to_dict() for c in d.steering]))
    cols = ["model", "mode", "direction", "layer", "alpha", "em_pct", "coherent_pct", "n_scored", "mean_aligned"]
    out.append("<details><summary>all rows</summary>" + table(rows, cols) + "</details>")
    return "".join(out)


def _section_analysis(d: RunResult, figdir: Path) -> str:
    out = []
    f = d.feature_vs_selfreport
    if f is not None and f.feature:
        kw = {k: v for k, v in (("xlabel", f.xlabel), ("ylabel", f.ylabel)) if v is not None}
        out.append(
            figure(
                plots.plot_feature_vs_selfreport,
                figdir / "report_feature_vs_selfreport",
                "feature vs self-report",
                f.feature,
                f.self_report,
                f.labels,
                names=f.names,
                **kw,
            )
        )
    if d.correlations:
        out.append(
            "<h3>Correlations (bootstrap 95% CIs)</h3>"
            + table(
                [c.to_dict() for c in d.correlations],
                ["feature", "target", "n", "pearson", "pearson_ci", "spearman", "spearman_ci"],
            )
        )
    return "".join(out) or missing("analysis")


def _internals_elsewhere(d: RunResult) -> str:
    """A pair of a study has no internals of its own: the study maps all its fine-tunes at once."""
    if any((d.run_dir.parent / "internals").glob("**/internals.json")):
        return (
            "<p class='muted'>Mapped with the study's other fine-tunes of the same base: see the "
            "<a href='../report.html'>study report</a>.</p>"
        )
    return missing("internals")


def _section_manifest(d: RunResult) -> str:
    out = []
    if d.manifest:
        models = d.manifest.get("models")
        if isinstance(models, dict):
            out.append(table([{"role": k, **(v if isinstance(v, dict) else {"spec": v})} for k, v in models.items()]))
        out.append(details_json("manifest.json", d.manifest))
    if d.config:
        out.append(details_json("resolved config", d.config))
    return "".join(out) or missing("manifest")


def render_html(d: RunResult) -> str:
    """The page of one run directory (a pair); `persona_diff.report.study.render_study` for a study."""
    if d.kind == "study":
        from persona_diff.report.study import render_study

        return render_study(d)
    figdir = d.run_dir / "plots"
    title = "persona-diff report"
    cfg = d.config or {}
    if d.summary is not None:
        title += f": {d.summary.base} vs {d.summary.finetuned}"
    elif cfg.get("base") and cfg.get("finetuned"):
        title += f": {cfg['base']} vs {cfg['finetuned']}"
    body = [
        _section_summary(d),
        "<h2>Persona label</h2>",
        _section_label(d),
        "<h2>Judge</h2>",
        judge_section(d.judge, "no judge.json in this run"),
        "<h2>Probes</h2>",
        _section_probes(d, figdir),
        "<h2>Model diffing: top directions</h2>",
        _section_diffing(d, figdir),
        "<h2>Steering (causal check)</h2>",
        _section_steering(d, figdir),
        "<h2>Features vs behaviour and self-report</h2>",
        _section_analysis(d, figdir),
        "<h2>Persona from the inside: harm and self-report directions</h2>",
        "".join(internals_sections(d.run_dir)) or _internals_elsewhere(d),
    ]
    others = [p for p in d.extra_plots if not p.name.startswith("report_")]
    if others:
        body.append("<h2>Other figures</h2>" + "".join(f"<h3>{e(p.stem)}</h3>{img(p, p.stem)}" for p in others))
    body += ["<h2>Provenance</h2>", _section_manifest(d)]
    return page(title, d.run_dir, body)


def build_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``report.html`` (default: inside `run_dir`) and return its path."""
    if not Path(run_dir).is_dir():
        raise PersonaDiffError(f"run directory {run_dir} does not exist; pass the --out folder of a `persona-diff run`")
    d = load_run(run_dir)
    path = Path(out) if out else d.run_dir / "report.html"
    atomic_write(path, render_html(d))
    log.info("report written to %s", path)
    return path
