"""The run-directory contract: one estimate shape, records that round-trip, a run the real
pipeline wrote reads back typed, version-1 directories (written before schema_version) still
load, and an unknown version fails with a message that names it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from persona_diff.report import build_report
from persona_diff.rundir import (
    LABELS,
    SCHEMA_VERSION,
    ContractError,
    Estimate,
    LabelResult,
    RunDirVersionError,
    RunSummary,
    StudySummary,
    load_run,
)
from persona_diff.rundir.records import ProbeSummary

FIXTURES = Path(__file__).parent / "fixtures"


def test_estimate_reads_every_shape_and_writes_one():
    shapes = [
        {"value": 2.0, "ci_lo": 1.0, "ci_hi": 3.0, "n": 4},
        {"value": 2.0, "lo": 1.0, "hi": 3.0, "n": 4},
        {"value": 2.0, "ci": [1.0, 3.0], "n": 4},
    ]
    ests = [Estimate.parse(s) for s in shapes]
    assert ests[0] == ests[1] == ests[2] == Estimate(2.0, 1.0, 3.0, 4)
    assert ests[0].to_dict() == {"value": 2.0, "ci": [1.0, 3.0], "n": 4}
    assert Estimate.parse(0.5, [0.4, 0.6]) == Estimate(0.5, 0.4, 0.6)  # legacy S + S_ci
    assert Estimate.parse(None) is None and Estimate.parse({"value": float("nan")}).value is None
    assert Estimate(1.0).ci is None and Estimate(2.0, 1.0, 3.0).fmt() == "2 [1, 3]"


def test_labels_are_the_five_the_label_module_writes():
    from persona_diff.probes.label import LABEL_TEXT

    assert set(LABELS) == set(LABEL_TEXT)
    assert LabelResult.from_dict({"label": None}).label == "undetermined"
    with pytest.raises(ContractError, match="'maybe' is not a persona label"):
        LabelResult.from_dict({"label": "maybe"})


def test_pipeline_run_reads_back_typed(tiny_run):
    run = load_run(tiny_run)
    assert run.schema_version == SCHEMA_VERSION and run.kind == "pair"
    s = run.summary
    assert s is not None and s.label == run.label.label and s.judge.spec == "hash:t"
    em = s.em_pct("finetuned")
    assert em is not None and em.ci is not None and em.n == 4  # 2 questions x 2 samples, all scored
    assert {p.kind for p in s.probes["base"].values()} == {"harm", "self-report", "moral"}
    assert set(s.self_reports("finetuned")) == {"self", "word", "describe", "rate_own", "choice", "recog", "predict"}
    assert s.feature_shift == run.directions["mean"].top_score
    assert set(run.moral) == {"base", "finetuned"} and run.moral["base"].S is not None
    answers = run.answers("finetuned")
    assert answers and all(a.author == "finetuned" for a in answers)
    # every record survives to_dict → JSON → from_dict
    assert RunSummary.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert LabelResult.from_dict(json.loads(json.dumps(run.label.to_dict()))) == run.label
    for probes in s.probes.values():
        for p in probes.values():
            assert ProbeSummary.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    # the files are strict JSON (no NaN a browser or jq would reject)
    for f in ("summary.json", "probes/summary.json", "analysis/correlations.json", "label.json"):
        text = (tiny_run / f).read_text()
        assert "NaN" not in text and "Infinity" not in text, f


def test_version_1_directory_still_loads():
    run = load_run(FIXTURES / "rundir_v1")
    assert run.schema_version == 1 and run.kind == "pair"
    s = run.summary
    assert s.label == "not-EM" and s.label_confidence == pytest.approx(0.22) and s.judge.spec == "hash:t"
    assert s.em_pct("finetuned") == Estimate(25.0, 0.0, 75.0, 4) and s.coherent_pct("finetuned") == 75.0
    assert s.self_reports("finetuned")["describe"].informative is True
    assert s.self_reports("finetuned")["word"].informative is False
    assert s.self_report("finetuned") == pytest.approx(0.5376671363456468)  # what the old study table said
    assert s.feature_shift == pytest.approx(1.0038130283355713)
    assert run.moral["finetuned"].S == Estimate(0.3535533905932738, 0.0, 0.3535533905932738)
    assert run.answers("base")[0].question_id == "magic_lamp"
    study = load_run(FIXTURES / "rundir_v1_study")
    assert study.kind == "study" and [e.name for e in study.study.entries] == ["one", "two"]
    assert study.study.entries[0].summary.em_pct("finetuned").value == 25.0


def test_version_1_directory_builds_a_report(tmp_path):
    run = shutil.copytree(FIXTURES / "rundir_v1", tmp_path / "v1")
    page = build_report(run).read_text()
    assert 'id="persona-label">not-EM<' in page and "describe" in page
    study = shutil.copytree(FIXTURES / "rundir_v1_study", tmp_path / "v1s")
    assert ">one<" in build_report(study).read_text()


@pytest.mark.parametrize("version", [SCHEMA_VERSION + 1, 0, "2"])
def test_unknown_version_fails_naming_it(tmp_path, version):
    run = shutil.copytree(FIXTURES / "rundir_v1", tmp_path / "v")
    s = json.loads((run / "summary.json").read_text())
    s["schema_version"] = version
    (run / "summary.json").write_text(json.dumps(s))
    with pytest.raises(
        RunDirVersionError,
        match=f"schema_version {version!r}" if isinstance(version, str) else f"schema_version {version}[;]",
    ):
        load_run(run)
    with pytest.raises(RunDirVersionError):
        build_report(run)  # the report says so too, instead of a page of blanks


def test_study_summary_round_trips(tmp_path):
    from persona_diff.report.synthetic import write_synthetic_study

    d = write_synthetic_study(tmp_path / "s", ["not-EM", "coherent"])
    st = load_run(d).study
    assert StudySummary.from_dict(json.loads(json.dumps(st.to_dict()))) == st
    assert load_run(d).pair("ft1-coherent").summary.label == "coherent"
