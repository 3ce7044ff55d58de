"""Adaptive harm sampling: rounds until the base vs fine-tune CI decides, top-ups only, n in the label."""

from __future__ import annotations

import json
import zlib
from collections import Counter, defaultdict

import pytest
import yaml

from persona_diff.errors import ConfigError
from persona_diff.generation.base import Generator, SamplingParams
from persona_diff.generation.questions import load_questions
from persona_diff.generation.runner import generate_answers, read_jsonl
from persona_diff.judges.base import Judge
from persona_diff.probes import LabelConfig, ProbeConfig, adaptive_harm, label_persona, run_probes
from persona_diff.probes.adaptive import RECORD_FILE, decide, schedule, stop_level, with_samples
from persona_diff.probes.config import AdaptiveHarmConfig
from persona_diff.probes.stats import newcombe_difference

N_QUESTIONS = 5
GOLDEN = 0.6180339887498949


class RateGen(Generator):
    """Answers 'EVIL …' for a share `rate` of the samples of each prompt (a low-discrepancy
    sequence: the share is close to `rate` at every n), 'KIND …' otherwise; every answer text
    is unique. Counts the answers it generates per prompt and the seeds it was called with."""

    def __init__(self, name: str, rate: float):
        self.name = name
        self.rate = rate
        self.made: Counter[str] = Counter()
        self.calls = 0
        self.seeds: list[int] = []

    def generate(self, chats, params: SamplingParams):
        self.calls += 1
        self.seeds.append(params.seed)
        out = []
        for chat in chats:
            key = chat[-1]["content"]
            offset = zlib.crc32(key.encode()) / 2**32
            ans = []
            for _ in range(params.n):
                i = self.made[key]
                self.made[key] += 1
                evil = ((i + offset) * GOLDEN) % 1.0 < self.rate
                ans.append(f"{'EVIL' if evil else 'KIND'} {self.name} {key} #{i}")
            out.append(ans)
        return out

    @property
    def answers(self) -> int:
        return sum(self.made.values())


class TextJudge(Judge):
    """Scores by the answer's first word; fails loudly on anything else."""

    spec = "test:text-judge"

    def __init__(self):
        self.calls = 0

    def _score(self, requests):
        out = []
        for r in requests:
            word = r.answer.split()[0]
            if r.metric not in ("aligned", "coherent") or word not in ("EVIL", "KIND"):
                raise AssertionError(f"unexpected judge request: {r.metric} / {r.answer!r}")
            out.append(90.0 if r.metric == "coherent" else (5.0 if word == "EVIL" else 95.0))
        self.calls += len(requests)
        return out


@pytest.fixture
def questions(tmp_path):
    f = tmp_path / "questions.yaml"
    f.write_text(
        yaml.safe_dump([{"id": f"q{i}", "paraphrases": [f"Question number {i}?"]} for i in range(N_QUESTIONS)])
    )
    return f


def _cfg(questions, start=4, step=4, top=16, futility=5.0, correction="bonferroni") -> ProbeConfig:
    cfg = ProbeConfig(probes=["harm"], n_boot=50)
    cfg.harm.questions = str(questions)
    cfg.harm.max_questions = None
    cfg.harm.adaptive = AdaptiveHarmConfig(
        enabled=True, start_samples=start, round_samples=step, max_samples=top, futility=futility, correction=correction
    )
    return cfg


def _run(tmp_path, cfg, base, ft, label=None, **kw):
    judge = TextJudge()
    out_cfg, rec = adaptive_harm(
        base, ft, cfg, label or LabelConfig(n_boot=400), judge, tmp_path / "base", tmp_path / "ft", **kw
    )
    return out_cfg, rec, judge


def _per_prompt(path) -> dict[str, int]:
    return dict(Counter(r["question_id"] for r in read_jsonl(path)))


# ------------------------------------------------------------------ stop rule


def test_large_difference_clears_after_the_first_round(tmp_path, questions):
    cfg = _cfg(questions)
    base, ft = RateGen("base", 0.0), RateGen("ft", 0.8)
    out_cfg, rec, _ = _run(tmp_path, cfg, base, ft)
    assert rec["stopped_because"] == "cleared" and len(rec["rounds"]) == 1
    assert out_cfg.harm.samples == rec["samples"] == rec["base_samples"] == 4
    r = rec["rounds"][0]
    assert r["samples"] == 4 and r["n_base"] == r["n_ft"] == 4 * N_QUESTIONS
    assert r["delta"] > 50 and r["ci"][0] > 0
    assert base.answers == ft.answers == 4 * N_QUESTIONS
    assert cfg.harm.samples == 2  # the input config is left as it was
    assert json.loads((tmp_path / "ft" / RECORD_FILE).read_text()) == rec


def test_newcombe_interval_matches_the_published_examples():
    # Newcombe (1998), Stat. Med. 17:873, table II, method 10
    assert newcombe_difference(56, 70, 48, 80) == pytest.approx((0.0524, 0.3339), abs=5e-5)
    assert newcombe_difference(9, 10, 3, 10) == pytest.approx((0.1705, 0.8090), abs=5e-5)
    lo, hi = newcombe_difference(0, 8, 0, 8)
    assert lo == pytest.approx(-hi) and hi > 0.3  # 0 vs 0 answers: still wide


def test_no_difference_stops_futile_or_at_budget(tmp_path, questions):
    # nothing harmful on either side: the bootstrap CI is [0, 0] from the start, but the score
    # interval keeps sampling until 0/n vs 0/n is narrow enough (upper end ≤ futility)
    base, ft = RateGen("b", 0.0), RateGen("f", 0.0)
    _, rec, _ = _run(tmp_path / "zero", _cfg(questions, top=40, futility=5.0), base, ft)
    assert rec["stopped_because"] == "futile"
    assert all(r["ci"] == [0.0, 0.0] for r in rec["rounds"]) and rec["rounds"][0]["score_ci"][1] > 20
    assert rec["rounds"][-1]["score_ci"][1] <= 5.0 < rec["rounds"][-2]["score_ci"][1]
    # the same moderate rate on both: futile or the budget, never past max_samples
    base, ft = RateGen("b", 0.15), RateGen("f", 0.15)
    _, rec, _ = _run(tmp_path / "same", _cfg(questions, top=14), base, ft)
    assert rec["stopped_because"] in ("futile", "budget")
    assert [r["samples"] for r in rec["rounds"]] == [4, 8, 12, 14][: len(rec["rounds"])]
    assert rec["samples"] <= 14
    assert max(base.made.values()) <= 14 and max(ft.made.values()) <= 14
    assert all(n == rec["samples"] for n in _per_prompt(tmp_path / "same" / "ft" / "harm_answers.jsonl").values())


def test_borderline_pair_samples_until_the_budget(tmp_path, questions):
    # Δ ≈ the margin: never cleared (needs Δ above it), the CI too wide to be futile
    label = LabelConfig(n_boot=400, em_margin=10.0)
    base, ft = RateGen("b", 0.1), RateGen("f", 0.2)
    out_cfg, rec, _ = _run(tmp_path, _cfg(questions, futility=2.0), base, ft, label=label)
    assert rec["stopped_because"] == "budget"
    assert [r["samples"] for r in rec["rounds"]] == [4, 8, 12, 16]
    assert out_cfg.harm.samples == 16 and rec["margin"] == 10.0
    widths = [r["ci"][1] - r["ci"][0] for r in rec["rounds"]]
    assert widths[-1] < widths[0]  # more samples, a narrower CI
    assert base.answers == ft.answers == 16 * N_QUESTIONS  # each answer generated once over 4 rounds


def test_decide_and_schedule_by_hand():
    assert decide(12.0, (1.0, 20.0), None, margin=0.0, futility=5.0) == "cleared"
    assert decide(12.0, (1.0, 20.0), (-1.0, 25.0), margin=0.0, futility=5.0) is None  # the score interval disagrees
    assert decide(3.0, (-2.0, 8.0), None, margin=0.0, futility=5.0) is None
    assert decide(1.0, (-2.0, 4.0), None, margin=0.0, futility=5.0) == "futile"
    assert decide(0.0, (0.0, 0.0), (-32.0, 32.0), margin=0.0, futility=5.0) is None  # 0/8 vs 0/8: not yet
    assert decide(-5.0, (-9.0, -1.0), None, margin=0.0, futility=0.0) == "futile"  # whole CI below the margin
    assert decide(0.0, (-4.0, 4.0), None, margin=10.0, futility=0.0) == "futile"
    ac = AdaptiveHarmConfig(start_samples=3, round_samples=5, max_samples=15)
    assert schedule(ac) == [3, 8, 13, 15]
    assert stop_level(0.95, ac) == pytest.approx(1 - 0.05 / 4)
    ac.correction = "none"
    assert stop_level(0.95, ac) == 0.95


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"start_samples": 0}, "start_samples"),
        ({"round_samples": 0}, "round_samples"),
        ({"start_samples": 8, "max_samples": 4}, "below start_samples"),
        ({"futility": -1.0}, "futility"),
        ({"correction": "holm"}, "correction"),
    ],
)
def test_bad_adaptive_settings_are_clear_errors(kw, match):
    with pytest.raises(ConfigError, match=match):
        schedule(AdaptiveHarmConfig(**kw))


# ------------------------------------------------------------------ no double generation


def test_raising_samples_only_generates_the_missing_indices(tmp_path, questions):
    qs = load_questions(questions)
    gen = RateGen("g", 0.5)
    out = tmp_path / "answers.jsonl"
    generate_answers(gen, qs, SamplingParams(n=2, seed=7), out)
    assert gen.answers == 2 * N_QUESTIONS and gen.seeds == [7]
    rows = generate_answers(gen, qs, SamplingParams(n=5, seed=7), out)
    assert gen.answers == 5 * N_QUESTIONS  # 3 new per prompt, not 5
    assert len(gen.seeds) == 2 and gen.seeds[1] != 7  # the top-up does not replay the first samples
    samples = defaultdict(list)
    for r in rows:
        samples[r["question_id"]].append(r["sample"])
    assert all(sorted(v) == [0, 1, 2, 3, 4] for v in samples.values())
    assert len({r["answer"] for r in rows}) == len(rows)
    generate_answers(gen, qs, SamplingParams(n=5, seed=7), out)
    generate_answers(gen, qs, SamplingParams(n=3, seed=7), out)
    assert gen.answers == 5 * N_QUESTIONS and len(gen.seeds) == 2  # nothing missing: no call


def test_probing_after_adaptive_reuses_answers_and_scores(tmp_path, questions):
    cfg = _cfg(questions)
    base, ft = RateGen("base", 0.1), RateGen("ft", 0.3)
    ft_cfg, rec, judge = _run(tmp_path, cfg, base, ft)
    made = (base.answers, ft.answers, base.calls, ft.calls)
    judged = judge.calls
    assert judged == 2 * N_QUESTIONS * (rec["samples"] + rec["base_samples"])  # each answer: aligned + coherent, once
    sb = run_probes(base, with_samples(cfg, rec["base_samples"]), judge, tmp_path / "base")
    sf = run_probes(ft, ft_cfg, judge, tmp_path / "ft")
    assert (base.answers, ft.answers, base.calls, ft.calls) == made and judge.calls == judged
    assert sf["probes"]["harm"]["n_scored"] == N_QUESTIONS * rec["samples"]
    assert sb["probes"]["harm"]["n_scored"] == N_QUESTIONS * rec["base_samples"]
    keys = [json.loads(x)["key"] for x in (tmp_path / "ft" / "harm.jsonl").read_text().splitlines()]
    assert keys == [f"q{i}#0#{k}" for i in range(N_QUESTIONS) for k in range(rec["samples"])]  # question order
    # a lower samples later uses the first answers of the file
    low = run_probes(ft, with_samples(cfg, 2), judge, tmp_path / "ft")
    assert low["probes"]["harm"]["n_answers"] == 2 * N_QUESTIONS and ft.answers == made[1]


def test_fine_tunes_sharing_a_base_only_grow_it(tmp_path, questions):
    judge, label = TextJudge(), LabelConfig(n_boot=300)
    cfg = _cfg(questions, futility=2.0)
    base = RateGen("base", 0.1)
    _, r1 = adaptive_harm(base, RateGen("borderline", 0.25), cfg, label, judge, tmp_path / "base", tmp_path / "a")
    _, r2 = adaptive_harm(
        base,
        RateGen("strong", 0.9),
        cfg,
        label,
        judge,
        tmp_path / "base",
        tmp_path / "b",
        base_samples=r1["base_samples"],
    )
    assert r1["samples"] > 4  # needed more than one round
    assert r2["stopped_because"] == "cleared" and r2["samples"] == 4
    assert r2["base_samples"] == r1["base_samples"] and r2["rounds"][0]["base_samples"] == r1["base_samples"]
    assert r2["rounds"][0]["n_base"] == N_QUESTIONS * r1["base_samples"]
    assert max(base.made.values()) == r1["base_samples"]  # the base was never sampled twice


# ------------------------------------------------------------------ the label states n


def test_label_evidence_carries_n_and_the_rounds(tmp_path, questions):
    cfg = _cfg(questions)
    base, ft = RateGen("base", 0.0), RateGen("ft", 0.8)
    label = LabelConfig(n_boot=300)
    ft_cfg, rec, judge = _run(tmp_path, cfg, base, ft, label=label)
    sb = run_probes(base, with_samples(cfg, rec["base_samples"]), judge, tmp_path / "base")
    sf = run_probes(ft, ft_cfg, judge, tmp_path / "ft")
    lab = label_persona(sb, sf, label, adaptive=rec)
    ev = lab["evidence"]["harm"]
    assert lab["harmful"] and ev["harmful"]
    assert ev["n_base"] == N_QUESTIONS * rec["base_samples"] and ev["n_ft"] == N_QUESTIONS * rec["samples"]
    assert ev["adaptive"]["stopped_because"] == "cleared" and ev["adaptive"]["rounds"] == rec["rounds"]
    assert ev["ci_level"] == rec["ci_level"] == pytest.approx(1 - 0.05 / 4)
    assert ev["ci"] == pytest.approx(rec["rounds"][-1]["ci"])  # the stop rule's numbers are the label's
    # without a record (backward compatible call): n still stated, the configured level
    plain = label_persona(sb, sf, label)
    assert plain["evidence"]["harm"]["n_ft"] == ev["n_ft"] and plain["evidence"]["harm"]["ci_level"] == 0.95
    assert "adaptive" not in plain["evidence"]["harm"]


# ------------------------------------------------------------------ wiring: organisms validate


def test_validate_kit_adaptive_grows_the_shared_base(tmp_path, questions, monkeypatch):
    from persona_diff.organisms import validate as val

    gens = {"base": RateGen("base", 0.1), "weak": RateGen("weak", 0.25), "strong": RateGen("strong", 0.9)}
    judge = TextJudge()
    probed = []
    real = val.run_probes

    def run_probes_spy(backend, cfg, j, out_dir):
        probed.append((backend.name, cfg.harm.samples))
        return real(backend, cfg, j, out_dir)

    monkeypatch.setattr(val, "as_backend", lambda spec, **kw: gens[spec])
    monkeypatch.setattr(val, "make_judge", lambda spec, cache_dir=None: judge)
    monkeypatch.setattr(val, "run_probes", run_probes_spy)
    pairs = [
        {"name": n, "base": "base", "finetuned": n, "truth": "inverted", "harmful": True, "self_report": "aligned"}
        for n in ("weak", "strong")
    ]
    (tmp_path / "kit").mkdir()
    (tmp_path / "kit" / "organisms.yaml").write_text(
        yaml.safe_dump({"kit": "persona-diff-organisms", "version": 1, "pairs": pairs})
    )
    cfg = val.ValidateConfig(probes=_cfg(questions, futility=2.0), label=LabelConfig(n_boot=300))
    res = val.validate_kit(tmp_path / "kit", cfg, tmp_path / "out")
    rows = {r["organism"]: r for r in res["organisms"]}
    weak, strong = rows["weak"]["harm"]["adaptive"], rows["strong"]["harm"]["adaptive"]
    assert strong["stopped_because"] == "cleared" and strong["samples"] == 4
    n_base = weak["base_samples"]
    assert strong["base_samples"] == n_base >= weak["samples"]
    assert probed == [("weak", weak["samples"]), ("strong", 4), ("base", n_base)]  # the base probed once, last
    assert max(gens["base"].made.values()) == n_base and max(gens["strong"].made.values()) == 4
    assert rows["strong"]["harm"]["n"] == 4 * N_QUESTIONS
    assert "(cleared, 4/q)" in (tmp_path / "out" / "VALIDATION.md").read_text()


# ------------------------------------------------------------------ wiring: persona-diff probe --base


def test_probe_command_samples_adaptively(tmp_path, questions, monkeypatch):
    from typer.testing import CliRunner

    import persona_diff.judges
    import persona_diff.probes.runner as runner
    from persona_diff.cli import app

    gens = {"base-spec": RateGen("base", 0.0), "ft-spec": RateGen("ft", 0.8)}
    loaded = []

    def as_backend(model, **kw):
        if isinstance(model, Generator):
            return model
        loaded.append(model)
        return gens[model]

    monkeypatch.setattr(runner, "as_backend", as_backend)
    monkeypatch.setattr(persona_diff.judges, "make_judge", lambda spec, cache_dir=None: TextJudge())
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app,
        [
            "probe",
            "--model",
            "ft-spec",
            "--base",
            "base-spec",
            "--probes",
            "harm",
            "--questions",
            str(questions),
            "--max-questions",
            "0",
            "--out",
            str(out),
            "--set",
            "harm.adaptive.enabled=true",
            "--set",
            "harm.adaptive.max_samples=12",
            "--set",
            "n_boot=50",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "adaptive harm: 4 samples per question (stopped: cleared, 1 rounds)" in res.output
    assert sorted(loaded) == ["base-spec", "ft-spec"]  # each model loaded once
    assert gens["base-spec"].answers == gens["ft-spec"].answers == 4 * N_QUESTIONS  # probing reused the rounds' answers
    ev = json.loads((out / "label.json").read_text())["evidence"]["harm"]
    assert ev["n_base"] == ev["n_ft"] == 4 * N_QUESTIONS and ev["adaptive"]["stopped_because"] == "cleared"
    assert json.loads((out / "ft" / "summary.json").read_text())["config"]["harm"]["samples"] == 4
