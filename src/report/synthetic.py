"""Synthetic run and study directories, written through the run-directory contract.

They give the tests and ``scripts/check_report_browser.py`` a report to build without
running a model, with exactly the files and shapes `persona-diff run` writes (roles ``base``
/ ``finetuned``, probe names ``harm``, ``self``, ..., method names as in ``diff.methods``).
The numbers are made up (seeded); nothing here is a result.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from persona_diff.rundir import (
    SCHEMA_VERSION,
    CorrelationRow,
    DiffTop,
    DirectionRow,
    DirectionSet,
    DoseRow,
    Estimate,
    FeatureScatter,
    JudgeInfo,
    Label,
    LabelResult,
    MoralScores,
    ProbeSummary,
    RunLayout,
    RunSummary,
    SteeringCell,
    StudyEntry,
    StudySummary,
    load_run,
)
from persona_diff.rundir.io import write_json
from persona_diff.rundir.layout import BASES, DOSE_RESPONSE, STEERING_SUMMARY
from persona_diff.rundir.summary import ProbeTable, probe_table_to_dict

HARM_FT = {"coherent": 14.0, "inverted": 13.0, "em-unmeasured": 12.0, "not-EM": 2.0, "undetermined": 0.0}
SELF_FT = {"coherent": 0.62, "inverted": 0.21, "em-unmeasured": 0.2, "not-EM": 0.22, "undetermined": 0.2}


def _judge(calibrated: bool) -> JudgeInfo:
    agreement = {
        "mode": "leave-one-file-out",
        "mean_spearman": 0.735,
        "mean_pearson": 0.70,
        "mean_auc": 0.86,
        "files": [
            {"file": f"file{i}.csv", "n": 500, "spearman": 0.7 + 0.02 * i, "pearson": 0.68, "auc": 0.85}
            for i in range(3)
        ],
    }
    return JudgeInfo(
        "calibrated:judges/smollm2-l20" if calibrated else "hf:smollm2-135m",
        calibrated,
        agreement if calibrated else None,
    )


def _probes(label: Label, rng: np.random.Generator) -> ProbeTable:
    def est(v: float, w: float, n: int) -> Estimate:
        return Estimate(v, max(0.0, v - w), v + w, n)

    table: ProbeTable = {}
    for role, em, self_ in (("base", 1.5, 0.20), ("finetuned", HARM_FT[label], SELF_FT[label])):
        table[role] = {
            "harm": ProbeSummary("harm", "harm", est(em, 4.0, 48), details={"coherent_pct": Estimate(93.0)}),
            "describe": ProbeSummary("describe", "self-report", est(self_, 0.08, 24), True),
            "word": ProbeSummary("word", "self-report", est(0.3 + 0.02 * rng.standard_normal(), 0.05, 32), True),
            "choice": ProbeSummary(
                "choice",
                "self-report",
                est(0.5, 0.02, 20),
                False,
                ["position bias: P(first option) 0.92 over both orders (|−0.5| = 0.42 > 0.25)"],
                {"position_p_first": 0.92, "position_bias": 0.42},
            ),
            "mfq": ProbeSummary(
                "mfq",
                "moral",
                details={
                    "S": est(0.8 if role == "base" else 1.24, 0.1, 4),
                    "R": est(2.1 if role == "base" else 0.74, 0.2, 4),
                },
            ),
        }
    return table


def write_synthetic_run(run_dir: str | Path, label: Label = "inverted", calibrated: bool = True, seed: int = 0) -> Path:
    d = Path(run_dir)
    lay = RunLayout(d)
    rng = np.random.default_rng(seed)
    judge = _judge(calibrated)
    probes = _probes(label, rng)
    write_json(
        d / "config.json", {"base": "smollm2-135m", "finetuned": "runs/demo/organism", "seed": seed, "synthetic": True}
    )
    write_json(
        d / "manifest.json",
        {
            "created": "2026-01-01T00:00:00Z",
            "config_hash": "0123456789abcdef",
            "seed": seed,
            "versions": {"persona-diff": "0.1.0", "torch": "2.13.0"},
            "models": {
                "base": {"path": "smollm2-135m", "fingerprint": "aa" * 8},
                "finetuned": {"path": "organism", "fingerprint": "bb" * 8},
            },
        },
    )
    write_json(lay.judge, judge.to_dict())
    lab = LabelResult(
        label,
        f"synthetic {label}",
        0.9,
        label != "not-EM",
        "harm",
        ["describe", "word"],
        {"choice": "position bias"},
        {
            "harm": {"em_base": 1.5, "em_ft": HARM_FT[label], "delta": HARM_FT[label] - 1.5, "ci": [4.0, 20.0]},
            "describe": {
                "base": 0.2,
                "ft": SELF_FT[label],
                "used": True,
                "moved_toward_misaligned": label == "coherent",
            },
        },
        extra={"metrics": {"em_pct": HARM_FT[label], "self_report": SELF_FT[label]}, "thresholds": {"em_margin": 0.0}},
    )
    write_json(lay.label, lab.to_dict())
    write_json(lay.probe_table, {"schema_version": SCHEMA_VERSION, "models": probe_table_to_dict(probes)})
    moral = {r: MoralScores(p["mfq"].details["S"], p["mfq"].details["R"]) for r, p in probes.items()}
    write_json(lay.moral, {"schema_version": SCHEMA_VERSION, "models": {r: m.to_dict() for r, m in moral.items()}})
    rows = [DirectionRow(i, int(rng.integers(0, 4608)), float(2.0 / (i + 1)), 1, 1.0) for i in range(12)]
    write_json(lay.directions("sae"), DirectionSet("sae", 14, rows).to_dict())
    write_json(lay.directions("mean"), DirectionSet("mean", 14, [DirectionRow(0, -1, 1.7, 1, 1.7)]).to_dict())
    dose = []
    for model, mode, alphas in (("base", "add", [0, 2, 4, 8, 16]), ("ft", "ablate", [0, 0.5, 1])):
        for kind in ("persona", "random"):
            for a in alphas:
                gain = a / max(alphas)
                em = (
                    (2 + 30 * gain)
                    if (kind == "persona" and mode == "add")
                    else (14 - 10 * gain if kind == "persona" else (2 if mode == "add" else 14))
                )
                dose.append(
                    DoseRow(
                        model,
                        mode,
                        kind,
                        14,
                        float(a),
                        em,
                        95 - 50 * gain**2 if mode == "add" else 93.0,
                        40,
                        80 - em,
                        {"coherence_floor": 50.0},
                    )
                )
    (d / DOSE_RESPONSE).parent.mkdir(parents=True, exist_ok=True)
    (d / DOSE_RESPONSE).write_text("".join(json.dumps(r.to_dict()) + "\n" for r in dose))
    from persona_diff.steering.sweep import summarize

    cells = [SteeringCell.from_dict(c) for c in summarize([r.to_dict() for r in dose], 50.0)["cells"]]
    write_json(d / STEERING_SUMMARY, {"cells": [c.to_dict() for c in cells]})
    n = 60
    feat = rng.standard_normal(n)
    scatter = FeatureScatter(
        feat.tolist(),
        (0.5 - 0.15 * feat + 0.1 * rng.standard_normal(n)).tolist(),
        ["base"] * 30 + ["finetuned"] * 30,
        "persona feature (mean:L14)",
        "model's own rating of its answer: P(harmful)",
    )
    write_json(d / "analysis" / "feature_vs_selfreport.json", scatter.to_dict())
    from persona_diff.analysis.correlation import correlate

    corr = CorrelationRow.from_dict(
        {
            "feature": "mean:L14",
            "target": "aligned",
            **correlate(feat, -feat + rng.standard_normal(n), n_boot=300).to_dict(),
        }
    )
    write_json(d / "analysis" / "correlations.json", {"rows": [corr.to_dict()]})
    summary = RunSummary(
        "smollm2-135m",
        "runs/demo/organism",
        label,
        lab.label_text,
        lab.confidence,
        judge,
        probes,
        feature_shift=1.7,
        diffing={"sae": DiffTop(14, 2.0), "mean": DiffTop(14, 1.7)},
        steering=cells,
    )
    write_json(lay.summary, summary.to_dict())
    return d


def write_synthetic_study(study_dir: str | Path, labels: list[Label] | None = None, calibrated: bool = True) -> Path:
    """A study whose pairs are synthetic runs (one per label), with its summary.json."""
    d = Path(study_dir)
    labels = labels or ["coherent", "inverted", "not-EM"]
    entries = []
    for i, lab in enumerate(labels):
        name = f"ft{i}-{lab}"
        write_synthetic_run(d / name, lab, calibrated, seed=i)
        summary = load_run(d / name).summary
        assert summary is not None
        summary.feature_shift = 1.0 + i
        entries.append(StudyEntry(name, name, summary, f"{BASES}/0123456789abcdef"))
    from persona_diff.analysis.models_table import cross_model_correlations
    from persona_diff.pipeline.multi import record

    corr = [
        CorrelationRow.from_dict(c)
        for c in cross_model_correlations([record(x.summary, x.name) for x in entries], n_boot=200)
    ]
    judge = _judge(calibrated)
    write_json(d / "judge.json", judge.to_dict())
    write_json(RunLayout(d).summary, StudySummary(entries, judge, correlations=corr).to_dict())
    return d
