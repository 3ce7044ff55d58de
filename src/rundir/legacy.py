"""Version 1 of the run directory: what `persona-diff run` wrote before ``schema_version``.

- ``summary.json`` (pair): {base, finetuned, label, label_text, label_confidence, judge (the
  spec), judge_calibrated, judge_agreement, em_pct: {role: number}, diffing, steering};
- ``summary.json`` (study): {"pairs": [name, ...], "models": [model_table rows]};
- ``probes/summary.json``: {"models": {role: {probe: {value, ci} | {value, ci_lo, ci_hi}}},
  "diagnostics": {role: {probe: columns}}, "raw": {role: run_probes summary}};
- ``probes/moral.json``: {role: {"S", "S_ci", "R", "R_ci"}}.
Each function here turns one of them into the current records.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from persona_diff.rundir.artifacts import SteeringCell
from persona_diff.rundir.records import (
    JudgeInfo,
    MoralScores,
    ProbeKind,
    ProbeSummary,
    probes_from_outputs,
)
from persona_diff.rundir.summary import DiffTop, ProbeTable, RunSummary, StudyEntry, StudySummary
from persona_diff.rundir.values import Estimate, as_label, as_list, as_mapping, opt_float, opt_str

_HARM = ("harm", "wza_harm")


def probe_table_v1(d: Mapping[str, Any]) -> ProbeTable:
    """The full per-probe summaries when the file kept them (``raw``), else its flat table."""
    raw = as_mapping(d.get("raw"))
    if raw:
        return {str(role): probes_from_outputs(as_mapping(s)) for role, s in raw.items()}
    diags = as_mapping(d.get("diagnostics"))
    table: ProbeTable = {}
    for role, row in as_mapping(d.get("models")).items():
        flat = as_mapping(row)
        probes: dict[str, ProbeSummary] = {}
        for name, val in flat.items():
            if name == "coherent_pct" or name.startswith("mfq_"):
                continue
            diag = as_mapping(as_mapping(diags.get(role)).get(name))
            verdict = diag.get("informative")
            kind: ProbeKind = "harm" if name in _HARM else "self-report"
            details = {"coherent_pct": c} if kind == "harm" and (c := Estimate.parse(flat.get("coherent_pct"))) else {}
            reasons = str(diag.get("reasons") or "")
            probes[name] = ProbeSummary(
                name,
                kind,
                Estimate.parse(val),
                verdict if isinstance(verdict, bool) else None,
                [r for r in reasons.split("; ") if r],
                {k: v for k, v in diag.items() if isinstance(v, int | float) and not isinstance(v, bool)},
                details,
            )
        if "mfq_S" in flat or "mfq_R" in flat:
            det = {q: e for q in ("S", "R") if (e := Estimate.parse(flat.get(f"mfq_{q}"))) is not None}
            probes["mfq"] = ProbeSummary("mfq", "moral", details=det)
        table[str(role)] = probes
    return table


def moral_v1(d: Mapping[str, Any]) -> dict[str, MoralScores]:
    return {str(role): MoralScores.from_dict(as_mapping(v)) for role, v in d.items() if isinstance(v, Mapping)}


def run_summary_v1(
    d: Mapping[str, Any], probes: ProbeTable, judge: JudgeInfo | None, feature_shift: float | None
) -> RunSummary:
    """A v1 pair summary, its probe table (read beside it) and judge.json when present."""
    if judge is None and d.get("judge") is not None:
        judge = JudgeInfo(
            str(d["judge"]),
            bool(d.get("judge_calibrated")),
            dict(a) if isinstance(a := d.get("judge_agreement"), Mapping) else None,
        )
    if not probes:  # only the headline EM% survived
        em = as_mapping(d.get("em_pct"))
        probes = {str(r): {"harm": ProbeSummary("harm", "harm", Estimate.parse(v))} for r, v in em.items()}
    diffing = {str(k): DiffTop.from_dict(as_mapping(v)) for k, v in as_mapping(d.get("diffing")).items()}
    if feature_shift is None and "mean" in diffing:
        feature_shift = diffing["mean"].top_score
    return RunSummary(
        base=str(d.get("base", "?")),
        finetuned=str(d.get("finetuned", d.get("ft", "?"))),
        label=as_label(d.get("label"), "summary.json label"),
        label_text=opt_str(d.get("label_text")),
        label_confidence=opt_float(d.get("label_confidence")),
        judge=judge,
        probes=probes,
        feature_shift=feature_shift,
        diffing=diffing,
        steering=[
            SteeringCell.from_dict(c)
            for c in as_list(as_mapping(d.get("steering")).get("cells"))
            if isinstance(c, Mapping)
        ],
        schema_version=1,
    )


def study_summary_v1(d: Mapping[str, Any], pair_summary: Callable[[str], RunSummary | None]) -> StudySummary:
    """A v1 study summary; `pair_summary(name)` loads the pair folder's own summary."""
    entries = []
    for name in as_list(d.get("pairs")):
        s = pair_summary(str(name))
        if s is not None:
            entries.append(StudyEntry(str(name), str(name), s))
    return StudySummary(entries, judge=entries[0].summary.judge if entries else None, schema_version=1)


def is_study_v1(d: Mapping[str, Any]) -> bool:
    return "pairs" in d and "models" in d and "label" not in d
