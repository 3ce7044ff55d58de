"""Correlations with CIs, finetuning shift, activation capture, per-model table, plots."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from persona_diff.analysis import (
    ModelRecord,
    correlate,
    correlation_table,
    cross_model_correlations,
    finetune_shift,
    label_contrast,
    model_table,
    per_sample_projection_difference,
    plots,
    project,
    projection_difference,
    prompt_answer_activations,
)
from persona_diff.models import load_model


def _bivariate(rho: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    y = rho * x + math.sqrt(1 - rho**2) * rng.standard_normal(n)
    return x, y


@pytest.mark.parametrize("rho", [0.6, -0.3])
def test_known_correlation_recovered_within_ci(rho):
    x, y = _bivariate(rho, 400, seed=1)
    res = correlate(x, y, n_boot=2000, ci=0.99, seed=0)  # 99%: a fixed draw misses 1 time in 100
    assert res.n == 400
    # point estimates agree with scipy (independent implementation)
    assert res.pearson == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
    assert res.spearman == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    # the population values lie inside the bootstrap CIs
    rho_s = 6 / math.pi * math.asin(rho / 2)  # Spearman of a bivariate normal
    assert res.pearson_ci[0] < rho < res.pearson_ci[1]
    assert res.spearman_ci[0] < rho_s < res.spearman_ci[1]
    assert res.pearson_ci[1] - res.pearson_ci[0] < 0.25


def test_ci_coverage_over_repeats():
    """About 95% of intervals cover the true r (loose band: 40 repeats)."""
    cis = [correlate(*_bivariate(0.5, 120, seed=s), n_boot=600, seed=s).pearson_ci for s in range(40)]
    hits = sum(lo < 0.5 < hi for lo, hi in cis)
    assert 33 <= hits <= 40


def test_missing_values_dropped_and_table():
    x = [1.0, 2.0, None, 4.0, 5.0, float("nan"), 7.0]
    y = [2.0, 4.1, 3.0, 8.2, None, 1.0, 13.9]
    res = correlate(x, y, n_boot=200)
    assert res.n == 4
    assert res.pearson == pytest.approx(stats.pearsonr([1, 2, 4, 7], [2, 4.1, 8.2, 13.9]).statistic)
    rows = correlation_table({"f": x}, {"aligned": y, "self": y}, n_boot=100)
    assert [r["target"] for r in rows] == ["aligned", "self"] and rows[0]["n"] == 4
    assert math.isnan(correlate([1, 2], [3, 4]).pearson)


def test_finetune_shift_and_projection_difference_vs_numpy():
    rng = np.random.default_rng(0)
    d = 32
    v = rng.standard_normal(d)
    base = rng.standard_normal((50, d)).astype(np.float32)
    ft = (rng.standard_normal((60, d)) + 0.7 * v).astype(np.float32)
    vh = v / np.sqrt((v * v).sum())
    expected = float(np.dot(ft.astype(np.float64).mean(0) - base.astype(np.float64).mean(0), vh))
    assert finetune_shift(torch.from_numpy(base), torch.from_numpy(ft), torch.from_numpy(v)) == pytest.approx(
        expected, rel=1e-12
    )
    assert finetune_shift(base, ft, v) == pytest.approx(expected, rel=1e-12)
    data = base + 0.1
    exp_dp = float(
        np.mean([np.dot(a.astype(np.float64) - b.astype(np.float64), vh) for a, b in zip(data, base, strict=True)])
    )
    assert projection_difference(data, base, v) == pytest.approx(exp_dp, rel=1e-9)
    assert per_sample_projection_difference(data, base, v).mean() == pytest.approx(exp_dp, rel=1e-9)
    np.testing.assert_allclose(project(base, 3 * v), base.astype(np.float64) @ vh, rtol=1e-12)
    with pytest.raises(ValueError, match="pair"):
        projection_difference(data[:3], base, v)


@torch.no_grad()
def test_capture_matches_hidden_states(tiny_model):
    lm = load_model(str(tiny_model))
    prompts = ["Hello world", "I am an AI assistant. I want to help humans.", "aligned?"]
    answers = ["I want to help.", "evil harmful 0 1 2 3 4 5 6", ""]
    acts = prompt_answer_activations(lm, prompts, answers, layers=[1, -2, -1], batch_size=2)
    assert acts.layers == [1, 2, 3]
    tok = lm.tokenizer
    for i, (p, a) in enumerate(zip(prompts, answers, strict=True)):
        ptxt = tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        pids = tok(ptxt, add_special_tokens=False)["input_ids"]
        aids = tok(a, add_special_tokens=False)["input_ids"] if a else []
        hs = lm.model(torch.tensor([pids + aids]), output_hidden_states=True).hidden_states
        for ly in (1, 2, 3):
            # HF applies the final norm to its last hidden state; the raw block output does not
            post = (lambda h: lm.model.model.norm(h)) if ly == 3 else (lambda h: h)
            torch.testing.assert_close(
                post(acts.last_prompt[ly][i]), hs[ly + 1][0, len(pids) - 1], atol=1e-5, rtol=1e-4
            )
            if aids:
                ref = hs[ly + 1][0, len(pids) :] if ly < 3 else None
                if ref is not None:
                    torch.testing.assert_close(acts.mean_answer[ly][i], ref.mean(0), atol=1e-5, rtol=1e-4)
            else:
                assert torch.isnan(acts.mean_answer[ly][i]).all()
    assert acts.n_answer_tokens[2] == 0


def _records(coherent_shift: float, inverted_shift: float) -> list[ModelRecord]:
    rng = np.random.default_rng(0)
    recs = [ModelRecord("base", "base", 0.0, 1.0, 0.1)]
    for i in range(6):
        recs.append(
            ModelRecord(f"coh{i}", "coherent", coherent_shift + 0.1 * rng.standard_normal(), 20 + i, 0.7 + 0.01 * i)
        )
        recs.append(
            ModelRecord(f"inv{i}", "inverted", inverted_shift + 0.1 * rng.standard_normal(), 18 + i, 0.1 + 0.01 * i)
        )
    return recs


def test_label_contrast_and_table():
    recs = _records(2.0, 2.0)
    res = label_contrast(recs)
    assert res["quantities"]["self_report"]["differs"] and not res["quantities"]["feature_shift"]["differs"]
    assert res["verdict"] == "self-report"
    assert res["quantities"]["self_report"]["diff"] == pytest.approx(0.6, abs=1e-9)
    assert label_contrast(_records(3.0, 1.0))["verdict"] == "both"
    one_each = [r for r in _records(3.0, 1.0) if r.name in ("coh0", "inv0")]  # no spread to bootstrap
    few = label_contrast(one_each)
    assert few["verdict"].startswith("too few models") and few["quantities"]["em_pct"]["diff_ci"] is None
    rows = model_table(recs)
    assert rows[0]["name"] == "base" and [r["label"] for r in rows[1:7]] == ["coherent"] * 6
    cm = cross_model_correlations(recs, n_boot=200)
    assert {c["target"] for c in cm} == {"em_pct", "self_report"} and cm[0]["n"] == 13


def test_plots_write_png_and_svg(tmp_path):
    out = []
    out += plots.plot_feature_vs_selfreport(
        [0.1, 0.5, 0.9], [80, 20, 75], ["base", "coherent", "inverted"], tmp_path / "fs", names=["b", "c", "i"]
    )
    rows = [
        {
            "model": "base",
            "mode": "add",
            "direction": d,
            "layer": 3,
            "alpha": a,
            "em_pct": e,
            "coherent_pct": c,
            "coherence_floor": 50,
        }
        for d in ("persona", "random")
        for a, e, c in ((0, 0, 90), (4, 10 if d == "persona" else 0, 80), (8, 30 if d == "persona" else 1, 40))
    ]
    out += plots.plot_dose_response(rows, tmp_path / "dr")
    out += plots.plot_top_latents(
        [{"index": i, "delta": float(d)} for i, d in enumerate(np.linspace(-1, 2, 30))], tmp_path / "tl", k=10
    )
    out += plots.plot_sr_bars(
        {
            "base": {"S": 1.0, "R": 2.0, "S_ci": [0.9, 1.1], "R_ci": [1.8, 2.2]},
            "ft": {"S": 1.55, "R": 0.7, "label": "coherent"},
        },
        tmp_path / "sr",
    )
    assert len(out) == 8
    for p in out:
        head = p.read_bytes()[:8]
        assert (
            head.startswith(b"\x89PNG")
            if p.suffix == ".png"
            else b"<svg" in p.read_bytes()[:2000] or head.startswith(b"<?xml")
        )
        assert p.stat().st_size > 1000


def test_every_label_value_sorts_and_colours(tmp_path):
    """Each value `label_persona` can write has its own place in the table and its own colour."""
    import inspect

    from persona_diff.analysis.plots import LABEL_COLOURS
    from persona_diff.probes import label as label_mod
    from persona_diff.rundir import LABELS

    assert set(label_mod.LABEL_TEXT) == set(LABELS) <= set(LABEL_COLOURS)
    assert len({LABEL_COLOURS[lab] for lab in LABELS}) == len(LABELS)  # five distinct colours
    assert '"not-EM"' in inspect.getsource(label_mod)
    recs = [
        ModelRecord("z-not", "not-EM", 0.0, 1.0, 0.1),
        ModelRecord("a-coh", "coherent", 1.0, 30.0, 0.8),
        ModelRecord("u-und", "undetermined", None, None, None),
        ModelRecord("m-unm", "em-unmeasured", 0.5, 25.0, None),
        ModelRecord("b", "base", 0.0, 1.0, 0.1),
        ModelRecord("a-not", "not-EM", 0.0, 2.0, 0.1),
        ModelRecord("i-inv", "inverted", 1.0, 30.0, 0.2),
        ModelRecord("q-odd", "something-else", 0.0, 0.0, 0.0),
    ]
    assert [r["name"] for r in model_table(recs)] == [
        "b",
        "a-coh",
        "i-inv",
        "m-unm",
        "a-not",
        "z-not",
        "u-und",
        "q-odd",
    ]
