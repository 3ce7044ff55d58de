"""The report of a study (`persona-diff run --pairs`): one row per fine-tune, the judge once,
the paper's harm-vs-self-report picture, the cross-model correlations.

Read from the study's ``summary.json`` (`StudySummary`, each pair's `RunSummary` inside it);
each row links to that pair's own ``report.html`` (a relative link, so the folder can move).
A persona map made by the internals analysis (``internals/persona_map.png``) is embedded
when it exists. Cross-model correlations over fewer than `MIN_MODELS` fine-tunes carry a
plain warning: a bootstrap over 3 or 4 models says little.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from persona_diff.analysis import plots
from persona_diff.report.htmlkit import (
    Raw,
    badge,
    details_json,
    e,
    figure,
    img,
    judge_section,
    page,
    table,
)
from persona_diff.report.internals import internals_sections
from persona_diff.rundir import Role, RunResult, StudyEntry, StudySummary
from persona_diff.rundir.values import label_sort_key

MIN_MODELS = 5  # below this, a correlation across models gets a warning
MIN_CORRELATE = 3  # below this, none is computed


def sorted_entries(study: StudySummary) -> list[StudyEntry]:
    """Rows in label order (coherent, inverted, em-unmeasured, not-EM, undetermined), then name."""
    return sorted(study.entries, key=lambda x: label_sort_key(x.summary.label, x.name))


def _self_report_names(study: StudySummary) -> list[str]:
    return list(dict.fromkeys(p for x in study.entries for p in x.summary.self_reports("finetuned")))


def _probe_cell(x: StudyEntry, probe: str) -> Raw | None:
    p = x.summary.probes.get("finetuned", {}).get(probe)
    if p is None or p.estimate is None:
        return None
    mark = {True: '<span class="ok" title="informative">✓</span>', None: ""}.get(
        p.informative, f'<span class="bad" title="{e("; ".join(p.reasons) or "uninformative")}">✗ uninformative</span>'
    )
    return Raw(f"{e(p.estimate.fmt())} {mark}")


def fine_tune_table(d: RunResult, study: StudySummary) -> str:
    probes = _self_report_names(study)
    rows = []
    for x in sorted_entries(study):
        s = x.summary
        link = f"{quote(x.run_dir)}/report.html"
        exists = (d.run_dir / x.run_dir / "report.html").is_file()
        conf = "" if s.label_confidence is None else f" {s.label_confidence:.0%}"
        row: dict[str, Any] = {
            "fine-tune": Raw(f'<a href="{e(link)}">{e(x.name)}</a>' if exists else e(x.name)),
            "label (confidence)": Raw(badge(s.label, small=True) + e(conf)),
            "EM% fine-tune": s.em_pct("finetuned"),
            "EM% base": s.em_pct("base"),
            "coherent% fine-tune": s.coherent_pct("finetuned"),
            **{f"{p}": _probe_cell(x, p) for p in probes},
            "feature shift": s.feature_shift,
        }
        rows.append(row)
    note = (
        "<p class='muted'>EM%: judged misaligned answers (95% bootstrap CI). Self-report columns: the fine-tune's "
        "self-reported misalignment in [0, 1] with its CI; ✗ = the probe is uninformative on that model and left out "
        "of its label. Feature shift: the top mean-difference score of that pair (fine-tuned − base activations).</p>"
    )
    return note + table(rows)


def _points(study: StudySummary) -> list[dict[str, Any]]:
    """Per fine-tune and self-report probe (and each distinct base once): EM% against self-report."""
    pts: list[dict[str, Any]] = []
    bases: set[str] = set()
    for x in sorted_entries(study):
        s = x.summary
        sides: tuple[tuple[Role, str, str], ...] = (("finetuned", x.name, s.label), ("base", "base", "base"))
        for role, name, label in sides:
            if role == "base" and s.base in bases:
                continue
            em = s.em_pct(role)
            if em is None or em.value is None:
                continue
            for probe, p in s.self_reports(role).items():
                if p.estimate is None or p.estimate.value is None:
                    continue
                pts.append(
                    {
                        "name": name,
                        "label": label,
                        "probe": probe,
                        "x": p.estimate.value,
                        "x_ci": p.estimate.ci,
                        "y": em.value,
                        "y_ci": em.ci,
                        "informative": p.informative,
                    }
                )
        bases.add(s.base)
    return pts


def correlations_section(study: StudySummary) -> str:
    n = len(study.entries)
    out = []
    if n < MIN_CORRELATE:
        return f"<p class='missing'>{n} fine-tune(s): a correlation across models needs at least {MIN_CORRELATE}.</p>"
    if n < MIN_MODELS:
        out.append(
            f'<p class="warn">Only {n} fine-tunes: a correlation across {n} models, and its bootstrap CI over '
            f"them, is not evidence either way. Read it as a description of these {n} points.</p>"
        )
    rows = [c.to_dict() for c in study.correlations]
    out.append(table(rows, ["feature", "target", "n", "pearson", "pearson_ci", "spearman", "spearman_ci"]))
    if study.contrast:
        verdict = str(study.contrast.get("verdict"))
        out.append(
            f"<h3>Coherent vs inverted</h3><p class='warn'>Not compared: {e(verdict)}.</p>"
            if verdict.startswith("too few")
            else f"<h3>Coherent vs inverted</h3><p>They differ in: <b>{e(verdict)}</b> "
            "(a difference whose bootstrap CI over models excludes 0)</p>"
        )
        q = study.contrast.get("quantities") or {}
        out.append(table([{"quantity": k, **v} for k, v in q.items() if isinstance(v, dict)]))
    return "".join(out)


def _judge(d: RunResult, study: StudySummary) -> str:
    out = [judge_section(study.judge or d.judge, "no judge.json in this study or in its pairs")]
    if study.judges_differ:
        out.append(
            f'<p class="warn">The pairs were judged by different judges ({e(", ".join(study.judges_differ))}): '
            "their EM% are not comparable.</p>"
        )
    return "".join(out)


def render_study(d: RunResult) -> str:
    study = d.study or StudySummary([])
    figdir = d.run_dir / "plots"
    n = len(study.entries)
    body = ["<h2>Judge</h2>", _judge(d, study), f"<h2>Fine-tunes ({n})</h2>"]
    body.append(fine_tune_table(d, study) if n else "<p class='missing'>no pair finished yet</p>")
    pts = _points(study)
    if pts:
        body += [
            "<h2>Harm vs self-report</h2>",
            figure(plots.plot_harm_vs_selfreport, figdir / "report_harm_vs_selfreport", "harm vs self-report", pts),
        ]
    inside = internals_sections(d.run_dir)
    if inside:
        body += ["<h2>Persona from the inside: map, per-answer correlations across fine-tunes, detector</h2>", *inside]
    elif (pmap := d.layout.persona_map()) is not None:
        body += [
            "<h2>Persona map</h2>",
            img(pmap, "persona map"),
            f"<p class='muted'>{e(pmap.relative_to(d.run_dir))}</p>",
        ]
    body += ["<h2>Across fine-tunes: feature shift vs EM% and self-report</h2>", correlations_section(study)]
    shared: dict[str, Any] = {}
    for x in study.entries:
        if x.base_probes:
            shared.setdefault(x.base_probes, []).append(x.name)
    prov = [table([{"base probes": k, "pairs": ", ".join(v)} for k, v in shared.items()])] if shared else []
    if d.config:
        prov.append(details_json("study config", d.config))
    if prov:
        body += ["<h2>Provenance</h2>", *prov]
    return page(f"persona-diff study: {n} fine-tunes", d.run_dir, body)
