"""The run-level files a pair's stages leave, written through `persona_diff.rundir`.

- ``probes/summary.json`` and ``probes/moral.json`` from both models' `run_probes` summaries;
- ``summary.json`` (`RunSummary`) at the end, read back from the directory with `load_run`,
  so what the summary says is exactly what the files say.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from persona_diff.rundir import (
    SCHEMA_VERSION,
    DiffTop,
    MoralScores,
    RunLayout,
    RunSummary,
    load_run,
    probes_from_outputs,
)
from persona_diff.rundir.io import write_json
from persona_diff.rundir.summary import ProbeTable, probe_table_to_dict


def probe_table(summaries: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """probes/summary.json: {"schema_version", "models": {role: {probe: ProbeSummary}},
    "diagnostics": {role: {probe: informativeness columns}}} (the last a flat view for readers)."""
    from persona_diff.probes.informative import summary_diagnostics

    table: ProbeTable = {role: probes_from_outputs(s) for role, s in summaries.items()}
    diagnostics = {role: summary_diagnostics(dict(s.get("probes", {}))) for role, s in summaries.items()}
    return {"schema_version": SCHEMA_VERSION, "models": probe_table_to_dict(table), "diagnostics": diagnostics}


def moral_table(table: ProbeTable) -> dict[str, MoralScores]:
    out = {}
    for role, probes in table.items():
        m = next((p for p in probes.values() if p.kind == "moral"), None)
        if m is not None:
            out[role] = MoralScores(m.details.get("S"), m.details.get("R"))
    return out


def write_probe_files(out: Path, summaries: Mapping[str, Mapping[str, Any]]) -> None:
    lay = RunLayout(out)
    data = probe_table(summaries)
    write_json(lay.probe_table, data)
    moral = moral_table({role: probes_from_outputs(s) for role, s in summaries.items()})
    if moral:
        write_json(lay.moral, {"schema_version": SCHEMA_VERSION, "models": {r: m.to_dict() for r, m in moral.items()}})


def build_summary(out: Path, base: str, finetuned: str) -> RunSummary:
    """The pair's summary.json, from the files its stages wrote."""
    run = load_run(out)
    mean = run.directions.get("mean")
    lab = run.label
    return RunSummary(
        base=base,
        finetuned=finetuned,
        label=lab.label if lab is not None else "undetermined",
        label_text=None if lab is None else lab.label_text,
        label_confidence=None if lab is None else lab.confidence,
        judge=run.judge,
        probes=run.probes,
        feature_shift=None if mean is None else mean.top_score,
        diffing={m: DiffTop(d.layer, d.top_score) for m, d in run.directions.items()},
        steering=run.steering or [],
    )
