"""The causal 2 × 2's bootstrap CIs: the pure paired bootstrap against a float64 reference, and
`causal_2x2` (with a fake generator/judge and self-report scorer, no model) putting them into
its summary and the markdown."""

from __future__ import annotations

import contextlib
import json
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from persona_diff.internals import causal
from persona_diff.internals.bootstrap import paired_ratio_bootstrap_ci, unit_sums
from persona_diff.internals.causal import causal_2x2
from persona_diff.internals.config import CausalConfig
from persona_diff.internals.data import ForcedItem
from persona_diff.internals.markdown import markdown_section
from persona_diff.steering import hooks, sweep


def reference_ci(num_a, den_a, num_b, den_b, n_boot, seed, level=0.95):
    """Plain-loop float64 reference: the same index draws, per-resample sums in Python floats,
    resamples with an empty cell dropped, numpy's default (linear) percentile by hand."""
    n = len(num_a)
    if n == 0 or sum(den_a) <= 0 or sum(den_b) <= 0:
        return None
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    stats = []
    for row in idx:
        sa = sum(float(den_a[i]) for i in row)
        sb = sum(float(den_b[i]) for i in row)
        if sa > 0 and sb > 0:
            stats.append(sum(float(num_a[i]) for i in row) / sa - sum(float(num_b[i]) for i in row) / sb)
    if not stats:
        return None
    stats.sort()

    def pct(q):
        h = q * (len(stats) - 1)
        lo = int(np.floor(h))
        hi = min(lo + 1, len(stats) - 1)
        return stats[lo] + (h - lo) * (stats[hi] - stats[lo])

    return [pct((1 - level) / 2), pct((1 + level) / 2)]


def sums_by_unit(values, units):
    """Per unit in first-seen order: (sum of the non-None values, their count), as plain lists."""
    order = list(dict.fromkeys(units))
    num = [sum(v for v, u in zip(values, units, strict=True) if u == k and v is not None) for k in order]
    den = [sum(1 for v, u in zip(values, units, strict=True) if u == k and v is not None) for k in order]
    return num, den


@pytest.mark.parametrize("seed", [0, 7])
def test_paired_ratio_bootstrap_matches_float64_reference(seed):
    rng = np.random.default_rng(100 + seed)
    n = 13
    den_a = rng.integers(0, 4, size=n).astype(float)  # some units unscored in a cell
    den_b = rng.integers(0, 4, size=n).astype(float)
    num_a = den_a * rng.uniform(0, 1, size=n)
    num_b = den_b * rng.uniform(0, 1, size=n)
    got = paired_ratio_bootstrap_ci(num_a, den_a, num_b, den_b, n_boot=500, seed=seed)
    want = reference_ci(num_a, den_a, num_b, den_b, 500, seed)
    assert got is not None and want is not None
    assert got == pytest.approx(want, abs=1e-12, rel=0)
    assert got[0] <= got[1]


def test_paired_bootstrap_of_plain_pairs_is_the_mean_difference():
    """With one scored value per unit and cell, the statistic is the mean paired difference."""
    rng = np.random.default_rng(3)
    a, b = rng.uniform(size=20), rng.uniform(size=20)
    ones = np.ones(20)
    got = paired_ratio_bootstrap_ci(a, ones, b, ones, n_boot=400, seed=11, level=0.9)
    idx = np.random.default_rng(11).integers(0, 20, size=(400, 20))
    want = np.quantile((a - b)[idx].mean(axis=1), [0.05, 0.95])
    assert got == pytest.approx(list(want), abs=1e-12, rel=0)


def test_paired_bootstrap_none_cases():
    z = np.zeros(0)
    assert paired_ratio_bootstrap_ci(z, z, z, z) is None  # no units
    assert paired_ratio_bootstrap_ci(np.ones(3), np.zeros(3), np.ones(3), np.ones(3)) is None  # a cell unscored
    assert paired_ratio_bootstrap_ci(np.ones(3), np.ones(3), np.ones(3), np.ones(3), n_boot=0) is None
    with pytest.raises(ValueError, match="shape"):
        paired_ratio_bootstrap_ci(np.ones(3), np.ones(2), np.ones(3), np.ones(3))


def test_unit_sums_groups_in_first_seen_order():
    num, den, order = unit_sums([0.5, None, 0.25, 1.0], ["q1", "q0", "q1", "q0"])
    assert order == ["q1", "q0"] and list(num) == [0.75, 1.0] and list(den) == [2, 1]


def test_self_report_signal_is_the_mean_of_the_scored_items(monkeypatch):
    monkeypatch.setattr(causal, "self_report_per_item", lambda lm, items, forms: [0.2, None, 0.6])
    assert causal.self_report_signal(None, [], []) == pytest.approx(0.4)  # type: ignore[arg-type]
    monkeypatch.setattr(causal, "self_report_per_item", lambda lm, items, forms: [None])
    assert causal.self_report_signal(None, [], []) is None  # type: ignore[arg-type]


# --- causal_2x2 with fakes -------------------------------------------------------------------

D = 8
QUESTIONS = ["Question A?", "Question B?", "Question C?", "Question D?", "Question E?"]
ITEMS = [
    ForcedItem(f"k{i}", f"Prompt {i}?", "harmless:harmful", "Harmful.", "Harmless.", "harmful", "harmless")
    for i in range(6)
]
FORMS = ["{w}"]


class NoJudge:
    """evaluate_steered is faked, so the judge must never be asked."""

    spec = "test:none"

    def score(self, requests):
        raise AssertionError(f"the judge was called with {len(requests)} requests")


def _seed_of(v):
    return 0 if v is None else zlib.crc32(v.detach().cpu().numpy().astype(np.float32).tobytes())


class Fakes:
    """Fake `evaluate_steered` / `steer` / `self_report_per_item`; records every cell's raw data.

    `broken` = a (direction vector, α × scale) that gets coherent 10 (below the floor);
    `unscored` = norms whose cell gets no aligned score at all; `empty` = norms with no answers."""

    def __init__(self, harm_unit, scale, cfg, broken_norm, unscored=(), empty=()):
        self.harm_unit, self.scale, self.cfg = harm_unit, scale, cfg
        self.broken_norm, self.unscored, self.empty = broken_norm, set(unscored), set(empty)
        self.answers, self.items, self.current = [], [], None

    def evaluate_steered(self, lm, judge, questions, dcfg, v, layer, alpha, mode):
        assert questions == QUESTIONS and dcfg.seed == self.cfg.seed and dcfg.samples_per_question == self.cfg.samples
        assert alpha == 1.0 and mode == "add"
        norm = 0.0 if v is None else round(float(v.norm()), 6)
        rng = np.random.default_rng(_seed_of(v))
        is_harm = v is not None and float(v @ self.harm_unit) > 0.999 * float(v.norm())
        rows = []
        if norm not in self.empty:
            for qi, _ in enumerate(questions):
                for j in range(dcfg.samples_per_question):
                    al = None if norm in self.unscored or rng.uniform() < 0.15 else float(rng.uniform(0, 100))
                    co = 10.0 if is_harm and norm == self.broken_norm else 80.0
                    rows.append({"question_id": f"q{qi}", "sample": j, "answer": "x", "aligned": al, "coherent": co})
        self.answers.append(rows)
        stats = sweep.em_stats([r["aligned"] for r in rows], [r["coherent"] for r in rows])
        return stats, rows

    @contextlib.contextmanager
    def steer(self, model, v, layer, alpha, positions, mode):
        assert positions == "all" and mode == "add" and alpha == 1.0
        self.current = v
        try:
            yield
        finally:
            self.current = None

    def self_report_per_item(self, lm, items, forms):
        assert items == ITEMS and forms == FORMS
        rng = np.random.default_rng(_seed_of(self.current) + 1)
        vals = [None if rng.uniform() < 0.2 else float(rng.uniform()) for _ in items]
        self.items.append(vals)
        return vals


def _run(monkeypatch, cfg, scale=10.0, **kw):
    rng = np.random.default_rng(5)
    harm, self_dir = rng.normal(size=D), rng.normal(size=D)
    harm_unit = torch.as_tensor(harm / np.linalg.norm(harm), dtype=torch.float32)
    fk = Fakes(harm_unit, scale, cfg, **kw)
    monkeypatch.setattr(sweep, "evaluate_steered", fk.evaluate_steered)
    monkeypatch.setattr(hooks, "steer", fk.steer)
    monkeypatch.setattr(causal, "self_report_per_item", fk.self_report_per_item)
    res = causal_2x2(
        SimpleNamespace(model=None),
        NoJudge(),
        QUESTIONS,
        ITEMS,
        FORMS,  # type: ignore[arg-type]
        harm,
        self_dir,
        3,
        scale,
        cfg,
    )
    return res, fk


def _expected(fk, i_top, kind):
    """(point estimate, CI) of cell i_top − cell 0 straight from the fakes' raw records."""
    if kind == "harm":
        top, zero = fk.answers[i_top], fk.answers[0]
        units = [r["question_id"] for r in zero]
        assert [r["question_id"] for r in top] == units
        vt = [None if r["aligned"] is None else 1 - r["aligned"] / 100 for r in top]
        vz = [None if r["aligned"] is None else 1 - r["aligned"] / 100 for r in zero]
    else:
        vt, vz = fk.items[i_top], fk.items[0]
        units = list(range(len(vt)))
    nt, dt = sums_by_unit(vt, units)
    nz, dz = sums_by_unit(vz, units)
    point = sum(nt) / sum(dt) - sum(nz) / sum(dz)
    return point, reference_ci(nt, dt, nz, dz, fk.cfg.n_boot, fk.cfg.seed)


def test_causal_2x2_summary_uses_the_paired_bootstrap(monkeypatch):
    cfg = CausalConfig(enabled=True, alphas=[0.1, 0.2], samples=3, seed=4, n_boot=300)
    res, fk = _run(monkeypatch, cfg, broken_norm=round(0.2 * 10.0, 6))
    rows = res["rows"]
    assert [(r["direction"], r["alpha"]) for r in rows] == [("none", 0.0)] + [
        (d, a) for d in ("harm", "self_report", "random") for a in (0.1, 0.2)
    ]
    assert res["n_boot"] == 300 and res["item_keys"] == [it.key for it in ITEMS]
    assert res["answer_keys"] == [[f"q{q}", j] for q in range(len(QUESTIONS)) for j in range(3)]
    for r, raw, its in zip(rows, fk.answers, fk.items, strict=True):
        assert r["harm_per_answer"] == [
            None if x["aligned"] is None else pytest.approx(1 - x["aligned"] / 100) for x in raw
        ]
        assert r["self_report_per_item"] == its
    # the harm direction's largest dose is below the floor: its effect is at α 0.1 (row 1)
    tops = {"harm": (1, 0.1), "self_report": (4, 0.2), "random": (6, 0.2)}
    for d, (i_top, alpha) in tops.items():
        e = res["effect"][d]
        assert e["alpha"] == alpha
        for kind, key in (("harm", "harm"), ("self_report", "self_report")):
            point, ci = _expected(fk, i_top, kind)
            assert e[key] == pytest.approx(point, abs=1e-12)
            assert e[key] == pytest.approx(rows[i_top][key] - rows[0][key], abs=1e-12)
            assert e[f"{key}_ci"] == pytest.approx(ci, abs=1e-12, rel=0)
        assert e["n_answers"] == sum(
            1
            for a, b in zip(fk.answers[i_top], fk.answers[0], strict=True)
            if a["aligned"] is not None and b["aligned"] is not None
        )
        assert e["n_items"] == sum(
            1 for a, b in zip(fk.items[i_top], fk.items[0], strict=True) if a is not None and b is not None
        )
        assert e["n_questions"] == len(QUESTIONS)
    json.dumps(res, allow_nan=False)  # JSON-safe as it stands

    md = _markdown(res)
    e = res["effect"]["harm"]
    assert f"Δharm {e['harm']:+.3f} [{e['harm_ci'][0]:+.3f}, {e['harm_ci'][1]:+.3f}]" in md
    assert (
        f"Δself-report {e['self_report']:+.3f} [{e['self_report_ci'][0]:+.3f}, {e['self_report_ci'][1]:+.3f}]"
    ) in md
    assert f"n = {e['n_answers']} answers (5 questions), {e['n_items']} items" in md


def test_causal_2x2_cells_without_answers_give_none_cis(monkeypatch):
    """A top cell with no aligned score and an unsteered cell with no answers at all: None CIs,
    no crash; the self-report CI is still there where the items were scored."""
    cfg = CausalConfig(enabled=True, alphas=[0.1], samples=2, n_boot=50)
    res, fk = _run(monkeypatch, cfg, broken_norm=-1.0, unscored={1.0})
    for d in ("harm", "self_report", "random"):
        e = res["effect"][d]
        assert e["harm"] is None and e["harm_ci"] is None and e["n_answers"] == 0
        assert e["self_report_ci"] is not None and len(e["self_report_ci"]) == 2
    res, fk = _run(monkeypatch, cfg, broken_norm=-1.0, empty={0.0})
    assert res["rows"][0]["harm"] is None and res["rows"][0]["n_answers"] == 0
    assert res["rows"][0]["harm_per_answer"] == [None] * (len(QUESTIONS) * 2)
    for d in ("harm", "self_report", "random"):
        e = res["effect"][d]
        assert e["harm"] is None and e["harm_ci"] is None and e["n_answers"] == 0
    md = _markdown(res)
    assert "Δharm –" in md
    json.dumps(res, allow_nan=False)


def test_markdown_reads_summaries_without_cis():
    res = {
        "layer": 3,
        "scale": 10.0,
        "n_questions": 2,
        "samples": 1,
        "rows": [],
        "effect": {"harm": {"alpha": 0.1, "harm": 0.05, "self_report": -0.01}, "random": None},
    }
    md = _markdown(res)
    assert "harm: Δharm +0.050, Δself-report -0.010 (α 0.1)" in md
    assert "random: no dose above the coherence floor" in md


def _markdown(causal_result):
    s = {
        "layer": 3,
        "config": {"reference": "base_reads"},
        "cosines": [],
        "directions": {},
        "layers": [],
        "map": {"prompt_sets": ["harm"], "points": []},
        "detector": None,
        "correlations": [],
        "models": [],
        "causal": causal_result,
        "seconds": {"activations": 1.0, "per_model": {}, "reused": [], "analysis": 1.0},
    }
    return markdown_section(s)
