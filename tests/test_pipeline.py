"""`persona-diff run` end to end on a tiny pair: artifacts, resume after a kill, bad input."""

from __future__ import annotations

import json

import pytest

from persona_diff.config import load_config
from persona_diff.errors import ConfigError, PairMismatchError
from persona_diff.judges.base import JudgeRequest
from persona_diff.pipeline.config import RunConfig
from persona_diff.pipeline.run import Pipeline
from persona_diff.rundir import SCHEMA_VERSION, load_run

from .helpers import TINY, build_tiny


def _events(run_dir):
    return [json.loads(x) for x in (run_dir / "stages.log.jsonl").read_text().splitlines()]


def test_run_resume_and_artifacts(tiny_pair, tmp_path, monkeypatch):
    base, ft = tiny_pair
    cfg = load_config(RunConfig, None, TINY)
    out = tmp_path / "run"

    def killed(self, d):
        (d / "partial").write_text("x")
        raise KeyboardInterrupt  # a kill in the middle of capture

    monkeypatch.setattr(Pipeline, "_capture", killed)
    with pytest.raises(KeyboardInterrupt):
        Pipeline(base, ft, cfg, out).run()
    probes_marker = (out / "probes" / "base" / "_stage.json").stat().st_mtime_ns
    monkeypatch.undo()

    report = Pipeline(base, ft, cfg, out).run()
    ev = [(e["stage"], e["event"]) for e in _events(out)]
    for role in ("base", "finetuned"):  # one stage per model
        assert ev.count((f"probes/{role}", "start")) == 1 and (f"probes/{role}", "skip") in ev
    assert ("label", "skip") in ev and ev.count(("activations", "start")) == 2
    assert (out / "probes" / "base" / "_stage.json").stat().st_mtime_ns == probes_marker
    for f in [
        "config.json",
        "config.yaml",
        "manifest.json",
        "summary.json",
        "label.json",
        "judge.json",
        "probes/summary.json",
        "probes/base/harm.jsonl",
        "probes/finetuned/predict.jsonl",
        "activations/store/index.json",
        "diffing/mean/directions.json",
        "diffing/crosscoder/directions.json",
        "diffing/diff-sae/directions.json",
        "diffing/sae/directions.json",
        "steering/dose_response.jsonl",
        "steering/summary.json",
        "analysis/correlations.json",
        "plots/dose_response.png",
        "report.html",
        "internals/internals.json",
        "internals/answers.csv",
    ]:
        assert (out / f).is_file(), f
    summary = json.loads((out / "summary.json").read_text())
    assert summary["label"] in {"coherent", "inverted", "not-EM", "em-unmeasured", "undetermined"}
    assert summary["schema_version"] == SCHEMA_VERSION and summary["kind"] == "pair"
    # the feature-vs-self-report scatter plots a self-report per answer, never the judge's score
    fvs = json.loads((out / "analysis" / "feature_vs_selfreport.json").read_text())
    assert "judge" not in fvs["ylabel"] and "own" in fvs["ylabel"]
    rated = {
        round(p, 9)
        for role in ("base", "finetuned")
        for line in (out / "probes" / role / "rate_own_answers.jsonl").read_text().splitlines()
        if (p := json.loads(line)["p_harmful"]) is not None
    }
    ys = [round(v, 9) for v in fvs["self_report"] if v is not None]
    assert len(ys) > 1 and set(ys) <= rated
    assert summary["judge"]["spec"] == "hash:t"
    html = report.read_text()
    assert "data:image/png;base64," in html and summary["label"] in html
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["versions"]["torch"] and manifest["models"]["finetuned"]["fingerprint"]

    assert "Per-answer correlations" in html
    rows = [json.loads(x) for x in (out / "internals" / "answers.jsonl").read_text().splitlines()]
    keys = {(r, a.key) for r in ("base", "finetuned") for a in load_run(out).answers(r)}
    assert sorted((r["model"], r["key"]) for r in rows) == sorted(keys)  # one row per judged answer of either model

    assert load_config(RunConfig, out / "config.yaml") == cfg  # the saved config repeats the run

    # a third run does nothing but rebuild the report: neither model nor the judge is loaded
    import persona_diff.models.loading as loading
    import persona_diff.pipeline.run as pipeline_run

    def refuse(*a, **k):
        raise AssertionError("a finished run loaded a model or the judge")

    monkeypatch.setattr(loading, "load_model", refuse)
    monkeypatch.setattr(pipeline_run, "resolve_judge", refuse)
    Pipeline(base, ft, cfg, out).run()
    monkeypatch.undo()
    n_stages = len({e["stage"] for e in _events(out)})
    last = [e for e in _events(out)][-n_stages:]
    assert n_stages >= 8 and all(e["event"] == "skip" for e in last)

    # where the models run is not part of the config's identity: another device resumes
    moved = load_config(RunConfig, None, [*TINY, "device=cpu", "device_map=cpu"])
    Pipeline(base, ft, moved, out).run()
    assert all(e["event"] == "skip" for e in _events(out)[-6:])

    # another config in the same directory: refused, nothing touched
    other = load_config(RunConfig, None, [*TINY, "steering.alphas=[0.0, 3.0]"])
    with pytest.raises(ConfigError, match="made by another config.*steering"):
        Pipeline(base, ft, other, out)
    # --force reruns only steering onward; the old steering outputs are kept aside
    Pipeline(base, ft, other, out, force=True).run()
    ev = [(e["stage"], e["event"]) for e in _events(out)][-6:]
    assert ("steering", "start") in ev and ("diffing", "skip") in ev
    assert list(out.glob("steering.prev-*"))


def test_bad_config_and_pair(tiny_pair, tmp_path):
    with pytest.raises(ConfigError, match="unknown key.*alphs.*valid keys are: ablate_alphas, alphas"):
        load_config(RunConfig, None, ["steering.alphs=[1]"])
    other = build_tiny("llama", tmp_path / "wide", hidden=32)
    cfg = load_config(RunConfig, None, TINY)
    with pytest.raises(PairMismatchError, match="hidden size"):
        Pipeline(tiny_pair[0], str(other), cfg, tmp_path / "r").run()


def test_adaptive_harm_inside_run(tiny_pair, tmp_path):
    """`run` samples the harm probe in rounds on both models; the probe stages take the n it
    chose and reuse its answers (nothing generated twice); the label states the record."""
    over = [
        *TINY,
        "probes.harm.adaptive.enabled=true",
        "probes.harm.adaptive.start_samples=1",
        "probes.harm.adaptive.round_samples=1",
        "probes.harm.adaptive.max_samples=3",
        "steering.enabled=false",
        "diff.methods=[mean]",
    ]
    cfg = load_config(RunConfig, None, over)
    out = tmp_path / "run"
    Pipeline(*tiny_pair, cfg, out).run()
    record = json.loads((out / "harm_adaptive" / "_stage.json").read_text())["result"]
    assert 1 <= record["samples"] <= 3 and record["base_samples"] >= record["samples"]
    n_q = len({a.question_id for a in load_run(out).answers("base")})
    for role, key in (("base", "base_samples"), ("finetuned", "samples")):
        rounds = (out / "harm_adaptive" / role / "harm_answers.jsonl").read_text()
        assert (out / "probes" / role / "harm_answers.jsonl").read_text() == rounds
        assert len(load_run(out).answers(role)) == n_q * record[key]
    label = json.loads((out / "label.json").read_text())
    assert json.dumps(label).count("stopped_because") >= 1
    Pipeline(*tiny_pair, cfg, out).run()  # resumes: the rounds are not redone
    assert [e["event"] for e in _events(out) if e["stage"] == "harm_adaptive"] == ["start", "finish", "skip"]


def test_bad_model_spec_fails_before_the_run_dir_is_written(tiny_pair, tmp_path):
    from persona_diff.errors import ModelLoadError

    cfg = load_config(RunConfig, None, TINY)
    for base, ft in ((tiny_pair[0], str(tmp_path / "no-such-adapter")), (str(tmp_path / "nope.gguf"), tiny_pair[1])):
        with pytest.raises(ModelLoadError, match="does not exist"):
            Pipeline(base, ft, cfg, tmp_path / "run")
        assert not (tmp_path / "run").exists()


def test_auto_judge_without_calibration_data_is_marked(tiny_pair, tmp_path, monkeypatch):
    import persona_diff.judges.shipped as shipped
    from persona_diff.pipeline.run import resolve_judge

    monkeypatch.setattr(shipped, "ensure_default_judge", lambda: (f"hf:{tiny_pair[0]}", False))
    cfg = load_config(RunConfig, None, ["judge=auto"])
    judge = resolve_judge(cfg, tmp_path)
    assert judge.min_mass == 0.0  # the chain keeps running instead of scoring nothing
    desc = json.loads((tmp_path / "judge.json").read_text())
    assert desc["calibrated"] is False and "UNCALIBRATED" in desc["warning"]
    assert judge.score([JudgeRequest("Hi?", "Hello")])[0] is not None


def test_role_probes_do_not_depend_on_which_model_goes_first(tiny_pair, tmp_path):
    """Each model's answers come from seeds in the config: probing the fine-tune first gives
    the same answers and judgments as probing the base first (what lets a study share a base)."""
    cfg = load_config(RunConfig, None, [*TINY, "probes.probes=[harm, describe, mfq]"])
    answers = {}
    for order in (("base", "finetuned"), ("finetuned", "base")):
        out = tmp_path / "-".join(order)
        pipe = Pipeline(*tiny_pair, cfg, out)
        keys = pipe.probe_keys()
        for role in order:
            pipe.probe_role(role, keys[role])
        answers[order] = {r: [(a.key, a.answer, a.aligned) for a in load_run(out).answers(r)] for r in order}
        answers[order]["describe"] = {r: (out / "probes" / r / "describe_answers.jsonl").read_text() for r in order}
    a, b = answers.values()
    assert a["base"] == b["base"] and a["finetuned"] == b["finetuned"] and a["describe"] == b["describe"]
    assert a["base"] != a["finetuned"]  # the two models did answer differently
