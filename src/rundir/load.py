"""`load_run(path) -> RunResult`: everything a run or study directory holds, typed.

Every file is optional (a killed run has only its first stages); a missing or torn file is
None. The layout version comes from ``summary.json`` (else ``probes/summary.json``): version 1
(no ``schema_version``) is converted by `persona_diff.rundir.legacy`; a version this code does
not know fails with `RunDirVersionError`, which names it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from persona_diff.errors import PersonaDiffError
from persona_diff.rundir import layout as L
from persona_diff.rundir import legacy
from persona_diff.rundir.artifacts import (
    AnswerRow,
    CorrelationRow,
    DirectionSet,
    DoseRow,
    FeatureScatter,
    SteeringCell,
)
from persona_diff.rundir.io import read_json, read_jsonl
from persona_diff.rundir.records import JudgeInfo, LabelResult, MoralScores
from persona_diff.rundir.summary import (
    ProbeTable,
    RunSummary,
    StudySummary,
    probe_table_from_dict,
)
from persona_diff.rundir.values import as_list, as_mapping


class RunDirVersionError(PersonaDiffError):
    """A run directory written with a layout version this persona-diff cannot read."""


def schema_version_of(data: Mapping[str, Any], file: Path) -> int:
    v = data.get("schema_version")
    if v is None:
        return 1
    if isinstance(v, bool) or not isinstance(v, int):
        raise RunDirVersionError(
            f"{file}: schema_version {v!r} is not an integer; the file is damaged or not a persona-diff run"
        )
    if not L.OLDEST_READABLE <= v <= L.SCHEMA_VERSION:
        raise RunDirVersionError(
            f"{file} was written with run-directory schema_version {v}; this persona-diff reads versions "
            f"{L.OLDEST_READABLE} to {L.SCHEMA_VERSION}. Open it with the persona-diff that wrote it "
            "(see manifest.json versions), or rerun into a new --out"
        )
    return v


@dataclass
class RunResult:
    """A run directory, read. `kind` is "study" for `run --pairs` output, else "pair"."""

    run_dir: Path
    schema_version: int
    kind: Literal["pair", "study"] = "pair"
    summary: RunSummary | None = None
    study: StudySummary | None = None
    config: dict[str, Any] | None = None
    manifest: dict[str, Any] | None = None
    label: LabelResult | None = None
    judge: JudgeInfo | None = None
    probes: ProbeTable = field(default_factory=dict)
    moral: dict[str, MoralScores] = field(default_factory=dict)
    directions: dict[str, DirectionSet] = field(default_factory=dict)
    dose_response: list[DoseRow] | None = None
    steering: list[SteeringCell] | None = None
    correlations: list[CorrelationRow] | None = None
    feature_vs_selfreport: FeatureScatter | None = None
    extra_plots: list[Path] = field(default_factory=list)

    @property
    def layout(self) -> L.RunLayout:
        return L.RunLayout(self.run_dir)

    def answers(self, role: str) -> list[AnswerRow]:
        """The judged harm answers of one model (``probes/<role>/harm.jsonl``)."""
        return [AnswerRow.from_dict(r, author=role) for r in read_jsonl(self.layout.harm_answers(role)) or []]

    def pair(self, name: str) -> RunResult:
        """One pair of a study, loaded from its own folder."""
        if self.study is None:
            raise PersonaDiffError(f"{self.run_dir} is not a study directory (no pairs in its summary.json)")
        entry = next((e for e in self.study.entries if e.name == name), None)
        if entry is None:
            raise PersonaDiffError(
                f"study {self.run_dir} has no pair {name!r}; it has {', '.join(e.name for e in self.study.entries)}"
            )
        return load_run(self.run_dir / entry.run_dir)


def _mapping(path: Path) -> Mapping[str, Any] | None:
    data = read_json(path)
    return data if isinstance(data, Mapping) else None


def _config(root: Path) -> dict[str, Any] | None:
    cfg = _mapping(root / L.CONFIG)
    if cfg is None and (root / L.CONFIG_YAML).is_file():
        try:
            data = yaml.safe_load((root / L.CONFIG_YAML).read_text())
        except yaml.YAMLError:
            data = None
        cfg = data if isinstance(data, Mapping) else None
    return None if cfg is None else dict(cfg)


def _directions(root: Path) -> dict[str, DirectionSet]:
    out: dict[str, DirectionSet] = {}
    for f in sorted((root / L.DIFFING).glob(f"*/{L.DIRECTIONS}")) if (root / L.DIFFING).is_dir() else []:
        data = _mapping(f)
        if data is not None:
            ds = DirectionSet.from_dict(data, method=f.parent.name)
            out[ds.method] = ds
    return out


T = TypeVar("T")


def _versioned(path: Path, v1: Callable[[Mapping[str, Any]], T], v2: Callable[[Mapping[str, Any]], T], empty: T) -> T:
    """A file with a ``models`` table: `v1` reads it without a schema_version, `v2` the models."""
    data = _mapping(path)
    if data is None:
        return empty
    if "schema_version" not in data:
        return v1(data)
    schema_version_of(data, path)
    return v2(as_mapping(data.get("models")))


def _probes(root: Path) -> ProbeTable:
    return _versioned(root / L.PROBE_TABLE, legacy.probe_table_v1, probe_table_from_dict, {})


def _moral(root: Path) -> dict[str, MoralScores]:
    def v2(models: Mapping[str, Any]) -> dict[str, MoralScores]:
        return {str(k): MoralScores.from_dict(as_mapping(v)) for k, v in models.items()}

    return _versioned(root / L.MORAL, legacy.moral_v1, v2, {})


def _version(root: Path, summary: Mapping[str, Any] | None) -> int:
    if summary is not None:
        return schema_version_of(summary, root / L.SUMMARY)
    table = _mapping(root / L.PROBE_TABLE)
    if table is not None:
        return schema_version_of(table, root / L.PROBE_TABLE)
    return L.SCHEMA_VERSION


def load_run(path: str | Path) -> RunResult:
    """Read a run directory (one pair) or a study directory (`run --pairs`)."""
    root = Path(path)
    if not root.is_dir():
        raise PersonaDiffError(f"run directory {root} does not exist; pass the --out folder of a `persona-diff run`")
    raw_summary = _mapping(root / L.SUMMARY)
    version = _version(root, raw_summary)
    judge_d = _mapping(root / L.JUDGE)
    label_d = _mapping(root / L.LABEL)
    corr = _mapping(root / L.CORRELATIONS)
    scatter = _mapping(root / L.FEATURE_SCATTER)
    steer = _mapping(root / L.STEERING_SUMMARY)
    dose = read_jsonl(root / L.DOSE_RESPONSE)
    res = RunResult(
        run_dir=root,
        schema_version=version,
        config=_config(root),
        manifest=None if (m := _mapping(root / L.MANIFEST)) is None else dict(m),
        label=None if label_d is None else LabelResult.from_dict(label_d),
        judge=None if judge_d is None else JudgeInfo.from_dict(judge_d),
        probes=_probes(root),
        moral=_moral(root),
        directions=_directions(root),
        dose_response=None if dose is None else [DoseRow.from_dict(r) for r in dose],
        steering=None
        if steer is None
        else [SteeringCell.from_dict(c) for c in as_list(steer.get("cells")) if isinstance(c, Mapping)],
        correlations=None
        if corr is None
        else [CorrelationRow.from_dict(r) for r in as_list(corr.get("rows")) if isinstance(r, Mapping)],
        feature_vs_selfreport=None if scatter is None else FeatureScatter.from_dict(scatter),
        extra_plots=sorted((root / L.PLOTS).glob("*.png")) if (root / L.PLOTS).is_dir() else [],
    )
    if raw_summary is None:
        return res
    if raw_summary.get("kind") == "study" or legacy.is_study_v1(raw_summary):
        res.kind = "study"
        if version == 1:
            res.study = legacy.study_summary_v1(raw_summary, lambda name: _pair_summary(root / name))
        else:
            res.study = StudySummary.from_dict(raw_summary)
        return res
    if version == 1:
        mean = res.directions.get("mean")
        res.summary = legacy.run_summary_v1(
            raw_summary, res.probes, res.judge, None if mean is None else mean.top_score
        )
    else:
        res.summary = RunSummary.from_dict(raw_summary)
    return res


def _pair_summary(path: Path) -> RunSummary | None:
    return load_run(path).summary if path.is_dir() else None
