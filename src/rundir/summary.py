"""``summary.json``: the headline of a run directory, for one pair or for a study.

The ``kind`` field tells the two apart (``"pair"``: `RunSummary`, ``"study"``:
`StudySummary`), ``schema_version`` the layout (`persona_diff.rundir.layout.SCHEMA_VERSION`).
A study's summary holds each pair's `RunSummary` beside its folder name, so the study report
and the cross-model analysis read one file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from persona_diff.rundir.artifacts import CorrelationRow, SteeringCell
from persona_diff.rundir.layout import SCHEMA_VERSION
from persona_diff.rundir.records import JudgeInfo, ProbeSummary
from persona_diff.rundir.values import (
    ROLES,
    Estimate,
    Label,
    Role,
    as_label,
    as_list,
    as_mapping,
    opt_float,
    opt_int,
    opt_str,
)

ProbeTable = dict[str, dict[str, ProbeSummary]]  # role → probe → summary


def probe_table_to_dict(table: ProbeTable) -> dict[str, Any]:
    return {role: {p: s.to_dict() for p, s in probes.items()} for role, probes in table.items()}


def probe_table_from_dict(d: Mapping[str, Any]) -> ProbeTable:
    return {
        str(role): {str(p): ProbeSummary.from_dict(as_mapping(s)) for p, s in as_mapping(probes).items()}
        for role, probes in d.items()
    }


@dataclass
class DiffTop:
    layer: int | None
    top_score: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "top_score": self.top_score}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DiffTop:
        return cls(opt_int(d.get("layer")), opt_float(d.get("top_score")))


@dataclass
class RunSummary:
    """One base / fine-tune pair: label, judge, every probe on both models, the feature shift."""

    base: str
    finetuned: str
    label: Label
    label_text: str | None = None
    label_confidence: float | None = None
    judge: JudgeInfo | None = None
    probes: ProbeTable = field(default_factory=dict)
    feature_shift: float | None = None  # top mean-diff score: |mean activation change| along its direction
    diffing: dict[str, DiffTop] = field(default_factory=dict)
    steering: list[SteeringCell] = field(default_factory=list)
    kind: Literal["pair"] = "pair"
    schema_version: int = SCHEMA_VERSION

    def harm(self, role: Role = "finetuned") -> ProbeSummary | None:
        return next((p for p in self.probes.get(role, {}).values() if p.kind == "harm"), None)

    def em_pct(self, role: Role = "finetuned") -> Estimate | None:
        h = self.harm(role)
        return None if h is None else h.estimate

    def coherent_pct(self, role: Role = "finetuned") -> float | None:
        h = self.harm(role)
        c = None if h is None else h.details.get("coherent_pct")
        return None if c is None else c.value

    def self_reports(self, role: Role = "finetuned") -> dict[str, ProbeSummary]:
        return {k: p for k, p in self.probes.get(role, {}).items() if p.kind == "self-report"}

    def self_report(self, role: Role = "finetuned") -> float | None:
        """Mean self-reported misalignment over the probes not marked uninformative."""
        vals = [
            p.estimate.value
            for p in self.self_reports(role).values()
            if p.informative is not False and p.estimate is not None and p.estimate.value is not None
        ]
        return sum(vals) / len(vals) if vals else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "kind": self.kind,
            "base": self.base,
            "finetuned": self.finetuned,
            "label": self.label,
            "label_text": self.label_text,
            "label_confidence": self.label_confidence,
            "judge": None if self.judge is None else self.judge.to_dict(),
            "em_pct": {
                r: (None if (e := self.em_pct(r)) is None else e.to_dict()) for r in ROLES
            },  # for readers; derived
            "feature_shift": self.feature_shift,
            "probes": {role: {p: s.to_dict() for p, s in probes.items()} for role, probes in self.probes.items()},
            "diffing": {k: v.to_dict() for k, v in self.diffing.items()},
            "steering": [c.to_dict() for c in self.steering],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunSummary:
        judge = d.get("judge")
        return cls(
            base=str(d.get("base", "?")),
            finetuned=str(d.get("finetuned", "?")),
            label=as_label(d.get("label"), "summary.json label"),
            label_text=opt_str(d.get("label_text")),
            label_confidence=opt_float(d.get("label_confidence")),
            judge=JudgeInfo.from_dict(judge) if isinstance(judge, Mapping) else None,
            probes=probe_table_from_dict(as_mapping(d.get("probes"))),
            feature_shift=opt_float(d.get("feature_shift")),
            diffing={str(k): DiffTop.from_dict(as_mapping(v)) for k, v in as_mapping(d.get("diffing")).items()},
            steering=[SteeringCell.from_dict(c) for c in as_list(d.get("steering")) if isinstance(c, Mapping)],
            schema_version=opt_int(d.get("schema_version")) or SCHEMA_VERSION,
        )


@dataclass
class StudyEntry:
    """One fine-tune of a study: its name, its own run folder (relative to the study) and
    where its base's probes came from (``_bases/<hash>`` when shared)."""

    name: str
    run_dir: str
    summary: RunSummary
    base_probes: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "run_dir": self.run_dir,
            "base_probes": self.base_probes,
            "summary": self.summary.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StudyEntry:
        return cls(
            str(d.get("name", "?")),
            str(d.get("run_dir", d.get("name", "?"))),
            RunSummary.from_dict(as_mapping(d.get("summary"))),
            opt_str(d.get("base_probes")),
        )


@dataclass
class StudySummary:
    """Several fine-tunes (one `RunSummary` each) and what is measured across them."""

    entries: list[StudyEntry]
    judge: JudgeInfo | None = None
    judges_differ: list[str] = field(default_factory=list)  # the specs, when the pairs used different judges
    correlations: list[CorrelationRow] = field(default_factory=list)
    contrast: dict[str, Any] | None = None  # analysis.models_table.label_contrast, when both labels occur
    kind: Literal["study"] = "study"
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "kind": self.kind,
            "pairs": [e.to_dict() for e in self.entries],
            "judge": None if self.judge is None else self.judge.to_dict(),
            "judges_differ": self.judges_differ,
            "correlations": [c.to_dict() for c in self.correlations],
            "contrast": self.contrast,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StudySummary:
        judge = d.get("judge")
        contrast = d.get("contrast")
        return cls(
            entries=[StudyEntry.from_dict(e) for e in as_list(d.get("pairs")) if isinstance(e, Mapping)],
            judge=JudgeInfo.from_dict(judge) if isinstance(judge, Mapping) else None,
            judges_differ=[str(x) for x in as_list(d.get("judges_differ"))],
            correlations=[
                CorrelationRow.from_dict(c) for c in as_list(d.get("correlations")) if isinstance(c, Mapping)
            ],
            contrast=dict(contrast) if isinstance(contrast, Mapping) else None,
            schema_version=opt_int(d.get("schema_version")) or SCHEMA_VERSION,
        )
