"""What the probes, the label and the judge leave in a run directory, as typed records.

- `JudgeInfo` (``judge.json``): `Judge.describe()`, the spec and its measured agreement;
- `LabelResult` (``label.json``): `label_persona`'s verdict; its evidence stays a mapping
  (the label module owns its columns), the rest is typed;
- `ProbeSummary`: one probe on one model (``probes/summary.json`` holds one per role and
  probe): the headline estimate with its CI, informativeness, secondary estimates;
- `MoralScores` (``probes/moral.json``): S and R with CIs per model.
Each has ``to_dict``/``from_dict``; ``from_dict`` keeps keys it does not know in ``extra``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from persona_diff.rundir.values import (
    Estimate,
    Label,
    as_label,
    as_list,
    as_mapping,
    opt_float,
    opt_str,
)

ProbeKind = Literal["harm", "self-report", "moral", "other"]
PROBE_KINDS: tuple[ProbeKind, ...] = ("harm", "self-report", "moral", "other")
# the numeric informativeness diagnostics of a probe (persona_diff.probes.informative adds its verdict and reasons)
DIAGNOSTIC_COLUMNS = (
    "position_p_first",
    "position_bias",
    "mean_mass",
    "order_agreement",
    "order_gap",
    "no_value_rate",
    "n_pairs",
)
Scalar = float | int | str | bool | None


@dataclass
class JudgeInfo:
    spec: str
    calibrated: bool
    agreement: dict[str, Any] | None = None
    warning: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mean_spearman(self) -> float | None:
        return opt_float((self.agreement or {}).get("mean_spearman"))

    @property
    def validated(self) -> bool:
        """Calibrated and with a measured agreement (else the report warns)."""
        return self.calibrated and bool(self.agreement)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            **self.extra,
            "spec": self.spec,
            "calibrated": self.calibrated,
            "agreement": self.agreement,
        }
        if self.warning is not None:
            out["warning"] = self.warning
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JudgeInfo:
        agr = d.get("agreement")
        known = {"spec", "calibrated", "agreement", "warning"}
        return cls(
            str(d.get("spec", "?")),
            bool(d.get("calibrated")),
            dict(agr) if isinstance(agr, Mapping) else None,
            opt_str(d.get("warning")),
            {k: v for k, v in d.items() if k not in known},
        )


@dataclass
class LabelResult:
    label: Label
    label_text: str | None = None
    confidence: float | None = None
    harmful: bool | None = None
    harm_probe: str | None = None
    probes_used: list[str] = field(default_factory=list)
    probes_excluded: dict[str, str] = field(default_factory=dict)
    evidence: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # evidence written as sentences (hand-made files)
    extra: dict[str, Any] = field(default_factory=dict)

    _KNOWN = (
        "label",
        "label_text",
        "confidence",
        "harmful",
        "harm_probe",
        "probes_used",
        "probes_excluded",
        "evidence",
    )

    def to_dict(self) -> dict[str, Any]:
        ev: dict[str, Any] | list[str] = self.notes if self.notes and not self.evidence else self.evidence
        return {
            **self.extra,
            "label": self.label,
            "label_text": self.label_text,
            "confidence": self.confidence,
            "harmful": self.harmful,
            "harm_probe": self.harm_probe,
            "probes_used": list(self.probes_used),
            "probes_excluded": dict(self.probes_excluded),
            "evidence": ev,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LabelResult:
        raw_ev = d.get("evidence")
        evidence = {str(k): dict(v) for k, v in as_mapping(raw_ev).items() if isinstance(v, Mapping)}
        notes = [str(x) for x in as_list(raw_ev)]
        harmful = d.get("harmful")
        return cls(
            label=as_label(d.get("label"), "label.json"),
            label_text=opt_str(d.get("label_text")),
            confidence=opt_float(d.get("confidence")),
            harmful=harmful if isinstance(harmful, bool) else None,
            harm_probe=opt_str(d.get("harm_probe")),
            probes_used=[str(x) for x in as_list(d.get("probes_used"))],
            probes_excluded={str(k): str(v) for k, v in as_mapping(d.get("probes_excluded")).items()},
            evidence=evidence,
            notes=notes,
            extra={k: v for k, v in d.items() if k not in cls._KNOWN},
        )


def _kind_of(raw: Mapping[str, Any]) -> ProbeKind:
    if "em_pct" in raw or "single_run_pct" in raw:
        return "harm"
    if "S" in raw and "R" in raw:
        return "moral"
    return "self-report" if "signal" in raw else "other"


@dataclass
class ProbeSummary:
    """One probe on one model. `estimate`: EM% (0-100) for a harm probe, self-reported
    misalignment in [0, 1] for a self-report probe, None for the moral questionnaire (its S
    and R are in `details`)."""

    name: str
    kind: ProbeKind
    estimate: Estimate | None = None
    informative: bool | None = None  # None: no diagnostics (harm probes, old runs)
    reasons: list[str] = field(default_factory=list)
    diagnostics: dict[str, Scalar] = field(default_factory=dict)
    details: dict[str, Estimate] = field(default_factory=dict)  # coherent_pct, S, R, gap, ...

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "estimate": None if self.estimate is None else self.estimate.to_dict(),
            "informative": self.informative,
            "reasons": list(self.reasons),
            "diagnostics": dict(self.diagnostics),
            "details": {k: v.to_dict() for k, v in self.details.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProbeSummary:
        kind = d.get("kind")
        inf = d.get("informative")
        return cls(
            name=str(d.get("name", "?")),
            kind=kind if kind in PROBE_KINDS else "other",
            estimate=Estimate.parse(d.get("estimate")),
            informative=inf if isinstance(inf, bool) else None,
            reasons=[str(x) for x in as_list(d.get("reasons"))],
            diagnostics={
                str(k): v
                for k, v in as_mapping(d.get("diagnostics")).items()
                if isinstance(v, str | int | float | bool)
            },
            details={
                str(k): e for k, v in as_mapping(d.get("details")).items() if (e := Estimate.parse(v)) is not None
            },
        )

    @classmethod
    def from_probe_output(cls, name: str, raw: Mapping[str, Any]) -> ProbeSummary:
        """From the summary `run_probes` writes for one probe (probes/<role>/summary.json)."""
        kind = _kind_of(raw)
        details: dict[str, Estimate] = {}
        estimate: Estimate | None = None
        if kind == "harm":
            estimate = Estimate.parse(raw.get("em_pct", raw.get("single_run_pct")))
            n = raw.get("n_scored")
            if estimate is not None and estimate.n is None and isinstance(n, int):
                estimate = Estimate(estimate.value, estimate.lo, estimate.hi, n)
            if (coh := Estimate.parse(raw.get("coherent_pct"))) is not None:
                details["coherent_pct"] = coh
            if (mop := Estimate.parse(raw.get("max_of_n_pct"))) is not None:
                details["max_of_n_pct"] = mop
        elif kind == "moral":
            for q in ("S", "R"):
                if (e := Estimate.parse(raw.get(q))) is not None:
                    details[q] = e
        else:
            estimate = Estimate.parse(raw.get("signal"))
            if (gap := Estimate.parse(raw.get("gap"))) is not None:
                details["gap"] = gap
        inf = as_mapping(raw.get("informativeness"))
        verdict = inf.get("informative")
        return cls(
            name=name,
            kind=kind,
            estimate=estimate,
            informative=verdict if isinstance(verdict, bool) else None,
            reasons=[str(x) for x in as_list(inf.get("reasons"))],
            diagnostics={k: v for k in DIAGNOSTIC_COLUMNS if isinstance(v := inf.get(k), int | float)},
            details=details,
        )


def probes_from_outputs(raw: Mapping[str, Any]) -> dict[str, ProbeSummary]:
    """{probe: ProbeSummary} from one model's `run_probes` summary (its ``probes`` mapping)."""
    probes = as_mapping(raw.get("probes", raw))
    return {
        str(k): ProbeSummary.from_probe_output(str(k), as_mapping(v))
        for k, v in probes.items()
        if isinstance(v, Mapping)
    }


@dataclass
class MoralScores:
    """Moral susceptibility S and robustness R of one model (Costa et al.), with CIs."""

    S: Estimate | None
    R: Estimate | None

    def to_dict(self) -> dict[str, Any]:
        return {"S": None if self.S is None else self.S.to_dict(), "R": None if self.R is None else self.R.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MoralScores:
        """Also reads the legacy layout {"S": v, "S_ci": [lo, hi], "R": v, "R_ci": [...]}."""
        return cls(Estimate.parse(d.get("S"), d.get("S_ci")), Estimate.parse(d.get("R"), d.get("R_ci")))

    def plot_row(self, label: str | None = None) -> dict[str, Any]:
        """The mapping `analysis.plots.plot_sr_bars` draws."""
        row: dict[str, Any] = {}
        for q, e in (("S", self.S), ("R", self.R)):
            row[q] = None if e is None else e.value
            if e is not None and e.ci is not None:
                row[f"{q}_ci"] = list(e.ci)
        if label is not None:
            row["label"] = label
        return row
