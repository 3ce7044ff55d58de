"""Every probe end to end on SmolLM2-135M: real generations, real local-model judge calls."""

from __future__ import annotations

import csv
import json

import pytest

from persona_diff.judges import make_judge
from persona_diff.probes import LabelConfig, ProbeConfig, label_persona, run_probes
from persona_diff.probes.config import DEFAULT_PROBES


@pytest.mark.integration
def test_all_probes_on_smollm2(smollm2, tmp_path, monkeypatch):
    monkeypatch.setenv("PERSONA_DIFF_NO_PROGRESS", "1")
    cfg = ProbeConfig(n_boot=100)
    cfg.harm.max_questions = 2
    cfg.harm.samples = 2
    cfg.harm.max_new_tokens = 24
    cfg.harm.fail_without_scores = False
    cfg.self.dimensions = ["aligned with human values:misaligned with human values", "good:evil"]
    cfg.self.both_orientations = False
    cfg.choice.max_pairs = 2
    cfg.recog.max_items = 2
    cfg.predict.max_items = 2
    cfg.word.max_prompts = 1
    cfg.describe.max_prompts = 2
    cfg.describe.samples = 2
    cfg.describe.max_new_tokens = 16
    cfg.rate_own.max_items = 2
    cfg.mfq.max_items = 3
    cfg.mfq.max_personas = 3
    cfg.mfq.repeats = 3
    cfg.min_mass = 0.0  # SmolLM2 puts little mass on numbers; keep every reading for the test
    judge = make_judge("hf:smollm2-135m", model=smollm2, min_mass=0.0)
    s = run_probes(smollm2, cfg, judge, tmp_path)
    assert s["exact_option_probs"] is True
    assert set(s["probes"]) == set(DEFAULT_PROBES)
    for name in ("harm", "self", "word", "describe", "rate_own", "choice", "recog", "predict", "mfq"):
        rows = [json.loads(x) for x in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
        assert rows and all("key" in r for r in rows), name
    harm = [json.loads(x) for x in (tmp_path / "harm.jsonl").read_text().splitlines()]
    assert len(harm) == 4 and all(0 <= r["aligned"] <= 100 and 0 <= r["coherent"] <= 100 for r in harm)
    assert s["probes"]["harm"]["n_scored"] == 4
    for r in (json.loads(x) for x in (tmp_path / "choice.jsonl").read_text().splitlines()):
        assert r["probs"]["A"] + r["probs"]["B"] == pytest.approx(1.0) and 0 <= r["signal"] <= 1
    for r in (json.loads(x) for x in (tmp_path / "self.jsonl").read_text().splitlines()):
        assert r["signal"] is None or 0 <= r["signal"] <= 1
    pred = [json.loads(x) for x in (tmp_path / "predict.jsonl").read_text().splitlines()]
    assert all(r["gap"] == pytest.approx(r["predicted"] - r["actual"]) for r in pred)
    with (tmp_path / "mfq_ratings.csv").open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == 3 * 3 * 3 and all(0 <= int(r["rating"]) <= 5 for r in table)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["probes"]["mfq"]["S"]["value"] is not None
    # a rerun resumes: no judge calls, identical summaries of the item probes
    calls = []
    orig = judge._score
    judge._score = lambda reqs: calls.append(len(reqs)) or orig(reqs)
    s2 = run_probes(smollm2, cfg, judge, tmp_path)
    assert not calls
    assert s2["probes"]["choice"]["signal"] == s["probes"]["choice"]["signal"]
    lab = label_persona(s, s2, LabelConfig(n_boot=100))
    assert lab["label"] == "not-EM"  # a model compared with itself


@pytest.mark.integration
def test_small_model_informativeness(smollm2, tmp_path, monkeypatch):
    """Issue 13 on SmolLM2-135M: the A/B formats are position bias (P(A) ~0.9 in both orders),
    the single-word format is not; the diagnostics say so."""
    monkeypatch.setenv("PERSONA_DIFF_NO_PROGRESS", "1")
    cfg = ProbeConfig(probes=["word", "choice"], n_boot=100)
    cfg.word.max_prompts = 2
    judge = make_judge("hf:smollm2-135m", model=smollm2, min_mass=0.0)
    p = run_probes(smollm2, cfg, judge, tmp_path)["probes"]
    ch = p["choice"]["informativeness"]
    assert ch["position_p_first"] > 0.85 and not ch["informative"]
    assert any("position bias" in r for r in ch["reasons"])
    w = p["word"]["informativeness"]
    assert w["informative"], w["reasons"]
    assert w["position_bias"] < 0.25 and w["order_agreement"] >= 0.6 and w["mean_mass"] > 0.002
