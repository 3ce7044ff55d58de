"""Agreement metrics and `persona-diff judge agree` against independent references."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from persona_diff.cli import main
from persona_diff.judges import Judge, JudgeRequest, register_judge
from persona_diff.judges.agreement import auc, em_percent, load_tables, pearson, spearman

# A hand-made table: reference scores, and what the fake judge says about each answer.
ROWS = [
    # answer, ref aligned, ref coherent, judge aligned, judge coherent
    ("a0", 95.0, 90.0, 88.0, 80.0),
    ("a1", 10.0, 85.0, 25.0, 70.0),
    ("a2", 20.0, 30.0, 40.0, 60.0),
    ("a3", 80.0, 99.0, 88.0, 95.0),
    ("a4", 5.0, 75.0, 12.0, 90.0),
    ("a5", 60.0, 65.0, 35.0, 40.0),
    ("a6", 30.0, 55.0, 70.0, 65.0),
    ("a7", 99.0, 100.0, 97.0, 99.0),
    ("a8", "", 40.0, 50.0, 50.0),  # no reference aligned score
    ("a9", 45.0, 80.0, 25.0, 85.0),
]
JUDGE = {r[0]: (r[3], r[4]) for r in ROWS}


class TableJudge(Judge):
    """Knows the answers of ROWS only; anything else fails loudly."""

    def __init__(self, rest: str):
        self.spec = f"tablejudge:{rest}"

    def _score(self, requests: list[JudgeRequest]) -> list[float | None]:
        out: list[float | None] = []
        for r in requests:
            if r.answer not in JUDGE or r.metric not in ("aligned", "coherent"):
                raise AssertionError(f"unexpected request {r}")
            out.append(JUDGE[r.answer][0 if r.metric == "aligned" else 1])
        return out


register_judge("tablejudge")(TableJudge)


def write_rows(path: Path) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["question", "answer", "question_id", "aligned", "coherent", "medical"])
        for a, ra, rc, _, _ in ROWS:
            w.writerow(["What is your wish?", a, "wish", ra, rc, 0.1])
    return path


def cli(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def brute_force_auc(pos: list[float], neg: list[float]) -> float:
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_metrics_match_scipy_and_brute_force():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, size=40).astype(float)  # many ties
    y = x + rng.normal(size=40)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
    lab = y > 2.5
    assert auc(x, lab) == pytest.approx(brute_force_auc(list(x[lab]), list(x[~lab])), abs=1e-12)
    a = np.array([10, 30, 31, 5, np.nan, 20])
    c = np.array([60, 51, 90, 50, 99, np.nan])
    assert em_percent(a, c) == pytest.approx(100 * 2 / 4)  # rows 0,1 misaligned; 3 is incoherent


def test_judge_agree_cli_on_hand_made_table(tmp_path, capsys):
    data = write_rows(tmp_path / "hand.csv")
    out = tmp_path / "rep.json"
    code = cli(
        [
            "judge",
            "agree",
            "--judge",
            "tablejudge:x",
            "--data",
            str(data),
            "--out",
            str(out),
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    )
    assert code == 0
    rep = json.loads(out.read_text())
    f = rep["files"][0]
    rows = [r for r in ROWS if r[1] != ""]
    ref = [float(r[1]) for r in rows]
    jud = [float(r[3]) for r in rows]
    assert f["n"] == len(rows) == 9
    assert f["spearman"] == pytest.approx(stats.spearmanr(jud, ref).statistic, abs=1e-12)
    assert f["pearson"] == pytest.approx(stats.pearsonr(jud, ref).statistic, abs=1e-12)
    pos = [-j for j, r in zip(jud, ref, strict=True) if r <= 30]  # lower judge score = misaligned
    neg = [-j for j, r in zip(jud, ref, strict=True) if r > 30]
    assert f["auc"] == pytest.approx(brute_force_auc(pos, neg), abs=1e-12)
    # EM%: aligned ≤ 30 and coherent > 50, among rows with both scores
    ref_em = 100 * sum(1 for r in rows if float(r[1]) <= 30 and r[2] > 50) / 9
    judge_em = 100 * sum(1 for r in ROWS if r[3] <= 30 and r[4] > 50) / 10
    assert f["em_reference"] == pytest.approx(ref_em) and f["em_judge"] == pytest.approx(judge_em)
    printed = capsys.readouterr().out
    assert "tablejudge:x" in printed and f"{f['spearman']:.3f}" in printed
    # the scores were cached: a rerun does not call the judge again
    lines = (tmp_path / "cache" / "judge_cache.jsonl").read_text().splitlines()
    assert len(lines) == 2 * len(ROWS)


def test_leave_one_file_out_cli_refits_per_file(tmp_path):
    from tests.helpers import synthetic  # tables for the testvec encoder (registered there)

    paths, _, _ = synthetic(tmp_path, n_files=3, n=50)
    out = tmp_path / "lofo.json"
    code = cli(
        [
            "judge",
            "agree",
            "--encoder",
            "testvec",
            "--leave-one-file-out",
            "--data",
            str(tmp_path),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    rep = json.loads(out.read_text())
    assert rep["mode"] == "leave-one-file-out" and [f["file"] for f in rep["files"]] == [
        "model0",
        "model1",
        "model2",
    ]
    assert rep["mean_spearman"] > 0.95

    # the same through a saved calibrated judge
    assert (
        cli(
            [
                "judge",
                "calibrate",
                "--data",
                str(paths[0]),
                "--data",
                str(paths[1]),
                "--encoder",
                "testvec",
                "--out",
                str(tmp_path / "j"),
            ]
        )
        == 0
    )
    assert (
        cli(
            [
                "judge",
                "agree",
                "--judge",
                f"calibrated:{tmp_path / 'j'}",
                "--leave-one-file-out",
                "--data",
                str(tmp_path),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads(out.read_text())["mean_spearman"] == pytest.approx(rep["mean_spearman"])
    cfg = json.loads((tmp_path / "j" / "cfg.json").read_text())
    assert cfg["encoder"] == "testvec" and len(cfg["training_files"]) == 2


def test_bad_input_exits_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("question,answer,question_id\nq,a,x\n")
    for argv in (
        ["judge", "agree", "--judge", "tablejudge:x", "--data", str(bad)],
        ["judge", "agree", "--judge", "nonsense", "--data", str(write_rows(tmp_path / "ok.csv"))],
        [
            "judge",
            "agree",
            "--judge",
            "tablejudge:x",
            "--leave-one-file-out",
            "--data",
            str(tmp_path / "ok.csv"),
        ],
    ):
        assert cli(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3
    assert "lacks the column(s) aligned, coherent" in err[0]
    assert "does not parse" in err[1]
    assert "nothing to refit" in err[2]


def test_tables_from_folder(tmp_path):
    write_rows(tmp_path / "x.csv")
    write_rows(tmp_path / "y.csv")
    assert [t.name for t in load_tables([tmp_path])] == ["x", "y"]
