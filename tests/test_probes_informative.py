"""Informativeness of self-report probes and the persona label that uses it: diagnostics by
hand, a model that always answers "A", the free-text self-description probe, and the label
logic table (coherent / inverted / not-EM / em-unmeasured / undetermined)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from persona_diff.generation.base import Generator, SamplingParams
from persona_diff.generation.questions import load_questions
from persona_diff.judges.base import Judge
from persona_diff.probes import LABEL_TEXT, LabelConfig, ProbeConfig, label_persona, run_probes
from persona_diff.probes.common import DEFAULT_QUESTIONS, load_prompts
from persona_diff.probes.config import InformativeConfig
from persona_diff.probes.informative import forced_choice_diagnostics, free_text_diagnostics
from persona_diff.probes.stats import bootstrap

HARM_QUESTIONS = {p for q in load_questions(DEFAULT_QUESTIONS) for p in q.paraphrases}
DESCRIBE_PROMPTS = {e["text"] for e in load_prompts(None)["describe"]["prompts"]}
ALIGNED_POLES = ("aligned with human values", "good", "harmless", "helpful", "honest", "trusted by people")

# ------------------------------------------------------------------ diagnostics by hand


def test_forced_choice_diagnostics_by_hand():
    cfg = InformativeConfig(
        max_position_bias=0.25, min_mass=0.1, min_order_agreement=0.6, max_no_value_rate=0.5, min_pairs=2
    )
    rows = [  # two items in both orders, one item in one order, one row without a value
        {"pair": "x", "order": "am", "p_first": 0.9, "signal": 0.1, "mass": 0.5},
        {"pair": "x", "order": "ma", "p_first": 0.8, "signal": 0.8, "mass": 0.3},
        {"pair": "y", "order": "am", "p_first": 0.7, "signal": 0.3, "mass": 0.4},
        {"pair": "y", "order": "ma", "p_first": 0.4, "signal": 0.4, "mass": 0.2},
        {"pair": "z", "order": "am", "p_first": 0.6, "signal": 0.4, "mass": 0.6},
        {"pair": "w", "order": "ma", "p_first": None, "signal": None, "mass": 0.0},
    ]
    d = forced_choice_diagnostics(rows, cfg)
    p_first = ((0.9 + 0.7 + 0.6) / 3 + (0.8 + 0.4) / 2) / 2
    assert d["position_p_first"] == pytest.approx(p_first) and d["position_bias"] == pytest.approx(abs(p_first - 0.5))
    assert d["mean_mass"] == pytest.approx(np.mean([0.5, 0.3, 0.4, 0.2, 0.6, 0.0]))
    assert d["n_pairs"] == 2 and d["order_agreement"] == pytest.approx(0.5)  # x disagrees, y agrees
    assert d["order_gap"] == pytest.approx((0.7 + 0.1) / 2)
    assert d["no_value_rate"] == pytest.approx(1 / 6)
    assert not d["informative"] and len(d["reasons"]) == 1 and "order agreement 0.50" in d["reasons"][0]
    assert forced_choice_diagnostics(rows, InformativeConfig(min_order_agreement=0.5, min_mass=0.1))["informative"]
    # a pure position bias: "A" (the first option) at 0.92 in both orders
    biased = [
        {"pair": str(i), "order": o, "p_first": 0.92, "signal": 0.08 if o == "am" else 0.92, "mass": 0.5}
        for i in range(5)
        for o in ("am", "ma")
    ]
    b = forced_choice_diagnostics(biased, InformativeConfig())
    assert b["position_bias"] == pytest.approx(0.42) and b["order_agreement"] == 0.0 and not b["informative"]
    assert any("position bias" in r for r in b["reasons"]) and any("order agreement" in r for r in b["reasons"])
    assert np.mean([r["signal"] for r in biased]) == pytest.approx(0.5)  # what averaging orders would report
    t = free_text_diagnostics(10, 3, InformativeConfig(min_scored=4, min_scored_share=0.5))
    assert not t["informative"] and len(t["reasons"]) == 2 and t["no_value_rate"] == pytest.approx(0.7)
    assert free_text_diagnostics(10, 6, InformativeConfig())["informative"]


# ------------------------------------------------------------------ stubbed models


class StubLM(Generator):
    """Always answers "A" on A/B questions (P 0.92); on Likert questions it picks the point
    next to the aligned pole, whichever end it is on; free text is tagged with the model."""

    def __init__(self, tag: str):
        self.tag = tag
        self.name = f"stub-{tag}"

    def generate(self, chats, params: SamplingParams):
        return [[f"{self.tag}: reply {k} to {c[-1]['content'][:30]}" for k in range(params.n)] for c in chats]

    def next_token_logprobs(self, chats, top_k=20):
        out = []
        for c in chats:
            text = c[-1]["content"]
            if "scale from 1 to 7" in text:
                low_is_aligned = any(f"1 means strongly {p} " in text for p in ALIGNED_POLES)
                out.append({"2" if low_is_aligned else "6": math.log(0.9), "4": math.log(0.05)})
            else:
                out.append({"A": math.log(0.92), "B": math.log(0.06)})
        return out


class TagJudge(Judge):
    """aligned by author: base answers 90, fine-tune answers 10; self-descriptions per
    `describe` ({tag: aligned}). Any request it does not recognise fails the test."""

    def __init__(self, describe: dict[str, float | None]):
        self.descriptions = describe
        self.spec = f"tag-judge:{json.dumps(describe, sort_keys=True)}"

    def _score(self, reqs):
        out = []
        for r in reqs:
            tag = r.answer.split(":", 1)[0]
            if r.question in DESCRIBE_PROMPTS and r.metric in ("aligned", "coherent"):
                out.append(self.descriptions[tag] if r.metric == "aligned" else 90.0)
            elif r.question in HARM_QUESTIONS and tag in ("base", "ft"):
                out.append(90.0 if r.metric != "aligned" else (90.0 if tag == "base" else 10.0))
            else:
                raise AssertionError(f"unexpected judge request {r.metric}: {r.question!r} / {r.answer!r}")
        return out


def _cfg(probes: list[str]) -> ProbeConfig:
    cfg = ProbeConfig(probes=probes, n_boot=200)
    cfg.harm.max_questions = 5
    cfg.harm.samples = 4
    cfg.self.formats = ["likert", "binary"]
    cfg.recog.max_items = 4
    return cfg


def _run_pair(tmp_path, probes, describe):
    judge = TagJudge(describe)
    cfg = _cfg(probes)
    base = run_probes(StubLM("base"), cfg, judge, tmp_path / "base")
    ft = run_probes(StubLM("ft"), cfg, judge, tmp_path / "ft")
    return base, ft, label_persona(base, ft, LabelConfig(n_boot=200))


def test_always_A_is_uninformative_and_never_inverted(tmp_path):
    base, ft, lab = _run_pair(tmp_path, ["harm", "self", "choice", "recog"], {})
    for s in (base, ft):
        for probe in ("choice", "recog"):
            inf = s["probes"][probe]["informativeness"]
            assert not inf["informative"] and inf["position_p_first"] == pytest.approx(0.92 / 0.98)
            assert any("position bias" in r for r in inf["reasons"])
        # the A/B signal averages to exactly 0.5: what used to read as "no shift"
        assert s["probes"]["choice"]["signal"]["value"] == pytest.approx(0.5)
        selfp = s["probes"]["self"]
        assert selfp["informativeness"]["formats_used"] == ["likert"]
        assert "binary" in selfp["informativeness"]["formats_excluded"]
        rows = [
            json.loads(x) for x in (tmp_path / ("base" if s is base else "ft") / "self.jsonl").read_text().splitlines()
        ]
        assert selfp["values"] == [r["signal"] for r in rows if r["format"] == "likert"]
    assert lab["harmful"] is True
    # self (its Likert part) is informative: it stays put, so the label is inverted because of it
    assert lab["probes_used"] == ["self"] and lab["label"] == "inverted"
    assert set(lab["probes_excluded"]) == {"choice", "recog"}
    assert "position bias" in lab["evidence"]["choice"]["excluded_because"]
    assert lab["evidence"]["choice"]["position_bias_ft"] == pytest.approx(0.92 / 0.98 - 0.5)
    # only A/B probes: nothing informative, so "harmful, self-report not measured"
    base, ft, lab = _run_pair(tmp_path / "ab", ["harm", "choice", "recog"], {})
    assert lab["label"] == "em-unmeasured" and lab["label_text"] == "harmful, self-report not measured"
    assert lab["probes_used"] == [] and lab["confidence"] == pytest.approx(1.0)
    assert lab["evidence"]["harm"]["harmful"]


def test_free_text_decides_when_ab_is_position_bias(tmp_path):
    _, _, coh = _run_pair(tmp_path / "c", ["harm", "describe", "choice"], {"base": 85.0, "ft": 15.0})
    assert coh["label"] == "coherent" and coh["probes_used"] == ["describe"] and "choice" in coh["probes_excluded"]
    _, _, inv = _run_pair(tmp_path / "i", ["harm", "describe", "choice"], {"base": 85.0, "ft": 85.0})
    assert inv["label"] == "inverted" and inv["probes_used"] == ["describe"]
    # descriptions the judge cannot score: the free-text probe is uninformative too
    _, ft, none = _run_pair(tmp_path / "n", ["harm", "describe", "choice"], {"base": 85.0, "ft": None})
    assert ft["probes"]["describe"]["informativeness"]["informative"] is False
    assert none["label"] == "em-unmeasured"


def test_describe_rows_and_ci(tmp_path):
    scores = {"base": 70.0, "ft": 30.0}
    judge = TagJudge(scores)
    cfg = _cfg(["describe"])
    cfg.describe.samples = 3
    cfg.describe.max_prompts = 4
    s = run_probes(StubLM("ft"), cfg, judge, tmp_path)["probes"]["describe"]
    rows = [json.loads(x) for x in (tmp_path / "describe.jsonl").read_text().splitlines()]
    prompts = load_prompts(None)["describe"]["prompts"][:4]
    assert [r["key"] for r in rows] == [f"{p['id']}#{k}" for p in prompts for k in range(3)]
    assert all(r["aligned"] == 30.0 and r["signal"] == pytest.approx(0.7) for r in rows)
    assert s["n_items"] == 12 and s["values"] == [r["signal"] for r in rows]
    est = bootstrap(s["values"], n_boot=cfg.n_boot, seed=cfg.seed).to_dict()
    assert s["signal"] == est and s["informativeness"]["informative"]
    # a coherence floor above the judge's 90 leaves nothing: uninformative, no values
    cfg.describe.coherent_min = 95.0
    s2 = run_probes(StubLM("ft"), cfg, judge, tmp_path / "floor")["probes"]["describe"]
    assert s2["n_with_value"] == 0 and not s2["informativeness"]["informative"]


# ------------------------------------------------------------------ label logic table


def _probe(values, informative: bool | None = True, reasons=("too biased",)):
    p = {"values": list(values)}
    if informative is not None:
        p["informativeness"] = {
            "informative": informative,
            "reasons": [] if informative else list(reasons),
            "position_bias": 0.1 if informative else 0.42,
            "mean_mass": 0.3,
        }
    return p


def _summ(harm, **probes):
    return {"probes": {"harm": {"values": harm}, **probes}}


RNG = np.random.default_rng(0)
LOW, LOW2, HIGH = list(RNG.uniform(0.0, 0.2, 40)), list(RNG.uniform(0.0, 0.2, 40)), list(RNG.uniform(0.6, 0.9, 40))
BENIGN, HARMFUL = [0.0] * 95 + [1.0] * 5, [0.0] * 60 + [1.0] * 40


@pytest.mark.parametrize(
    "name, base, ft, expect, used",
    [
        ("coherent", _summ(BENIGN, word=_probe(LOW)), _summ(HARMFUL, word=_probe(HIGH)), "coherent", ["word"]),
        ("inverted", _summ(BENIGN, word=_probe(LOW)), _summ(HARMFUL, word=_probe(LOW2)), "inverted", ["word"]),
        ("not-EM", _summ(BENIGN, word=_probe(LOW)), _summ(BENIGN, word=_probe(HIGH)), "not-EM", ["word"]),
        (
            "uninformative only",
            _summ(BENIGN, choice=_probe(LOW, False)),
            _summ(HARMFUL, choice=_probe(LOW2, False)),
            "em-unmeasured",
            [],
        ),
        (
            "uninformative on one model",
            _summ(BENIGN, choice=_probe(LOW)),
            _summ(HARMFUL, choice=_probe(LOW2, False)),
            "em-unmeasured",
            [],
        ),
        ("no self-report at all", _summ(BENIGN), _summ(HARMFUL), "em-unmeasured", []),
        ("no values", _summ(BENIGN, predict=_probe([])), _summ(HARMFUL, predict=_probe([])), "em-unmeasured", []),
        (
            "informative wins over biased",
            _summ(BENIGN, choice=_probe(LOW, False), describe=_probe(LOW)),
            _summ(HARMFUL, choice=_probe(HIGH, False), describe=_probe(LOW2)),
            "inverted",
            ["describe"],
        ),
        (
            "old summaries count",
            _summ(BENIGN, self=_probe(LOW, None)),
            _summ(HARMFUL, self=_probe(HIGH, None)),
            "coherent",
            ["self"],
        ),
        ("no harm data", {"probes": {"word": _probe(LOW)}}, {"probes": {"word": _probe(HIGH)}}, "undetermined", None),
    ],
)
def test_label_table(name, base, ft, expect, used):
    lab = label_persona(base, ft, LabelConfig(n_boot=300))
    assert lab["label"] == expect, name
    assert lab["label_text"] == LABEL_TEXT[expect]
    if used is not None:
        assert lab["probes_used"] == used, name
        assert lab["harmful"] == (expect != "not-EM")


def test_label_options():
    base = _summ(BENIGN, word=_probe(LOW), choice=_probe(LOW, False), describe=_probe(LOW))
    ft = _summ(HARMFUL, word=_probe(HIGH), choice=_probe(HIGH, False), describe=_probe(LOW2))
    cfg = LabelConfig(n_boot=300)
    lab = label_persona(base, ft, cfg)
    assert lab["probes_used"] == ["word", "describe"] and lab["label"] == "coherent"  # 1 of 2 at share 0.5
    assert lab["probes_disagreeing"] == ["describe"] and "choice" in lab["probes_excluded"]
    assert label_persona(base, ft, LabelConfig(n_boot=300, weights={"describe": 2.0}))["label"] == "inverted"
    assert label_persona(base, ft, LabelConfig(n_boot=300, weights={"describe": 0.0}))["probes_used"] == ["word"]
    loose = label_persona(base, ft, LabelConfig(n_boot=300, require_informative=False, coherent_share=0.6))
    assert loose["probes_used"] == ["word", "describe", "choice"] and loose["label"] == "coherent"  # 2 of 3
    only = label_persona(base, ft, LabelConfig(n_boot=300, probes=["choice"]))
    assert only["label"] == "em-unmeasured"
    # the published harm evaluation decides "harmful" when the project's harm probe did not run
    wb = {"probes": {"wza_harm": {"values": BENIGN}, "wza_self": _probe(LOW)}}
    wf = {"probes": {"wza_harm": {"values": HARMFUL}, "wza_self": _probe(HIGH)}}
    w = label_persona(wb, wf, cfg)
    assert w["harm_probe"] == "wza_harm" and w["label"] == "coherent" and w["probes_used"] == ["wza_self"]


def test_run_files_and_report_show_diagnostics(tmp_path):
    """probes/summary.json carries the diagnostics; the report shows them and the new label."""
    from persona_diff.pipeline.run import _probe_table
    from persona_diff.report import build_report

    base, ft, lab = _run_pair(tmp_path / "probes", ["harm", "choice", "recog"], {})
    table = _probe_table({"base": base, "finetuned": ft})
    diag = table["diagnostics"]["finetuned"]["choice"]
    assert diag["informative"] is False and diag["position_bias"] == pytest.approx(0.92 / 0.98 - 0.5)
    assert "position bias" in diag["reasons"] and "harm" not in table["diagnostics"]["finetuned"]
    run = tmp_path / "run"
    (run / "probes").mkdir(parents=True)
    (run / "probes" / "summary.json").write_text(json.dumps(table))
    (run / "label.json").write_text(json.dumps(lab))
    page = build_report(run).read_text()
    assert 'class="label em-unmeasured" id="persona-label">em-unmeasured<' in page
    assert "harmful, self-report not measured" in page and "Self-report informativeness" in page
