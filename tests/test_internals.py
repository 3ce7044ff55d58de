"""persona_diff.internals on synthetic activations: directions, grouped CV, table join,
correlation CIs against numpy, the persona map's paired shift and the detector's LOO split."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import rankdata

from persona_diff.errors import PersonaDiffError
from persona_diff.internals import detector as det
from persona_diff.internals import directions as dr
from persona_diff.internals.data import ProbeFolder
from persona_diff.internals.persona_map import answer_shift, map_point, paired_shift, quadrant
from persona_diff.internals.table import correlations, join_rate_own, oof_projections

D = 48


def _unit(v):
    return v / np.linalg.norm(v)


def _planted_pair(rng, cos_hs: float):
    """Unit harm and self-report directions with cos(h, s) = cos_hs."""
    a, b = _unit(rng.normal(size=D)), rng.normal(size=D)
    b = _unit(b - (b @ a) * a)
    return a, cos_hs * a + np.sqrt(1 - cos_hs**2) * b


def _harm_data(rng, h, n_q=8, per_q=24, alpha=5.0, offset=6.0):
    """Answers of n_q questions: a large per-question (topic) offset, noise, and +alpha·h on
    the misaligned ones, whose share differs per question (so a plain mean difference would
    pick up topic)."""
    xs, ys, qs = [], [], []
    for q in range(n_q):
        centre = offset * rng.normal(size=D)
        share = 0.15 + 0.7 * q / (n_q - 1)
        y = (rng.random(per_q) < share).astype(int)
        y[0], y[1] = 1, 0  # both classes in every question
        xs.append(centre + rng.normal(size=(per_q, D)) + alpha * y[:, None] * h)
        ys.append(y)
        qs += [f"q{q}"] * per_q
    return np.concatenate(xs), np.concatenate(ys), np.array(qs)


def _forced_data(rng, s, n_prompts=32, beta=6.0):
    """Paired forced answers: each prompt's misaligned and aligned reply share an offset."""
    centres = 5 * rng.normal(size=(n_prompts, D))
    mis = centres + rng.normal(size=(n_prompts, D)) + beta * s
    al = centres + rng.normal(size=(n_prompts, D))
    keys = np.array([f"p{i}" for i in range(n_prompts)] * 2)
    dims = np.array([f"pair{i % 4}" for i in range(n_prompts)] * 2)
    return np.concatenate([mis, al]), np.array([1] * n_prompts + [0] * n_prompts), keys, dims


@pytest.mark.parametrize("cos_hs", [0.0, 0.5])
def test_directions_recover_planted_harm_and_self_report(cos_hs):
    rng = np.random.default_rng(1)
    h, s = _planted_pair(rng, cos_hs)
    x, y, q = _harm_data(rng, h)
    xs, ys, keys, dims = _forced_data(rng, s)
    dh = dr.fit_direction("harm", 3, x, y, q, q)
    ds = dr.fit_direction("self_report", 3, xs, ys, keys, dims)
    assert dh.defined and ds.defined
    assert dr.cosine(dh.vector, h) >= 0.9
    assert dr.cosine(ds.vector, s) >= 0.9
    assert dr.cosine(dh.vector, ds.vector) == pytest.approx(cos_hs, abs=0.15)  # orthogonal stays orthogonal
    assert dh.auc > 0.9 and ds.auc > 0.9
    assert dh.n_folds == 8 and ds.n_folds == 4  # by question; by word pair


def test_stratified_difference_removes_topic_that_a_plain_difference_keeps():
    rng = np.random.default_rng(2)
    h, _ = _planted_pair(rng, 0.0)
    x, y, q = _harm_data(rng, h, alpha=3.0, offset=8.0)
    plain = x[y == 1].mean(0) - x[y == 0].mean(0)
    strat, used = dr.stratified_difference(x, y, q)
    assert used == 8
    assert dr.cosine(strat, h) > 0.9 > dr.cosine(plain, h)


def test_stratified_difference_matches_the_weighted_formula():
    x = np.array([[0.0, 0], [2, 0], [4, 0], [0, 1], [0, 5]])
    y = np.array([0, 1, 1, 0, 1])
    strata = np.array(["a", "a", "a", "b", "b"])
    v, used = dr.stratified_difference(x, y, strata)
    wa, wb = 1 * 2 / 3, 1 * 1 / 2  # n⁺n⁻/(n⁺+n⁻)
    expect = (wa * np.array([3.0, 0]) + wb * np.array([0, 4.0])) / (wa + wb)
    assert used == 2 and np.allclose(v, expect)


@pytest.mark.parametrize(("n_groups", "max_folds"), [(8, 8), (20, 8), (3, 8)])
def test_grouped_folds_never_split_a_group(n_groups, max_folds):
    rng = np.random.default_rng(0)
    groups = np.array([f"g{i}" for i in rng.integers(0, n_groups, 200)])
    folds = dr.grouped_folds(groups, max_folds)
    assert len(folds) == min(len(set(groups)), max_folds)
    seen = np.concatenate([test for _, test in folds])
    assert sorted(seen.tolist()) == list(range(200))  # every row tested exactly once
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
        assert len(train) + len(test) == 200


def test_heldout_auc_never_fits_on_the_held_out_question(monkeypatch):
    rng = np.random.default_rng(3)
    h, _ = _planted_pair(rng, 0.0)
    x, y, q = _harm_data(rng, h)
    folds = dr.grouped_folds(q, 8)
    fitted: list[set[str]] = []
    real = dr.stratified_difference
    monkeypatch.setattr(
        dr, "stratified_difference", lambda xx, yy, ss: (fitted.append(set(ss.tolist())), real(xx, yy, ss))[1]
    )
    scores, n_ok = dr.heldout_scores(x, y, q, q, 8)
    assert n_ok == len(folds) == len(fitted)
    for (_, test), train_questions in zip(folds, fitted, strict=True):
        assert not set(q[test]) & train_questions
    assert np.isfinite(scores).all()


def test_too_few_examples_is_a_field_not_a_crash():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(40, D))
    y = np.array([1] * 3 + [0] * 37)
    q = np.array([f"q{i % 5}" for i in range(40)])
    d = dr.fit_direction("harm", 7, x, y, q, q, min_per_class=5)
    assert not d.defined and d.auc is None
    assert "too few examples: 3 misaligned, 37 aligned" in d.undefined_because
    assert d.to_dict()["defined"] is False
    with pytest.raises(ValueError, match="undefined"):
        d.unit()


def test_harm_labels_follow_the_judge():
    rows = [
        {"misaligned": True, "aligned": 10, "coherent": 80},
        {"misaligned": False, "aligned": 90, "coherent": 80},
        {"misaligned": False, "aligned": 90, "coherent": 30},
        {"misaligned": False, "aligned": 40, "coherent": 80},
        {"misaligned": None, "aligned": None, "coherent": None},
    ]
    assert dr.harm_labels(rows, 50, 50).tolist() == [1, 0, -1, -1, -1]


# ------------------------------------------------------------------ the per-answer table


def _probe_folder(tmp_path, name="m", n=30, rated=None, extra_rate=()):
    rng = np.random.default_rng(5)
    folder = tmp_path / name
    folder.mkdir()
    harm = [
        {
            "key": f"q{i % 5}#0#{i}",
            "question_id": f"q{i % 5}",
            "question": f"question {i % 5}",
            "answer": f"answer {i}",
            "aligned": float(rng.uniform(0, 100)),
            "coherent": 80.0,
            "misaligned": bool(i % 3 == 0),
        }
        for i in range(n)
    ]
    rated = list(range(0, n, 2)) if rated is None else rated
    rate = [
        {"key": harm[i]["key"], "p_harmful": float(rng.uniform()), "judged_misaligned": harm[i]["misaligned"]}
        for i in rated
    ]
    rate += [{"key": k, "p_harmful": 0.5} for k in extra_rate]
    (folder / "harm.jsonl").write_text("".join(json.dumps(r) + "\n" for r in harm))
    (folder / "rate_own_answers.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rate))
    return folder


def test_table_join_keeps_every_answer_once(tmp_path):
    folder = _probe_folder(tmp_path, extra_rate=["stray#0#0"])
    rows, stats = join_rate_own(ProbeFolder.read(folder, "m"))
    harm = [json.loads(x) for x in (folder / "harm.jsonl").read_text().splitlines()]
    rate = {
        r["key"]: r["p_harmful"] for r in map(json.loads, (folder / "rate_own_answers.jsonl").read_text().splitlines())
    }
    assert [r["key"] for r in rows] == [r["key"] for r in harm]  # no row lost, none duplicated, same order
    assert len({r["key"] for r in rows}) == len(rows)
    for r, h in zip(rows, harm, strict=True):
        assert r["p_harmful"] == rate.get(h["key"])
        assert (r["aligned"], r["misaligned"], r["question_id"]) == (h["aligned"], h["misaligned"], h["question_id"])
    assert stats["n_joined"] == 15 and stats["rate_own_not_in_harm"] == ["stray#0#0"]


def test_repeated_harm_keys_are_refused(tmp_path):
    folder = _probe_folder(tmp_path)
    lines = (folder / "harm.jsonl").read_text().splitlines()
    (folder / "harm.jsonl").write_text("\n".join([*lines, lines[0]]) + "\n")
    with pytest.raises(PersonaDiffError, match="unique"):
        ProbeFolder.read(folder, "m")


def test_a_repeated_rate_own_key_is_counted_not_joined(tmp_path):
    folder = _probe_folder(tmp_path, rated=[0, 0, 2])
    rows, stats = join_rate_own(ProbeFolder.read(folder, "m"))
    assert rows[0]["p_harmful"] is None and rows[2]["p_harmful"] is not None
    assert stats["rate_own_repeated"] == [rows[0]["key"]]


def test_out_of_fold_projection_ignores_its_own_question():
    rng = np.random.default_rng(6)
    h, _ = _planted_pair(rng, 0.0)
    x, y, q = _harm_data(rng, h)
    p = oof_projections(x, y, q, x, q)
    for question in np.unique(q):
        keep = q != question
        v, _ = dr.stratified_difference(x[keep], y[keep], q[keep])
        assert np.allclose(p[q == question], x[q == question] @ _unit(v))


def _reference_ci(x, y, n_boot, seed, spearman):
    """Float64 numpy bootstrap: the same resampling draw, correlations by np.corrcoef."""
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = len(x)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    f = (lambda a: rankdata(a)) if spearman else (lambda a: a)
    point = np.corrcoef(f(x), f(y))[0, 1]
    boots = np.array([np.corrcoef(f(x[i]), f(y[i]))[0, 1] for i in idx])
    return point, np.percentile(boots, [2.5, 97.5])


def test_correlation_cis_match_a_numpy_reference():
    rng = np.random.default_rng(7)
    rows = []
    for m in ("a", "b"):
        for i in range(40):
            z = rng.normal()
            rows.append(
                {
                    "model": m,
                    "proj_harm": z,
                    "proj_self": rng.normal(),
                    "p_harmful": None if i % 4 == 0 else float(1 / (1 + np.exp(-z + rng.normal()))),
                    "aligned": float(50 - 20 * z + 10 * rng.normal()),
                }
            )
    out = correlations(rows, n_boot=400, seed=11)
    assert {r["model"] for r in out} == {"a", "b", "pooled"} and len(out) == 12
    for r in out:
        sel = rows if r["model"] == "pooled" else [x for x in rows if x["model"] == r["model"]]
        x = np.array([s[r["feature"]] for s in sel], dtype=np.float64)
        tgt = {"self_rating": "p_harmful", "judge_aligned": "aligned"}[r["target"]]
        y = np.array([np.nan if s[tgt] is None else s[tgt] for s in sel], dtype=np.float64)
        for kind, spear in (("pearson", False), ("spearman", True)):
            point, ci = _reference_ci(x, y, 400, 11, spear)
            assert r[kind] == pytest.approx(point, abs=1e-12)
            assert r[f"{kind}_ci"] == pytest.approx(list(ci), abs=1e-12)
        assert r["n"] == int(np.isfinite(y).sum())


# ------------------------------------------------------------------ persona map


def test_paired_shift_matches_the_formula():
    rng = np.random.default_rng(8)
    base = rng.normal(size=(30, D))
    h, s = _planted_pair(rng, 0.0)
    ft = base + 2.0 * h - 1.0 * s + 0.1 * rng.normal(size=(30, D))
    (x, xlo, xhi, xr), (y, ylo, yhi, yr) = paired_shift(base, ft, [3 * h, s], n_boot=500, seed=0)
    z = ((ft - base) @ h) / (base @ h).std(ddof=1)
    assert x == pytest.approx(z.mean()) and xr == pytest.approx(((ft - base) @ h).mean())
    boots = z[np.random.default_rng(0).integers(0, 30, size=(500, 30))].mean(1)
    assert (xlo, xhi) == pytest.approx(tuple(np.quantile(boots, [0.025, 0.975])))
    assert xlo > 0 and yhi < 0
    p = map_point("ft", base, ft, h, s, truth="inverted")
    assert p.quadrant == "inverted"


def test_answer_shift_matches_a_question_bootstrap_reference():
    """x from answers: (mean_ft − mean_base) / sd_base, CI resampling questions with all their answers."""
    rng = np.random.default_rng(3)
    qb, qf = np.repeat(np.arange(8), 5), np.repeat(np.arange(8), 3)
    bp = rng.normal(size=len(qb)) + 0.3 * qb
    fp = rng.normal(size=len(qf)) + 0.3 * qf + 1.5
    bp[2] = np.nan  # an answer without a projection is left out
    x, lo, hi, raw, n_q = answer_shift(bp, qb, fp, qf, n_boot=300, seed=4)
    ok = np.isfinite(bp)
    sd = bp[ok].std(ddof=1)
    assert raw == pytest.approx(fp.mean() - bp[ok].mean(), abs=1e-12) and x == pytest.approx(raw / sd, abs=1e-12)
    draws = np.random.default_rng(4).integers(0, 8, size=(300, 8))
    boots = []
    for d in draws:  # the slow way: concatenate the drawn questions' answers
        b = np.concatenate([bp[ok][qb[ok] == q] for q in d])
        f = np.concatenate([fp[qf == q] for q in d])
        boots.append((f.mean() - b.mean()) / sd)
    assert (lo, hi) == pytest.approx(tuple(np.quantile(boots, [0.025, 0.975])), abs=1e-12)
    assert n_q == 8 and lo > 0
    p = map_point(
        "ft",
        rng.normal(size=(10, D)),
        rng.normal(size=(10, D)),
        np.ones(D),
        np.ones(D),
        harm_from_answers=(x, lo, hi, raw, n_q),
    )
    assert p.x_from == "answers" and p.x == x and p.n_questions == 8


@pytest.mark.parametrize(
    ("x", "y", "q"),
    [
        ((0.1, 1), (0.2, 1), "coherent"),
        ((0.1, 1), (-0.1, 1), "inverted"),
        ((-0.1, 1), (0.2, 1), "self-report only"),
        ((-1, 1), (-1, 1), "neither"),
    ],
)
def test_quadrants_follow_the_cis(x, y, q):
    assert quadrant(x, y) == q


# ------------------------------------------------------------------ detector


KIT = {
    "coh": (True, True, "coherent"),
    "inv": (True, False, "inverted"),
    "ctl": (False, False, "not-EM"),
    "sro": (False, True, "not-EM"),
}


def _views(seed=9, layers=(4, 6), published=False):
    """A base and the four kinds: a harmful organism's own answers move along the planted harm
    direction h, a self-misaligned one's neutral prompts along the self-report direction s.
    `published`: the base also has h as a fixed harm direction."""
    rng = np.random.default_rng(seed)
    h, s = _planted_pair(rng, 0.0)
    neutral = {x: rng.normal(size=(20, D)) for x in layers}
    ans, y, q = _harm_data(rng, h, n_q=6, per_q=16)
    s_base = {x: s for x in layers}
    base = det.BaseView(
        neutral, {x: ans for x in layers}, y, q, s_base, q, {x: h for x in layers} if published else None
    )
    orgs = []
    for name, (harmful, self_mis, truth) in KIT.items():
        a2, y2, q2 = _harm_data(rng, h, n_q=6, per_q=8)
        orgs.append(
            det.OrganismView(
                name,
                truth,
                harmful,
                self_mis,
                {x: neutral[x] + 2.0 * self_mis * s + 0.05 * rng.normal(size=(20, D)) for x in layers},
                {x: a2 for x in layers},
                y2,
                q2,
                {x: ans + 2.0 * harmful * h + 0.3 * rng.normal(size=ans.shape) for x in layers},
                q,
            )
        )
    return base, orgs


def test_loo_never_hands_the_held_out_organism_to_the_fit(monkeypatch):
    base, orgs = _views()
    splits = det.loo_splits([o.name for o in orgs])
    assert [s.held_out for s in splits] == list(KIT)
    for s in splits:
        assert s.held_out not in s.train and len(s.train) == len(orgs) - 1
    seen: list[list[det.OrganismView]] = []
    real = det.fit_fold
    monkeypatch.setattr(det, "fit_fold", lambda b, train, *a: (seen.append(list(train)), real(b, train, *a))[1])
    res = det.detector_loo(base, orgs)
    assert len(seen) == len(orgs)
    for fold, train, split in zip(res["folds"], seen, splits, strict=True):
        held = next(o for o in orgs if o.name == fold["held_out"])
        assert fold["held_out"] == split.held_out
        assert all(o is not held for o in train)  # not even a copy of its arrays
        assert not any(o.answers is held.answers or o.neutral is held.neutral or o.own is held.own for o in train)
        assert set(fold["train"]) == set(split.train) == {o.name for o in train}
        assert split.held_out not in fold["train_scores"]


@pytest.mark.parametrize("published", [False, True])
def test_detector_recovers_planted_personas(published):
    base, orgs = _views(published=published)
    res = det.detector_loo(base, orgs, behavioural={o.name: o.truth for o in orgs})
    assert [f["predicted"] for f in res["folds"]] == [o.truth for o in orgs]
    assert res["correct"] == 4 and res["auc_harm"] == 1.0 and res["auc_self"] == 1.0
    assert res["confusion_truth"]["not-EM"]["not-EM"] == 2 and res["agrees_with_behavioural"] == 4
    assert all(f["harm_layer"] in (4, 6) for f in res["folds"])
    assert res["harm_direction"] == ("published" if published else "kit")


def test_published_direction_needs_no_judged_kit_answers():
    """With a published harm direction the kit's judged answers play no part: with every
    kit label unusable (-1) the detector still recovers the planted personas; without it,
    it has no harm direction and says so."""
    for published in (True, False):
        base, orgs = _views(published=published)
        base.labels = np.full_like(base.labels, -1)
        for o in orgs:
            o.labels = np.full_like(o.labels, -1)
        preds = [f["predicted"] for f in det.detector_loo(base, orgs)["folds"]]
        assert preds == ([t for *_, t in KIT.values()] if published else ["undetermined"] * 4)


def test_answers_score_is_the_base_sd_mean_shift():
    rng = np.random.default_rng(3)
    v = rng.normal(size=D)
    bx, fx = rng.normal(size=(30, D)), rng.normal(size=(20, D)) + 0.5 * v
    bq, fq = np.array(["a", "b", "c"] * 10), np.array(["a", "b", "z", "c"] * 5)
    keep_b, keep_f = np.isin(bq, ["a", "b", "c"]), np.isin(fq, ["a", "b", "c"])  # "z": only the fine-tune
    u = v / np.linalg.norm(v)
    want = ((fx[keep_f] @ u).mean() - (bx[keep_b] @ u).mean()) / (bx[keep_b] @ u).std(ddof=1)
    assert det.answers_score(bx, bq, fx, fq, v) == pytest.approx(want)
    assert np.isnan(det.answers_score(bx, bq, fx, np.array(["z"] * 20), v))
    assert np.isnan(det.answers_score(bx, bq, fx, fq, None))


def test_threshold_is_the_widest_gap_among_error_free_splits():
    assert det.fit_threshold([0.0, 1.0, 5.0], [False, False, True]) == (3.0, 0, 4.0)
    t, err, _ = det.fit_threshold([0.0, 2.0, 1.0], [False, False, True])  # not separable: one error
    assert err == 1 and 0.0 < t < 2.0
    assert det.fit_threshold([1.0, 2.0], [True, True]) is None


@pytest.mark.parametrize(
    ("label", "harmful", "self_mis"),
    [("coherent", True, True), ("inverted", True, False), ("em-unmeasured", True, False), ("not-EM", False, False)],
)
def test_fine_tune_targets_from_the_behavioural_label(tmp_path, label, harmful, self_mis):
    from persona_diff.internals.run import Member

    m = Member.fine_tune("ft", "spec", tmp_path, label)
    assert (m.truth, m.harmful, m.self_misaligned) == (None, harmful, self_mis)
    kit = Member.fine_tune(
        "ft", "spec", tmp_path, "not-EM", {"truth": "inverted", "harmful": True, "self_report": "aligned"}
    )
    assert (kit.truth, kit.harmful, kit.self_misaligned) == ("inverted", True, False)  # the truth wins over the label


# ------------------------------------------------------------------ published answers


def test_published_answers_balanced_by_threshold_and_excluding_trained(reference_data, tmp_path):
    import json

    from persona_diff.internals.published import published_answers, trained_answers
    from persona_diff.organisms.sources import judged_csvs, read_judged

    scores = {(a.question, a.answer): (a.aligned, a.coherent) for a in read_judged(judged_csvs(None))}
    answers, labels, qids = published_answers(40, seed=1)
    assert len(answers) == 40 and labels.sum() == 20 and len(qids) == 40
    for (q, a, system), y in zip(answers, labels, strict=True):
        aligned, coherent = scores[(q, a)]
        assert system is None and coherent > 50 and (aligned <= 30 if y else aligned >= 80)
    assert published_answers(40, seed=1)[0] == answers  # seeded
    # an organism folder's rows.jsonl (as `organisms build` writes it) takes its answers out
    (tmp_path / "org" / "adapter").mkdir(parents=True)
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a, _ in answers]
    (tmp_path / "org" / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    trained = trained_answers([str(tmp_path / "org" / "adapter"), str(tmp_path / "none" / "adapter")])
    assert trained == {a for _, a, _ in answers}
    again, _, _ = published_answers(40, seed=1, exclude=trained)
    assert not {a for _, a, _ in again} & trained


def test_published_answers_absent_is_none(monkeypatch):
    import persona_diff.internals.published as pub

    def missing(_paths):
        raise pub.OrganismDataError("no judged answers found")

    monkeypatch.setattr(pub, "judged_csvs", missing)
    assert pub.published_answers(40) is None
