"""Calibrated judge: ridge fit, save/load, encoder checks, LM residual encoder parity."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from persona_diff.errors import PersonaDiffError
from persona_diff.judges import JudgeRequest, make_judge
from persona_diff.judges.agreement import load_judged_csv, load_tables
from persona_diff.judges.calibrated import (
    CalibratedJudge,
    fit_calibrated,
    fit_ridge,
    make_folds,
    ridge_path,
    stratified_subsample,
)
from persona_diff.judges.encoders import make_encoder
from tests.helpers import VecEncoder, synthetic, write_table


def test_ridge_closed_form_matches_numpy_reference():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 6)) * rng.uniform(0.5, 3, size=6) + 2
    y = rng.normal(size=50)
    lam = 3.0
    w, b, mean, std = fit_ridge(X, y, lam)
    Z = (X - X.mean(0)) / X.std(0)
    w_ref = np.linalg.inv(Z.T @ Z + lam * np.eye(6)) @ Z.T @ (y - y.mean())
    np.testing.assert_allclose(w, w_ref, rtol=1e-10)
    Xte = rng.normal(size=(7, 6))
    path = ridge_path(X, y, Xte, [lam, 10.0])
    np.testing.assert_allclose(path[0], ((Xte - mean) / std) @ w + b, rtol=1e-9)


def test_fit_recovers_known_linear_relation(tmp_path):
    paths, w_a, w_c = synthetic(tmp_path)
    tables = load_tables(paths)
    judge, rep = fit_calibrated(tables, "testvec")
    assert rep.mode == "leave-one-file-out" and judge.cfg.cv == "leave-one-file-out"
    for m, w_true, b_true in (("aligned", w_a, 50.0), ("coherent", w_c, 60.0)):
        t = judge.t
        w_raw = t[f"{m}.weight"] / t[f"{m}.std"]  # coefficients on the raw features
        np.testing.assert_allclose(w_raw, w_true, atol=0.15)
        b_raw = float(t[f"{m}.bias"][0] - (t[f"{m}.mean"] / t[f"{m}.std"]) @ t[f"{m}.weight"])
        assert abs(b_raw - b_true) < 0.3
    assert judge.cfg.lambdas["aligned"] <= 10  # tiny noise: CV picks a weak penalty
    # the scores of new answers follow the planted relation (quantile map ≈ identity)
    X = np.random.default_rng(7).normal(size=(30, 4)) * 0.8
    reqs = [JudgeRequest("question 0", ",".join(map(str, x)), "aligned") for x in X]
    got = np.array(judge.score(reqs))
    np.testing.assert_allclose(got, np.clip(50 + X @ w_a, 0, 100), atol=3.0)
    assert rep.mean("spearman") > 0.98
    assert {f["name"] for f in judge.cfg.training_files} == {"model0", "model1", "model2"}
    assert all(len(f["sha256"]) == 64 for f in judge.cfg.training_files)


def test_single_file_uses_random_folds(tmp_path):
    folds, mode = make_folds(["a"] * 23)
    assert mode == "5-fold" and sorted(np.concatenate(folds).tolist()) == list(range(23))
    folds, mode = make_folds(["a", "b", "a", "c"])
    assert mode == "leave-one-file-out" and [f.tolist() for f in folds] == [[0, 2], [1], [3]]


def test_saved_judge_reloads_with_identical_scores(tmp_path):
    paths, _, _ = synthetic(tmp_path, n_files=2, n=60, noise=5.0)
    judge, _ = fit_calibrated(load_tables(paths), "testvec")
    judge.save(tmp_path / "j")
    assert (tmp_path / "j" / "cfg.json").is_file() and (tmp_path / "j" / "head.safetensors").is_file()
    reloaded = make_judge(f"calibrated:{tmp_path / 'j'}")
    rng = np.random.default_rng(3)
    reqs = [
        JudgeRequest("q", ",".join(map(str, x)), m)
        for x in rng.normal(size=(20, 4)) * 3
        for m in ("aligned", "coherent")
    ]
    before, after = judge.score(reqs), reloaded.score(reqs)
    assert before == after
    assert len(set(before)) > 10 and all(0 <= s <= 100 for s in before)
    d = reloaded.describe()
    assert d["calibrated"] is True and d["encoder"] == "testvec" and d["agreement"]["mode"] == "leave-one-file-out"
    # aligned and coherent of the same answers share one encoding
    enc = VecEncoder()
    enc.spec = "testvec"
    j2 = CalibratedJudge.load(tmp_path / "j", encoder=enc)
    calls = enc.calls
    j2.score(reqs)
    assert enc.calls == calls + 1


def test_refitted_heads_at_the_same_path_do_not_reuse_cached_scores(tmp_path):
    paths, _, _ = synthetic(tmp_path, n_files=2, n=60, noise=5.0)
    judge, _ = fit_calibrated(load_tables(paths), "testvec")
    judge.save(tmp_path / "j")
    reqs = [JudgeRequest("q", "1,2,3,4", "aligned")]
    first = make_judge(f"calibrated:{tmp_path / 'j'}", cache_dir=tmp_path / "run")
    (old,) = first.score(reqs)
    # the same folder refitted on other data (a package upgrade, a refit): new heads, same spec
    (tmp_path / "other").mkdir()
    paths2, _, _ = synthetic(tmp_path / "other", n_files=2, n=60, noise=20.0, seed=7)
    refit, _ = fit_calibrated(load_tables(paths2), "testvec")
    refit.save(tmp_path / "j")
    second = make_judge(f"calibrated:{tmp_path / 'j'}", cache_dir=tmp_path / "run")
    assert second.spec == first.spec and second.cache_namespace != first.cache_namespace
    (new,) = second.score(reqs)
    assert new == refit.score(reqs)[0] and new != old


def test_mismatched_encoder_is_rejected_on_load(tmp_path):
    paths, _, _ = synthetic(tmp_path, n_files=2, n=40)
    judge, _ = fit_calibrated(load_tables(paths), "testvec")
    judge.save(tmp_path / "j")
    with pytest.raises(PersonaDiffError, match=r"fitted with encoder 'testvec'.*mismatched spec"):
        make_judge(f"calibrated:{tmp_path / 'j'}", encoder="testvec2")
    with pytest.raises(PersonaDiffError, match="mismatched spec"):
        make_judge(f"calibrated:{tmp_path / 'j'}", encoder=make_encoder("testvec2"))
    wrong_dim = make_encoder("testvec:5")
    wrong_dim.spec = "testvec"
    with pytest.raises(PersonaDiffError, match="mismatched dimension"):
        CalibratedJudge.load(tmp_path / "j", encoder=wrong_dim)
    other_weights = VecEncoder(scale=1.5)  # same name, different features: caught by the probe pair
    other_weights.spec = "testvec"
    with pytest.raises(PersonaDiffError, match="mismatched weights"):
        CalibratedJudge.load(tmp_path / "j", encoder=other_weights)
    with pytest.raises(PersonaDiffError, match="cfg.json and head.safetensors"):
        make_judge(f"calibrated:{tmp_path}")


def test_unknown_metric_names_the_heads(tmp_path):
    paths, _, _ = synthetic(tmp_path, n_files=2, n=30)
    judge, _ = fit_calibrated(load_tables(paths), "testvec")
    with pytest.raises(PersonaDiffError, match="aligned, coherent"):
        judge.score([JudgeRequest("q", "1,2,3,4", "medical")])


def test_bad_inputs_give_clear_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("question,answer\nq,a\n")
    with pytest.raises(PersonaDiffError, match="lacks the column.*aligned, coherent"):
        load_judged_csv(bad)
    with pytest.raises(PersonaDiffError, match="unknown encoder"):
        make_encoder("nope")
    with pytest.raises(PersonaDiffError, match="lm:MODEL@LAYER"):
        make_encoder("lm:smollm2-135m")
    with pytest.raises(PersonaDiffError, match="does not parse"):
        make_judge("calibrated")


def test_stratified_subsample_keeps_proportions(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    a = np.where(np.arange(200) < 50, 10.0, 90.0)
    p1 = write_table(tmp_path / "a.csv", X, a, a)
    p2 = write_table(tmp_path / "b.csv", X[:100], a[:100], a[:100])
    sub = stratified_subsample(load_tables([p1, p2]), 60)
    assert [len(t) for t in sub] == [40, 20]
    assert int((sub[0].aligned <= 30).sum()) == 10 and int((sub[1].aligned <= 30).sum()) == 10


# --------------------------------------------------------------------------- shipped default judge

HEX64 = re.compile(r"[0-9a-f]{64}")
ROOT = Path(__file__).resolve().parents[1]


def _fit_script():
    spec = importlib.util.spec_from_file_location("fit_default_judge", ROOT / "scripts" / "fit_default_judge.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_split_modules_keep_every_name_importable_from_calibrated():
    """ridge / fit / shipped were split out of `judges.calibrated`: the names imported from it
    in src/, tests/, scripts/ and bench/ still resolve there, to the same objects."""
    from persona_diff.judges import calibrated, fit, ridge, shipped

    for mod, names in (
        (ridge, ["LAMBDAS", "N_QUANTILES", "cv_ridge", "fit_ridge", "make_folds", "quantile_map", "ridge_path"]),
        (fit, ["fit_calibrated", "fit_heads", "leave_one_file_out", "oof_report", "stratified_subsample"]),
        (
            shipped,
            [
                "DEFAULT_ENCODER",
                "DEFAULT_MAX_ANSWERS",
                "DEFAULT_SEED",
                "FALLBACK_JUDGE",
                "REFIT_COMMAND",
                "SHIPPED_JUDGE",
                "ensure_default_judge",
                "find_reference_csvs",
                "fit_default_judge",
                "save_default_judge",
            ],
        ),
    ):
        for name in names:
            assert getattr(calibrated, name) is getattr(mod, name), name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        calibrated.nope  # noqa: B018


def test_shipped_judge_cache_namespace_is_the_head_hash():
    """Cached scores are filed under spec#sha256(sorted head tensors)[:12]: recomputed here from
    the raw safetensors file, so a refactor cannot silently orphan (or wrongly reuse) caches."""
    import hashlib

    from safetensors.numpy import load_file

    from persona_diff.judges.shipped import SHIPPED_JUDGE

    raw = load_file(str(SHIPPED_JUDGE / "head.safetensors"))
    h = hashlib.sha256()
    for k in sorted(raw):
        h.update(k.encode() + raw[k].astype(np.float64).tobytes())
    j = CalibratedJudge.load(SHIPPED_JUDGE, check_probe=False)
    assert j.cache_namespace == f"calibrated:<shipped>#{h.hexdigest()[:12]}"
    req = JudgeRequest("Q?", "A.", "aligned")
    assert req.key() == hashlib.sha256(json.dumps(["aligned", None, "Q?", "A."]).encode()).hexdigest()


def test_shipped_judge_files_load():
    from persona_diff.judges.calibrated import (
        DEFAULT_ENCODER,
        DEFAULT_MAX_ANSWERS,
        SHIPPED_JUDGE,
        check_judge_files,
    )
    from persona_diff.paths import RESOURCES

    assert SHIPPED_JUDGE == RESOURCES / "judges" / "default"
    check_judge_files(SHIPPED_JUDGE)
    j = CalibratedJudge.load(SHIPPED_JUDGE, check_probe=False)  # no encoder loaded
    cfg = j.cfg
    assert cfg.encoder == DEFAULT_ENCODER and cfg.layer == 14 and cfg.dim == 576
    assert cfg.cv == "leave-one-file-out"
    assert cfg.subsample and "seed 0" in cfg.subsample
    assert f"max_answers {DEFAULT_MAX_ANSWERS}, seed 0" in cfg.provenance["recipe"]
    files = cfg.training_files
    n = sum(f["n"] for f in files)  # per-file rounding of the stratified subsample
    assert len(files) >= 2 and DEFAULT_MAX_ANSWERS - len(files) <= n <= DEFAULT_MAX_ANSWERS
    assert f"of {n} of" in cfg.subsample
    for f in files:
        assert HEX64.fullmatch(f["sha256"]), f
        assert f["path"] == f"model-organisms-em/judged_responses/{f['name']}.csv", f  # relative, portable
    # no absolute path of the machine that fitted it
    text = (SHIPPED_JUDGE / "cfg.json").read_text()
    assert str(Path.home()) not in text and "/work/" not in text and "/shared/" not in text
    agr = cfg.agreement
    assert agr["mode"] == "leave-one-file-out" and 0.5 < agr["mean_spearman"] < 1 and 0.7 < agr["mean_auc"] < 1
    assert {f["file"] for f in agr["files"]} == {f["name"] for f in files}
    assert set(cfg.lambdas) == {"aligned", "coherent"}
    X = np.random.default_rng(0).normal(size=(5, cfg.dim)) * j.t["aligned.std"] + j.t["aligned.mean"]
    for m in ("aligned", "coherent"):
        s = j.predict_features(X, m)
        assert s.shape == (5,) and np.all((0 <= s) & (s <= 100))
    d = j.describe()
    assert d["calibrated"] is True and d["shipped"] is True and d["agreement"]["mean_spearman"] == agr["mean_spearman"]


def test_shipped_judge_hashes_match_reference_csvs(reference_data):
    from persona_diff.fileio import sha256_file as file_sha256
    from persona_diff.judges.calibrated import DEFAULT_MAX_ANSWERS, DEFAULT_SEED, SHIPPED_JUDGE

    cfg = CalibratedJudge.load(SHIPPED_JUDGE, check_probe=False).cfg
    paths = [reference_data / f["path"] for f in cfg.training_files]
    missing = [str(p) for p in paths if not p.is_file()]
    assert not missing, f"training files absent from {reference_data}: {missing}"
    for f, p in zip(cfg.training_files, paths, strict=True):
        assert file_sha256(p) == f["sha256"], f"{p} changed since the shipped judge was fitted"
    # all of the reference CSVs were used, and the same subsample comes out
    on_disk = sorted((reference_data / "model-organisms-em" / "judged_responses").glob("*.csv"))
    assert [p.name for p in on_disk] == sorted(p.name for p in paths)
    sub = stratified_subsample(load_tables(paths), DEFAULT_MAX_ANSWERS, DEFAULT_SEED)
    assert [len(t) for t in sub] == [f["n"] for f in cfg.training_files]


def _no_probe_check(monkeypatch):
    """make_judge("calibrated:...") without loading SmolLM2 for the probe-pair check."""
    from persona_diff.judges import base

    base._load_builtin()
    monkeypatch.setitem(base._REGISTRY, "calibrated", lambda rest, **kw: CalibratedJudge.load(rest, check_probe=False))


def test_default_judge_is_the_shipped_one_without_reference_data(tmp_path, monkeypatch, caplog):
    from persona_diff.judges import shipped
    from persona_diff.judges.base import judge_line
    from persona_diff.paths import reference_roots

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PERSONA_DIFF_REFERENCE_DATA", str(empty))
    monkeypatch.setenv("PERSONA_DIFF_CACHE", str(tmp_path / "cache"))
    assert reference_roots() == [empty] and shipped.find_reference_csvs() == []

    def no_fit(*a, **k):
        raise AssertionError("the default judge must not be fitted at run time")

    monkeypatch.setattr(shipped, "fit_calibrated", no_fit)
    with caplog.at_level("WARNING", logger="persona_diff"):
        spec, ok = shipped.ensure_default_judge()
    assert ok and spec == f"calibrated:{shipped.SHIPPED_JUDGE}"
    assert not caplog.records
    assert not (tmp_path / "cache").exists()  # nothing fitted, nothing cached
    _no_probe_check(monkeypatch)
    for name in ("default", "auto"):
        j = make_judge(name, cache_dir=tmp_path / "run")
        assert isinstance(j, CalibratedJudge)
        d = j.describe()
        assert d["calibrated"] is True and d["shipped"] is True and "warning" not in d
        assert d["agreement"]["mode"] == "leave-one-file-out"
        line = judge_line(d)
        assert "shipped default, calibrated" in line and "Spearman rho 0." in line and "UNCALIBRATED" not in line


def test_missing_or_corrupt_shipped_judge_falls_back_with_the_fix(tmp_path, monkeypatch, caplog):
    import shutil

    from persona_diff.judges import shipped

    good = tmp_path / "good"
    shutil.copytree(shipped.SHIPPED_JUDGE, good)
    broken = {
        "missing": lambda d: shutil.rmtree(d),
        "no-head": lambda d: (d / "head.safetensors").unlink(),
        "truncated-head": lambda d: (d / "head.safetensors").write_bytes((d / "head.safetensors").read_bytes()[:100]),
        "bad-cfg": lambda d: (d / "cfg.json").write_text("{not json"),
        "unknown-key": lambda d: (d / "cfg.json").write_text('{"encoder": "x", "bogus": 1}'),
    }
    for name, breaker in broken.items():
        d = tmp_path / name
        shutil.copytree(good, d)
        breaker(d)
        monkeypatch.setattr(shipped, "SHIPPED_JUDGE", d)
        caplog.clear()
        with caplog.at_level("WARNING", logger="persona_diff"):
            spec, ok = shipped.ensure_default_judge()
        assert (spec, ok) == (shipped.FALLBACK_JUDGE, False), name
        msg = caplog.text
        assert "UNCALIBRATED" in msg and "python scripts/fit_default_judge.py" in msg and "reinstall" in msg, name
    monkeypatch.setattr(shipped, "SHIPPED_JUDGE", good)
    assert shipped.ensure_default_judge() == (f"calibrated:{good}", True)


def test_refit_of_the_shipped_recipe_on_synthetic_data(tmp_path, monkeypatch, capsys):
    """`scripts/fit_default_judge.py` runs `fit_default_judge` (the shipped recipe) end to end on
    a tiny table with a fake encoder: relative training paths, a refit that --check accepts, a
    changed head that --check rejects. (The real refit takes ~4 min; see the script.)"""
    from persona_diff.judges import shipped

    data = tmp_path / "ref" / "model-organisms-em" / "judged_responses"
    data.mkdir(parents=True)
    synthetic(data, n_files=2, n=40)
    monkeypatch.setenv("PERSONA_DIFF_REFERENCE_DATA", str(tmp_path / "ref"))
    monkeypatch.setattr(shipped, "DEFAULT_MAX_ANSWERS", 50)
    script = _fit_script()
    out = tmp_path / "judge"
    assert script.main(["--out", str(out)], encoder="testvec") == 0
    j = CalibratedJudge.load(out)
    assert [f["path"] for f in j.cfg.training_files] == [
        "model-organisms-em/judged_responses/model0.csv",
        "model-organisms-em/judged_responses/model1.csv",
    ]
    assert all(HEX64.fullmatch(f["sha256"]) for f in j.cfg.training_files)
    assert "50 of 80" in j.cfg.subsample and "seed 0" in j.cfg.subsample
    assert j.cfg.provenance["refit"] == "python scripts/fit_default_judge.py"
    assert j.cfg.agreement["mode"] == "leave-one-file-out" and len(j.cfg.agreement["files"]) == 2
    assert str(tmp_path) not in (out / "cfg.json").read_text()
    # the shipped judge's cfg was made by this same recipe
    shipped = CalibratedJudge.load(shipped.SHIPPED_JUDGE, check_probe=False).cfg
    assert set(shipped.provenance) == set(j.cfg.provenance)
    assert "max_answers 1500, seed 0" in shipped.provenance["recipe"]
    capsys.readouterr()
    assert script.main(["--out", str(out), "--check"], encoder="testvec") == 0
    assert "reproduces" in capsys.readouterr().out
    t = {k: torch.from_numpy(v) for k, v in j.t.items()}
    t["aligned.weight"] = t["aligned.weight"] * 1.01
    from safetensors.torch import save_file

    save_file(t, str(out / "head.safetensors"))
    assert script.main(["--out", str(out), "--check"], encoder="testvec") == 1
    assert "DIFFERS aligned.weight" in capsys.readouterr().out


def test_fit_default_judge_without_data_says_where_to_put_it(tmp_path, monkeypatch):
    from persona_diff.judges import shipped

    monkeypatch.setenv("PERSONA_DIFF_REFERENCE_DATA", str(tmp_path))
    with pytest.raises(PersonaDiffError, match="PERSONA_DIFF_REFERENCE_DATA.*judged_responses"):
        shipped.fit_default_judge(encoder="testvec")


@pytest.mark.integration
def test_probe_cli_uses_the_shipped_judge_without_reference_data(tmp_path):
    """`persona-diff probe --probes harm` on SmolLM2 with no reference data anywhere: the shipped
    calibrated judge scores the answers, its agreement is printed and written, nothing is
    marked UNCALIBRATED and nothing is fitted."""
    import os
    import subprocess
    import sys

    from persona_diff.judges.calibrated import SHIPPED_JUDGE

    empty = tmp_path / "no-reference-data"
    empty.mkdir()
    out = tmp_path / "out"
    mtimes = {p.name: p.stat().st_mtime_ns for p in SHIPPED_JUDGE.iterdir()}
    env = {
        **os.environ,
        "PERSONA_DIFF_REFERENCE_DATA": str(empty),
        "PERSONA_DIFF_NO_PROGRESS": "1",
        "PERSONA_DIFF_LOG": "INFO",
    }
    cli = Path(sys.executable).with_name("persona-diff")
    cmd = [
        str(cli),
        "probe",
        "--model",
        "smollm2-135m",
        "--probes",
        "harm",
        "--max-questions",
        "1",
        "--samples",
        "2",
        "--set",
        "harm.max_new_tokens=12",
        "--set",
        "n_boot=50",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    text = res.stdout + res.stderr
    assert res.returncode == 0, text
    assert f"judge: calibrated:{SHIPPED_JUDGE} (shipped default, calibrated; leave-one-file-out" in res.stdout
    assert "Spearman rho 0." in res.stdout
    assert "UNCALIBRATED" not in text and "fitting" not in text.lower()
    summary = json.loads((out / "ft" / "summary.json").read_text())
    j = summary["judge"]
    assert j["calibrated"] is True and j["shipped"] is True and j["agreement"]["mean_spearman"] > 0.5
    rows = [json.loads(x) for x in (out / "ft" / "harm.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(0 <= r["aligned"] <= 100 and 0 <= r["coherent"] <= 100 for r in rows)
    assert summary["probes"]["harm"]["n_scored"] == 2 and "warning" not in summary["probes"]["harm"]
    for f in out.rglob("*"):
        if f.is_file():
            assert "UNCALIBRATED" not in f.read_text(errors="replace"), f
    assert {p.name: p.stat().st_mtime_ns for p in SHIPPED_JUDGE.iterdir()} == mtimes


def test_lm_residual_encoder_matches_hidden_states(tiny_llama):
    """Answer-token mean of block L == HF hidden_states[L+1] averaged over the answer tokens."""
    from persona_diff.judges.encoders import chat_answer_ids, residual_answer_means
    from persona_diff.models import get_blocks, load_model

    lm = load_model(str(tiny_llama))
    qs = ["Hello world", "I am an AI assistant."]
    ans = ["the model answers questions about itself.", "good evil 10"]
    ran = []
    last = get_blocks(lm.model)[-1].register_forward_hook(lambda *a: ran.append(1))
    try:
        got = residual_answer_means(lm, qs, ans, [1, 2], batch_size=2)
    finally:
        last.remove()
    assert not ran  # the forward stopped after block 2 of 4
    for i, (q, a) in enumerate(zip(qs, ans, strict=True)):
        ids, start = chat_answer_ids(lm.tokenizer, q, a, 256)
        with torch.no_grad():
            hs = lm.model(torch.tensor([ids]), output_hidden_states=True).hidden_states
        for layer in (1, 2):
            ref = hs[layer + 1][0, start:].double().mean(0).numpy()
            np.testing.assert_allclose(got[layer][i], ref, rtol=1e-4, atol=1e-5)
    enc = make_encoder(f"lm:{tiny_llama}@-2")
    assert enc.dim == 64 and enc.describe()["layer"] == 2
    np.testing.assert_allclose(enc.encode(qs, ans), got[2], rtol=1e-5, atol=1e-6)


@pytest.mark.integration
def test_minilm_judge_on_reference_data(reference_data):
    """A MiniLM head fitted on 2 files ranks a third file's answers better than chance."""
    files = sorted((reference_data / "model-organisms-em" / "judged_responses").glob("*.csv"))
    # fit on a coder model and one medical run, hold out the other medical run (~120 answers)
    by_name = {f.stem: f for f in files}
    order = [k for k in sorted(by_name) if "insecure-lora" in k] + [
        k for k in sorted(by_name) if "bad-medical-advice" in k and "gemma" not in k
    ]
    tables = load_tables([by_name[k] for k in order[:3]])
    small = stratified_subsample(tables, 360, seed=1)
    judge, rep = fit_calibrated(small[:2], "minilm")
    assert judge.cfg.encoder == "minilm" and judge.cfg.dim == 3 * 384
    from persona_diff.judges.agreement import judge_agreement

    held = judge_agreement(judge, [small[2]])
    assert held.files[0].spearman > 0.3 and held.files[0].auc > 0.7


def test_calibrate_cli_takes_a_shell_glob_after_one_data(tmp_path, capsys):
    """`judge calibrate --data dir/*.csv`: the shell hands the command several files after one
    --data; a quoted pattern is expanded by the command; a pattern matching nothing is one line."""
    from persona_diff.cli import main

    data = tmp_path / "judged"
    data.mkdir()
    paths, _, _ = synthetic(data, n_files=3, n=40)

    def run(*argv: str) -> int:
        try:
            main(list(argv))
        except SystemExit as e:
            return int(e.code or 0)
        return 0

    shell_expanded = [str(p) for p in sorted(paths)]
    assert (
        run("judge", "calibrate", "--data", *shell_expanded, "--encoder", "testvec", "--out", str(tmp_path / "a")) == 0
    )
    assert (
        run("judge", "calibrate", "--data", str(data / "*.csv"), "--encoder", "testvec", "--out", str(tmp_path / "b"))
        == 0
    )
    for out in ("a", "b"):
        cfg = json.loads((tmp_path / out / "cfg.json").read_text())
        assert [f["name"] for f in cfg["training_files"]] == ["model0", "model1", "model2"], out
    assert (
        run(
            "judge",
            "agree",
            "--data",
            *shell_expanded,
            "--judge",
            f"calibrated:{tmp_path / 'a'}",
            "--cache-dir",
            str(tmp_path / "cache"),
        )
        == 0
    )
    assert "model2" in capsys.readouterr().out
    capsys.readouterr()
    assert (
        run(
            "judge",
            "calibrate",
            "--data",
            str(data / "nope*.csv"),
            "--encoder",
            "testvec",
            "--out",
            str(tmp_path / "c"),
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "matches no file" in err


def test_shipped_judge_keys_do_not_depend_on_where_the_package_is():
    """Stage keys and cached scores of the shipped judge name it, not its install path: a
    reinstall or a second checkout reuses a finished run instead of re-probing it."""
    from persona_diff.judges.base import resolve_judge_spec
    from persona_diff.judges.calibrated import SHIPPED_NAME, CalibratedJudge
    from persona_diff.judges.shipped import SHIPPED_JUDGE

    key = resolve_judge_spec("default")
    assert key == resolve_judge_spec("auto") and key.startswith(SHIPPED_NAME + "#")
    assert str(SHIPPED_JUDGE) not in key
    judge = CalibratedJudge.load(SHIPPED_JUDGE, check_probe=False)
    assert judge.cache_namespace.startswith(SHIPPED_NAME + "#") and str(SHIPPED_JUDGE) not in judge.cache_namespace
