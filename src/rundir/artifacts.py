"""Rows of the later stages: answers, diffing directions, steering, correlations, scatter.

- `AnswerRow`: one judged answer (``probes/<role>/harm.jsonl``), tagged with its author;
- `DirectionRow` / `DirectionSet`: ``diffing/<method>/directions.json`` (`DiffResult.save`);
- `DoseRow` (``steering/dose_response.jsonl``) and `SteeringCell` (``steering/summary.json``);
- `CorrelationRow` (``analysis/correlations.json`` and a study's cross-model correlations);
- `FeatureScatter` (``analysis/feature_vs_selfreport.json``).
Keys a record does not name are kept in ``extra`` and written back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from persona_diff.rundir.values import as_list, opt_float, opt_int, opt_str, pair_of

T = TypeVar("T")


def _split(cls: type, d: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)} - {"extra"}
    return {k: v for k, v in d.items() if k not in names}


@dataclass
class AnswerRow:
    key: str
    question_id: str
    question: str
    answer: str
    author: str | None = None  # the role whose answer it is
    sample: int | None = None
    aligned: float | None = None
    coherent: float | None = None
    misaligned: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.extra,
            "key": self.key,
            "question_id": self.question_id,
            "question": self.question,
            "answer": self.answer,
            "author": self.author,
            "sample": self.sample,
            "aligned": self.aligned,
            "coherent": self.coherent,
            "misaligned": self.misaligned,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], author: str | None = None) -> AnswerRow:
        mis = d.get("misaligned")
        return cls(
            str(d.get("key", "")),
            str(d.get("question_id", "")),
            str(d.get("question", "")),
            str(d.get("answer", "")),
            opt_str(d.get("author", author)),
            opt_int(d.get("sample")),
            opt_float(d.get("aligned")),
            opt_float(d.get("coherent")),
            mis if isinstance(mis, bool) else None,
            _split(cls, d),
        )


@dataclass
class DirectionRow:
    rank: int
    latent_id: int
    score: float
    sign: int = 1
    norm: float | None = None
    mean_base: float | None = None
    mean_ft: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {
            **self.extra,
            "rank": self.rank,
            "latent_id": self.latent_id,
            "score": self.score,
            "sign": self.sign,
            "norm": self.norm,
        }
        out.update({k: v for k, v in (("mean_base", self.mean_base), ("mean_ft", self.mean_ft)) if v is not None})
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DirectionRow:
        return cls(
            opt_int(d.get("rank")) or 0,
            opt_int(d.get("latent_id")) or 0,
            opt_float(d.get("score")) or 0.0,
            opt_int(d.get("sign")) or 1,
            opt_float(d.get("norm")),
            opt_float(d.get("mean_base")),
            opt_float(d.get("mean_ft")),
            _split(cls, d),
        )


@dataclass
class DirectionSet:
    """The ranked directions one diffing method found at one layer."""

    method: str
    layer: int
    rows: list[DirectionRow]
    info: dict[str, Any] = field(default_factory=dict)
    convention: str | None = None

    @property
    def top_score(self) -> float | None:
        return self.rows[0].score if self.rows else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "layer": self.layer,
            "convention": self.convention,
            "info": self.info,
            "directions": [r.to_dict() for r in self.rows],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], method: str | None = None) -> DirectionSet:
        rows = [DirectionRow.from_dict(r) for r in as_list(d.get("directions")) if isinstance(r, Mapping)]
        info = d.get("info")
        return cls(
            str(d.get("method", method or "?")),
            opt_int(d.get("layer")) or 0,
            rows,
            dict(info) if isinstance(info, Mapping) else {},
            opt_str(d.get("convention")),
        )


@dataclass
class DoseRow:
    """EM% and coherent% of a steered model at one α (`persona_diff.steering.sweep`)."""

    model: str
    mode: str
    direction: str
    layer: int | None
    alpha: float
    em_pct: float | None = None
    coherent_pct: float | None = None
    n_scored: int | None = None
    mean_aligned: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.extra,
            "model": self.model,
            "mode": self.mode,
            "direction": self.direction,
            "layer": self.layer,
            "alpha": self.alpha,
            "em_pct": self.em_pct,
            "coherent_pct": self.coherent_pct,
            "n_scored": self.n_scored,
            "mean_aligned": self.mean_aligned,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DoseRow:
        return cls(
            str(d.get("model", "?")),
            str(d.get("mode", "add")),
            str(d.get("direction", "persona")),
            opt_int(d.get("layer")),
            opt_float(d.get("alpha")) or 0.0,
            opt_float(d.get("em_pct")),
            opt_float(d.get("coherent_pct")),
            opt_int(d.get("n_scored")),
            opt_float(d.get("mean_aligned")),
            _split(cls, d),
        )


@dataclass
class SteeringCell:
    """Per (model, mode, layer): the chosen α and EM% there, persona vs random direction."""

    model: str
    mode: str
    layer: int | None
    chosen_alpha: float | None
    em_pct_baseline: float | None
    em_pct_persona: float | None
    em_pct_random: float | None
    coherence_floor: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SteeringCell:
        return cls(
            str(d.get("model", "?")),
            str(d.get("mode", "?")),
            opt_int(d.get("layer")),
            opt_float(d.get("chosen_alpha")),
            opt_float(d.get("em_pct_baseline")),
            opt_float(d.get("em_pct_persona")),
            opt_float(d.get("em_pct_random")),
            opt_float(d.get("coherence_floor")),
        )


@dataclass
class CorrelationRow:
    """Pearson r and Spearman ρ of a feature against a target with bootstrap CIs (None when
    there were too few pairs to compute one)."""

    feature: str
    target: str
    n: int
    pearson: float | None
    pearson_ci: tuple[float, float] | None
    spearman: float | None
    spearman_ci: tuple[float, float] | None
    pearson_p: float | None = None
    spearman_p: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "target": self.target,
            "n": self.n,
            "pearson": self.pearson,
            "pearson_ci": None if self.pearson_ci is None else list(self.pearson_ci),
            "spearman": self.spearman,
            "spearman_ci": None if self.spearman_ci is None else list(self.spearman_ci),
            "pearson_p": self.pearson_p,
            "spearman_p": self.spearman_p,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CorrelationRow:
        return cls(
            str(d.get("feature", "?")),
            str(d.get("target", "?")),
            opt_int(d.get("n")) or 0,
            opt_float(d.get("pearson")),
            pair_of(d.get("pearson_ci")),
            opt_float(d.get("spearman")),
            pair_of(d.get("spearman_ci")),
            opt_float(d.get("pearson_p")),
            opt_float(d.get("spearman_p")),
        )


@dataclass
class FeatureScatter:
    """Per answer: a persona feature against a self-report of the same answer."""

    feature: list[float | None]
    self_report: list[float | None]
    labels: list[str]
    xlabel: str | None = None
    ylabel: str | None = None
    names: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"feature": self.feature, "self_report": self.self_report, "labels": self.labels}
        for k in ("xlabel", "ylabel", "names"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureScatter:
        feat = [opt_float(x) for x in as_list(d.get("feature"))]
        labels = [str(x) for x in as_list(d.get("labels"))] or ["?"] * len(feat)
        names = d.get("names")
        return cls(
            feat,
            [opt_float(x) for x in as_list(d.get("self_report"))],
            labels,
            opt_str(d.get("xlabel")),
            opt_str(d.get("ylabel")),
            [str(x) for x in as_list(names)] if names is not None else None,
        )
