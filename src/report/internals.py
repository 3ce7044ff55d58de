"""The internals section of a run's or a study's report, from ``internals/**/internals.json``.

What a reader needs to judge the persona map: the directions' held-out AUCs at the map's
layer, the map (each fine-tune's shift along the harm and self-report directions, with CIs
and its quadrant), the per-answer scatter of harm-direction activation against the model's own
rating, the per-answer correlations per model and pooled over the models (the cross-domain
table of a study), and, over several fine-tunes, the leave-one-out detector against the
behavioural label.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from persona_diff.internals.persona_map import ANSWERS_CAPTION, LOO_NOTE, MAP_CAPTION
from persona_diff.log import get_logger
from persona_diff.report.htmlkit import e, fmt, img, table
from persona_diff.rundir.layout import INTERNALS

log = get_logger(__name__)

CORRELATION_COLS = ["model", "feature", "target", "n", "spearman", "spearman_ci", "pearson", "pearson_ci"]


def _summaries(run_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for f in sorted((run_dir / INTERNALS).glob("**/internals.json")):
        try:
            out.append((f.parent, json.loads(f.read_text())))
        except (OSError, json.JSONDecodeError) as err:
            log.warning("%s unreadable (%s): left out of the report", f, err)
    return out


def _directions(s: dict[str, Any]) -> str:
    """Per model at the map's layer: each direction's held-out AUC (n⁺/n⁻, or why undefined) and the cosines."""
    layer = str(s.get("layer"))
    cos = {c.get("model"): c for c in s.get("cosines") or [] if str(c.get("layer")) == layer}

    def cell(d: dict[str, Any] | None) -> str:
        if not d:
            return "—"
        if not d.get("defined"):
            return f"undefined: {d.get('undefined_because') or '?'}"
        auc = d.get("heldout_auc")
        return f"{'—' if auc is None else f'{auc:.2f}'} ({d.get('n_pos')}/{d.get('n_neg')})"

    rows = []
    for model, by_layer in (s.get("directions") or {}).items():
        ds = by_layer.get(layer) or {}
        c = cos.get(model, {})
        rows.append(
            {
                "model": model,
                "harm: held-out AUC (n⁺/n⁻)": cell(ds.get("harm")),
                "self-report: held-out AUC (n⁺/n⁻)": cell(ds.get("self_report")),
                "cos(harm, self-report)": c.get("cos_harm_self"),
                "cos(harm, base harm)": c.get("cos_harm_base"),
                "cos(self, base self)": c.get("cos_self_base"),
            }
        )
    return (
        f"<p class='muted'>Block {e(layer)}. Held-out AUC: cross-validated by question (harm) or by word pair "
        "(self-report); 'reference' is the frame of the map and the table (every model's judged answers "
        "read by the base).</p>" + table(rows)
    )


def _detector(s: dict[str, Any]) -> str:
    d = s.get("detector")
    if not d:
        return "<p class='muted'>Detector: needs at least two fine-tunes of the base (leave one out); not run here.</p>"
    targets = s.get("targets") or {}
    kinds = sorted(set(targets.values())) or ["truth"]
    folds = [
        {
            "held out": f.get("held_out"),
            "target": f.get("truth"),
            "behavioural label": f.get("behavioural"),
            "detector says": f.get("predicted"),
            "harm score": f.get("harm_score"),
            "self score": f.get("self_score"),
        }
        for f in d.get("folds") or []
    ]
    conf = d.get("confusion_behavioural") or {}
    conf_rows = [{"behavioural label": k, **v} for k, v in conf.items()]
    unfit = [f["held out"] for f in folds if f["detector says"] == "undetermined"]
    why = (
        f"<p class='warn'>Undetermined for {e(', '.join(map(str, unfit)))}: without it, the other fine-tunes lack "
        "one side of an axis (each threshold needs a harmful and a not-harmful fine-tune, and one with and one "
        "without a misaligned self-report). A detector needs more, and more varied, fine-tunes than this.</p>"
        if unfit
        else ""
    )
    return (
        f"<p>Detector from internals alone (neutral prompts, no judge, no self-report at inference), leave one "
        f"fine-tune out: <b>{e(d.get('correct'))}/{e(d.get('n_organisms'))}</b> right against its targets "
        f"({e(', '.join(kinds))}); AUC harm {fmt(d.get('auc_harm'))}, self-report {fmt(d.get('auc_self'))}.</p>"
        + why
        + table(folds)
        + "<p class='muted'>Against the behavioural label (rows) vs the detector (columns):</p>"
        + table(conf_rows)
    )


def internals_sections(run_dir: Path) -> list[str]:
    """HTML for each internals summary of the run (a study: one per base); [] when none."""
    parts: list[str] = []
    found = _summaries(run_dir)
    for folder, s in found:
        if len(found) > 1:
            parts.append(f"<h3>{e(folder.relative_to(run_dir))}</h3>")
        parts.append(_directions(s))
        points = (s.get("map") or {}).get("points") or []
        if points:
            parts.append(f"<h3>Persona map (block {e(s.get('layer'))})</h3><p>{e(MAP_CAPTION)}</p>")
            if (folder / "persona_map.png").is_file():
                parts.append(img(folder / "persona_map.png", "persona map"))
            cols = ["model", "label", "truth", "x", "x_ci", "y", "y_ci", "quadrant", "n_prompts", "x_loo", "x_loo_ci"]
            parts.append(table(points, cols))
            parts.append(f"<p class='muted'>{e(LOO_NOTE)}</p>")
        if (folder / "answers_internal.png").is_file():
            parts.append(
                f"<h3>Per answer: harm-direction activation vs self-rating</h3><p>{e(ANSWERS_CAPTION)}</p>"
                + img(folder / "answers_internal.png", "per-answer activation vs self-report")
            )
        tab = s.get("table") or {}
        parts.append(
            f"<h3>Per-answer correlations</h3><p class='muted'>{e(tab.get('n_rows'))} answers "
            f"(per model: {e(json.dumps(tab.get('n_per_model') or {}))}); the table is "
            f"{e(folder.relative_to(run_dir))}/answers.csv (and .jsonl). proj_harm / proj_self: the answer's "
            "projection on the harm / self-report direction; self_rating: the model's own P(harmful) of its "
            "answer; judge_aligned: the judge's score. 'pooled': every answer of every model. 95% bootstrap "
            "CIs over answers.</p>" + table(s.get("correlations") or [], CORRELATION_COLS)
        )
        parts.append("<h3>Detector</h3>" + _detector(s))
    return parts
