"""Moral susceptibility S and robustness R: hand tables, persona bootstrap, the CSV command."""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pytest
from typer.testing import CliRunner

from persona_diff.cli import app
from persona_diff.errors import PersonaDiffError
from persona_diff.probes.mfq import load_mfq, sample_ratings, score_ratings_csv
from persona_diff.probes.stats import moral_scores, ratings_cube, robustness, susceptibility


def _ref(table: dict[tuple[int, int], list[float]]) -> tuple[float, float]:
    """Plain-Python S and R straight from the definitions."""
    personas = sorted({p for p, _ in table})
    items = sorted({q for _, q in table})
    mu = {k: statistics.fmean(v) for k, v in table.items()}
    sd = {k: statistics.stdev(v) for k, v in table.items()}
    s = statistics.fmean(statistics.stdev([mu[(p, q)] for p in personas]) for q in items)
    r = 1.0 / statistics.fmean(sd.values())
    return s, r


def _rows(table):
    return [(str(p), str(q), r, y) for (p, q), ys in table.items() for r, y in enumerate(ys)]


def test_s_and_r_on_hand_table():
    table = {
        (0, 1): [1, 2, 1],
        (0, 2): [4, 4, 5],
        (1, 1): [3, 3, 3],
        (1, 2): [0, 1, 0],
        (2, 1): [5, 4, 5],
        (2, 2): [2, 2, 3],
    }
    cube, personas, items = ratings_cube(_rows(table))
    assert cube.shape == (3, 2, 3) and personas == ["0", "1", "2"]
    s_ref, r_ref = _ref(table)
    assert susceptibility(cube) == pytest.approx(s_ref, rel=1e-12)
    assert robustness(cube) == pytest.approx(r_ref, rel=1e-12)
    # by hand: item 1 persona means 4/3, 3, 14/3 → sd 5/3; item 2: 13/3, 1/3, 7/3 → sd 2
    assert s_ref == pytest.approx((5 / 3 + 2) / 2)


def test_persona_bootstrap_brackets_and_infinite_r():
    rng = np.random.default_rng(1)
    table = {(p, q): list(rng.integers(0, 6, 4).astype(float)) for p in range(8) for q in range(5)}
    cube, _, _ = ratings_cube(_rows(table))
    res = moral_scores(cube, n_boot=300, seed=0)
    s_ref, r_ref = _ref(table)
    assert res["S"]["value"] == pytest.approx(s_ref) and res["R"]["value"] == pytest.approx(r_ref)
    assert res["S"]["ci_lo"] <= s_ref <= res["S"]["ci_hi"]
    assert res["R"]["ci_lo"] <= r_ref <= res["R"]["ci_hi"]
    const = {(p, q): [3.0, 3.0] for p in range(3) for q in range(2)}
    assert math.isinf(robustness(ratings_cube(_rows(const))[0]))


def test_sample_ratings_temperature():
    probs = {str(i): p for i, p in enumerate([0.1, 0.6, 0.1, 0.1, 0.05, 0.05])}
    assert sample_ratings(probs, 0.0, 5, seed=0) == [1] * 5
    draws = sample_ratings(probs, 1.0, 4000, seed=0)
    assert np.mean(np.array(draws) == 1) == pytest.approx(0.6, abs=0.03)
    cold = sample_ratings(probs, 0.1, 2000, seed=0)
    assert np.mean(np.array(cold) == 1) > 0.99  # (0.6/0.1)^10 dominates


def _write_csv(path, table):
    lines = ["persona_id,question_id,run_index,rating"]
    lines += [f"{p},{q},{r},{y}" for p, q, r, y in _rows(table)]
    path.write_text("\n".join(lines) + "\n")


def test_mfq_score_cli(tmp_path):
    rng = np.random.default_rng(2)
    ft = {(p, q): list(rng.integers(0, 6, 3).astype(float)) for p in range(5) for q in range(4)}
    base = {(p, q): [2.0 + (p % 2), 2.0 + (p % 2), 3.0] for p in range(5) for q in range(4)}
    _write_csv(tmp_path / "ft.csv", ft)
    _write_csv(tmp_path / "base.csv", base)
    res = CliRunner().invoke(
        app, ["mfq-score", str(tmp_path / "ft.csv"), "--base", str(tmp_path / "base.csv"), "--json"]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    s_f, r_f = _ref(ft)
    s_b, r_b = _ref(base)
    assert out["S"]["value"] == pytest.approx(s_f) and out["R"]["value"] == pytest.approx(r_f)
    assert out["dS"] == pytest.approx(s_f - s_b) and out["dR_rel"] == pytest.approx((r_f - r_b) / r_b)
    text = CliRunner().invoke(app, ["mfq-score", str(tmp_path / "ft.csv")])
    assert text.exit_code == 0 and "S (susceptibility)" in text.output


def test_bad_csv(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("persona,item,rating\n1,2,3\n")
    with pytest.raises(PersonaDiffError, match="run_index"):
        score_ratings_csv(p)


def test_study_data_loads(reference_data):
    folder = reference_data / "persona-moral-collapse"
    if not folder.is_dir():
        pytest.skip("persona-moral-collapse data absent")
    scales, items, personas, d = load_mfq(str(folder))
    assert len(items) == 30 and len(personas) >= 100 and set(scales) == {"relevance", "agreement"}


def test_offline_fallback_loads(monkeypatch, tmp_path):
    monkeypatch.setenv("PERSONA_DIFF_REFERENCE_DATA", str(tmp_path / "absent"))
    _, items, personas, d = load_mfq(None)
    assert d.name == "mfq" and len(items) >= 4 and len(personas) >= 4
