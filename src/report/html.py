"""`build_report(run_dir)`: one self-contained ``report.html`` from a run directory.

Everything comes from the JSON files listed in `persona_diff.report.inputs` (no model is
loaded), so ``persona-diff report RUN_DIR`` rebuilds the page after any stage reran. Figures
are redrawn from the data into ``RUN_DIR/plots/report_*.{png,svg}`` and embedded as base64
PNG; other PNGs in ``plots/`` are embedded as they are. A section whose inputs are missing
says "stage not run". A judge without measured agreement gets a visible warning.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
from pathlib import Path
from typing import Any

from persona_diff.analysis import plots
from persona_diff.errors import PersonaDiffError
from persona_diff.log import get_logger
from persona_diff.report.inputs import RunData, load_run

log = get_logger(__name__)

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em} td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3} .num{text-align:right;font-variant-numeric:tabular-nums}
.label{display:inline-block;padding:.3em .9em;border-radius:.4em;font-size:1.4em;font-weight:bold;color:#fff}
.label.coherent{background:#d62728}.label.inverted{background:#9467bd}.label.not-em{background:#2ca02c}.label.em-unmeasured{background:#ff7f0e}.label.unknown{background:#7f7f7f}
.warn{background:#fff3cd;border:2px solid #d39e00;padding:.6em 1em;font-weight:bold;color:#7a5a00}
.missing{color:#888;font-style:italic} img{max-width:100%;border:1px solid #eee;margin:.4em 0}
.muted{color:#666;font-size:.9em} details{margin:.5em 0}
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return _e("—" if v is None else v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.3g}" if abs(v) < 1e-3 or abs(v) >= 1e4 else f"{v:.3f}".rstrip("0").rstrip(".")
    if isinstance(v, list) and len(v) == 2 and all(isinstance(x, int | float) for x in v):
        return f"[{_fmt(float(v[0]))}, {_fmt(float(v[1]))}]"
    if isinstance(v, dict) and "value" in v:
        ci = v.get("ci")
        return _fmt(v["value"]) + (f" {_fmt(ci)}" if ci else "")
    if isinstance(v, dict | list):
        return _e(json.dumps(v, default=str)[:200])
    return _e(v)


def _table(rows: list[dict[str, Any]], cols: list[str] | None = None) -> str:
    if not rows:
        return '<p class="missing">no rows</p>'
    cols = cols or list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f'<td class="{"num" if isinstance(r.get(c), int | float) else ""}">{_fmt(r.get(c))}</td>' for c in cols) + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _missing(stage: str) -> str:
    return f'<p class="missing">stage not run: {_e(stage)} (its outputs are not in this run directory)</p>'


def _figure(fn: Any, out_stem: Path, alt: str, *args: Any, **kw: Any) -> str:
    try:
        paths = fn(*args, out_stem, **kw)
    except Exception as e:  # a malformed input file must not sink the whole report
        log.warning("figure %s failed: %s", out_stem.name, e)
        return f'<p class="missing">figure {_e(out_stem.name)} could not be drawn: {_e(e)}</p>'
    return _img(paths[0], alt)


def _section_label(d: RunData) -> str:
    if not d.label:
        return _missing("persona label (probes)")
    lab = str(d.label.get("label", "unknown"))
    cls = lab.lower() if lab.lower() in ("coherent", "inverted", "not-em", "em-unmeasured") else "unknown"
    ev = d.label.get("evidence") or []
    out = [f'<p>Persona label: <span class="label {cls}" id="persona-label">{_e(lab)}</span></p>']
    if d.label.get("label_text"):
        out.append(f"<p>{_e(d.label['label_text'])}</p>")
    conf = d.label.get("confidence")
    if isinstance(conf, int | float):
        out.append(f"<p class='muted'>bootstrap agreement with this label: {conf:.0%}</p>")
    if isinstance(ev, dict):  # label_persona's per-probe evidence
        rows = [{"probe": k, **{f: v for f, v in e.items() if f != "measured"}} for k, e in ev.items() if isinstance(e, dict)]
        out.append("<h3>Evidence per probe</h3>" + _table(rows))
    elif ev:
        out.append("<h3>Evidence</h3><ul>" + "".join(f"<li>{_e(x)}</li>" for x in ev) + "</ul>")
    for key in ("metrics", "thresholds"):
        if isinstance(d.label.get(key), dict):
            out.append(f"<h3>{key.title()}</h3>" + _table([{"name": k, "value": v} for k, v in d.label[key].items()]))
    return "".join(out)


def _section_judge(d: RunData) -> str:
    if not d.judge:
        return '<p class="warn">UNCALIBRATED judge: no judge.json in this run; EM% figures have unknown agreement with GPT-4o.</p>'
    j, agr = d.judge, d.judge.get("agreement")
    out = [f"<p>Judge: <code>{_e(j.get('spec', '?'))}</code></p>"]
    if not j.get("calibrated") or not agr:
        out.append(
            '<p class="warn">UNCALIBRATED judge: its agreement with a reference judge was not measured; '
            "treat EM% and coherent% below as unvalidated.</p>"
        )
    if isinstance(agr, dict):
        keys = [k for k in ("mode", "mean_spearman", "mean_pearson", "mean_auc", "mean_coherent_spearman", "max_abs_em_gap") if k in agr]
        out.append(_table([{k: agr[k] for k in keys}]))
        if agr.get("files"):
            cols = [c for c in ("file", "n", "spearman", "pearson", "auc", "em_reference", "em_judge") if c in agr["files"][0]]
            out.append("<details><summary>per-file agreement</summary>" + _table(agr["files"], cols) + "</details>")
    return "".join(out)


def _section_probes(d: RunData, figdir: Path) -> str:
    out = []
    if d.probes and isinstance(d.probes.get("models"), dict):
        models = d.probes["models"]
        probes_ = list(dict.fromkeys(k for m in models.values() for k in m))
        out.append(_table([{"probe": p, **{m: models[m].get(p) for m in models}} for p in probes_], ["probe", *models]))
    elif d.probes:
        out.append(_table([{"name": k, "value": v} for k, v in d.probes.items()]))
    else:
        out.append(_missing("probes"))
    diag = (d.probes or {}).get("diagnostics")
    if isinstance(diag, dict) and any(diag.values()):  # persona_diff.probes.informative
        rows = [{"probe": p, "model": m, **cols} for m, per in diag.items() for p, cols in per.items()]
        out.append("<h3>Self-report informativeness</h3><p class='muted'>position bias = |P(first option) over both "
                   "orders − 0.5|; an uninformative probe is left out of the persona label</p>" + _table(rows))
    if d.moral:
        base = next((m for m in d.moral if m == "base"), next(iter(d.moral)))
        out.append("<h3>Moral susceptibility / robustness</h3>")
        out.append(_figure(plots.plot_sr_bars, figdir / "report_sr_bars", "S/R bars", d.moral, base=base))
        out.append(_table([{"model": m, **v} for m, v in d.moral.items()]))
    return "".join(out)


def _section_diffing(d: RunData, figdir: Path) -> str:
    if not d.diffing:
        return _missing("diffing")
    out = []
    for method, data in d.diffing.items():
        rows = data.get("directions") or []
        out.append(f"<h3>{_e(method)} (layer {_e(data.get('layer'))})</h3>")
        if rows and "score" in rows[0]:
            out.append(_figure(plots.plot_top_latents, figdir / f"report_top_{method}", f"top latents {method}", rows,
                               value_key="score", title=f"{method}: top directions"))
        cols = [c for c in ("rank", "latent_id", "score", "sign", "norm", "mean_base", "mean_ft") if any(c in r for r in rows)]
        out.append(_table(rows[:20], cols or None))
    return "".join(out)


def _section_steering(d: RunData, figdir: Path) -> str:
    if not d.dose_response:
        return _missing("steering")
    out = [_figure(plots.plot_dose_response, figdir / "report_dose_response", "dose-response", d.dose_response)]
    if d.steering_summary and d.steering_summary.get("cells"):
        out.append(_table(d.steering_summary["cells"]))
    cols = ["model", "mode", "direction", "layer", "alpha", "em_pct", "coherent_pct", "n_scored", "mean_aligned"]
    out.append("<details><summary>all rows</summary>" + _table(d.dose_response, cols) + "</details>")
    return "".join(out)


def _section_analysis(d: RunData, figdir: Path) -> str:
    out = []
    f = d.feature_vs_selfreport
    if f and f.get("feature"):
        out.append(_figure(plots.plot_feature_vs_selfreport, figdir / "report_feature_vs_selfreport", "feature vs self-report",
                           f["feature"], f["self_report"], f.get("labels") or ["?"] * len(f["feature"]),
                           names=f.get("names"), **{k: f[k] for k in ("xlabel", "ylabel") if k in f}))
    if d.correlations:
        cols = ["feature", "target", "n", "pearson", "pearson_ci", "spearman", "spearman_ci"]
        out.append("<h3>Correlations (bootstrap 95% CIs)</h3>" + _table(d.correlations, cols))
    if d.models_table:
        out.append("<h3>Across fine-tunes</h3>" + _table(d.models_table.get("rows") or []))
        c = d.models_table.get("contrast")
        if c:
            out.append(f"<p>Coherent vs inverted models differ in: <b>{_e(c.get('verdict'))}</b></p>")
            out.append(_table([{"quantity": q, **v} for q, v in c.get("quantities", {}).items()]))
        if d.models_table.get("correlations"):
            out.append(_table(d.models_table["correlations"], ["feature", "target", "n", "pearson", "pearson_ci", "spearman", "spearman_ci"]))
    return "".join(out) or _missing("analysis")


def _section_manifest(d: RunData) -> str:
    out = []
    if d.manifest:
        models = d.manifest.get("models")
        if isinstance(models, dict):
            out.append(_table([{"role": k, **(v if isinstance(v, dict) else {"spec": v})} for k, v in models.items()]))
        out.append("<details><summary>manifest.json</summary><pre>" + _e(json.dumps(d.manifest, indent=1, default=str)) + "</pre></details>")
    if d.config:
        out.append("<details><summary>resolved config</summary><pre>" + _e(json.dumps(d.config, indent=1, default=str)) + "</pre></details>")
    return "".join(out) or _missing("manifest")


def render_html(d: RunData) -> str:
    figdir = d.run_dir / "plots"
    title = "persona-diff report"
    cfg = d.config or {}
    if cfg.get("base") and cfg.get("finetuned"):
        title += f": {cfg['base']} vs {cfg['finetuned']}"
    elif d.manifest and isinstance(d.manifest.get("models"), dict):
        m = d.manifest["models"]
        names = [str(v.get("spec", v.get("path", v)) if isinstance(v, dict) else v) for v in m.values()]
        title += ": " + " vs ".join(names[:2])
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1><p class='muted'>run directory {_e(d.run_dir.resolve())} · built "
        f"{_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}</p>",
    ]
    if d.summary:
        flat = {k: v for k, v in d.summary.items() if not isinstance(v, dict | list) or k.endswith("_ci")}
        parts.append("<h2>Summary</h2>" + _table([flat]))
    parts += [
        "<h2>Persona label</h2>", _section_label(d),
        "<h2>Judge</h2>", _section_judge(d),
        "<h2>Probes</h2>", _section_probes(d, figdir),
        "<h2>Model diffing: top directions</h2>", _section_diffing(d, figdir),
        "<h2>Steering (causal check)</h2>", _section_steering(d, figdir),
        "<h2>Features vs behaviour and self-report</h2>", _section_analysis(d, figdir),
    ]
    others = [p for p in d.extra_plots if not p.name.startswith("report_")]
    if others:
        parts.append("<h2>Other figures</h2>" + "".join(f"<h3>{_e(p.stem)}</h3>{_img(p, p.stem)}" for p in others))
    parts += ["<h2>Provenance</h2>", _section_manifest(d), "</body></html>"]
    return "\n".join(parts)


def build_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``report.html`` (default: inside `run_dir`) and return its path."""
    if not Path(run_dir).is_dir():
        raise PersonaDiffError(f"run directory {run_dir} does not exist; pass the --out folder of a `persona-diff run`")
    d = load_run(run_dir)
    page = render_html(d)
    path = Path(out) if out else d.run_dir / "report.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    log.info("report written to %s", path)
    return path
