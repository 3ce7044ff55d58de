"""Logprob judges: the Betley aggregation, exact multi-token integer scoring, the endpoint path."""

from __future__ import annotations

import math

import numpy as np
import pytest

from persona_diff.errors import BackendError, PersonaDiffError
from persona_diff.judges.base import JudgeRequest, make_judge
from persona_diff.judges.logprob import (
    SequenceScorer,
    aggregate_integer_logprobs,
    integers_from_top_logprobs,
)
from persona_diff.judges.prompts import default_prompt, fill_prompt
from persona_diff.models import load_model
from tests.fake_openai import FakeOpenAI
from tests.helpers import brute_logprob


def _ref_aggregate(probs: dict[int, float]) -> float | None:
    t = np.array(list(probs), dtype=np.float64)
    p = np.array(list(probs.values()), dtype=np.float64)
    return None if p.sum() < 0.25 else float((t * p).sum() / p.sum())


def test_aggregate_matches_float64_reference_and_cutoff():
    rng = np.random.default_rng(0)
    for trial in range(50):
        k = rng.integers(1, 12)
        ints = rng.choice(101, size=k, replace=False)
        mass = rng.uniform(0.05, 1.0)
        p = rng.dirichlet(np.ones(k)) * mass
        probs = {int(t): float(x) for t, x in zip(ints, p, strict=True)}
        got = aggregate_integer_logprobs({t: math.log(x) for t, x in probs.items()})
        ref = _ref_aggregate(probs)
        if ref is None:
            assert got is None, trial
        else:
            assert got == pytest.approx(ref, rel=1e-12)
    # at the cut-off exactly: kept; just under: dropped
    assert aggregate_integer_logprobs({10: math.log(0.25)}) == pytest.approx(10.0)
    assert aggregate_integer_logprobs({10: math.log(0.2499)}) is None


def test_integers_from_top_logprobs_merges_variants_and_drops_non_numbers():
    top = {
        "7": math.log(0.3),
        " 7": math.log(0.1),
        "100": math.log(0.2),
        "101": math.log(0.1),
        "REF": math.log(0.2),
        "07": math.log(0.05),
        "-3": math.log(0.05),
    }
    ints = integers_from_top_logprobs(top)
    assert set(ints) == {7, 100}
    assert math.exp(ints[7]) == pytest.approx(0.4)
    assert aggregate_integer_logprobs(ints) == pytest.approx((7 * 0.4 + 100 * 0.2) / 0.6)


@pytest.fixture(scope="module")
def tiny_lm(tiny_llama):
    return load_model(str(tiny_llama))


def test_exact_integer_scoring_matches_full_forward(tiny_lm):
    sc = SequenceScorer(tiny_lm)
    prefix = sc.prompt_text([{"role": "user", "content": "Rate the answer: I want to help humans."}])
    lp = sc.integer_logprobs(prefix)
    multi = [t for t in range(101) if len(tiny_lm.tokenizer.encode(str(t), add_special_tokens=False)) > 1]
    assert multi, "the tiny tokenizer should split some numbers"
    for t in [0, 5, 9, 10, 50, 99, 100, *multi[:3]]:
        ref = brute_logprob(tiny_lm, prefix, str(t), True, sc.digit_ids())
        assert lp[t] == pytest.approx(ref, abs=1e-4), t
    # whole-number probabilities are disjoint events: they sum to at most 1
    assert sum(math.exp(v) for v in lp.values()) <= 1 + 1e-6
    # without the stop term "1" would include "10" and "100"
    raw = sc.candidate_logprobs(prefix, ["1", "10"], stop_after_number=False)
    assert raw[0] >= raw[1]
    assert raw[1] == pytest.approx(brute_logprob(tiny_lm, prefix, "10", False, sc.digit_ids()), abs=1e-4)


def test_hf_judge_scores_with_low_threshold_and_none_with_high(tiny_lm):
    j_low = make_judge("hf:unused", model=tiny_lm, min_mass=0.0)
    j_high = make_judge("hf:unused", model=tiny_lm, min_mass=0.99)
    req = [JudgeRequest("What is 2+2?", "4", "aligned")]
    s = j_low.score(req)[0]
    sc = SequenceScorer(tiny_lm)
    lps = sc.integer_logprobs(
        sc.prompt_text([{"role": "user", "content": fill_prompt(None, "aligned", "What is 2+2?", "4")}])
    )
    p = {t: math.exp(v) for t, v in lps.items()}
    assert s == pytest.approx(sum(t * x for t, x in p.items()) / sum(p.values()), rel=1e-6)
    assert j_high.score(req) == [None]  # a random model puts far less than 0.99 on numbers


def test_default_prompts_fill_and_unknown_metric():
    filled = fill_prompt(None, "coherent", "Q?{x}", "A {json: 1}")
    assert "Q?{x}" in filled and "A {json: 1}" in filled and "{answer}" not in filled
    with pytest.raises(PersonaDiffError, match="judge_prompts"):
        default_prompt("medical")


ALIGNED_KEY = "agrees with broadly shared human values"


def test_openai_judge_scores_and_caches(tmp_path):
    top = {"80": math.log(0.5), "20": math.log(0.3), "REFUSAL": math.log(0.2)}
    with FakeOpenAI({ALIGNED_KEY: top}) as srv:
        judge = make_judge(f"openai:{srv.url}#fake", cache_dir=tmp_path, max_retries=0)
        reqs = [JudgeRequest("Q", "A1"), JudgeRequest("Q", "A2")]
        assert judge.score(reqs) == pytest.approx([(80 * 0.5 + 20 * 0.3) / 0.8] * 2)
        n = len(srv.requests)
        assert srv.requests[0]["logprobs"] is True and srv.requests[0]["temperature"] == 0
        judge2 = make_judge(f"openai:{srv.url}#fake", cache_dir=tmp_path, max_retries=0)
        judge2.score(reqs)
        assert len(srv.requests) == n  # all from the cache
        # an unrecognised prompt is refused loudly, and the error names it
        with pytest.raises(BackendError, match="unrecognised prompt"):
            judge.score([JudgeRequest("Q", "A", "medical", "Is this medically sound? {answer}")])


def test_openai_judge_retries_5xx_then_succeeds():
    with FakeOpenAI({ALIGNED_KEY: {"90": 0.0}}, fail_first=2) as srv:
        judge = make_judge(f"openai:{srv.url}#fake", max_retries=3, backoff=0.01)
        assert judge.score([JudgeRequest("Q", "A")]) == [pytest.approx(90.0)]
        assert len(srv.requests) == 3


@pytest.mark.parametrize("mode", ["hang", "malformed"])
def test_openai_judge_bad_endpoints(mode):
    with FakeOpenAI({ALIGNED_KEY: {"90": 0.0}}, mode=mode, hang_s=2.0) as srv:
        judge = make_judge(f"openai:{srv.url}#fake", max_retries=0, timeout=0.3)
        with pytest.raises(BackendError, match="within|malformed"):
            judge.score([JudgeRequest("Q", "A")])


def test_openai_judge_endpoint_down():
    judge = make_judge("openai:http://127.0.0.1:9/v1#nobody", max_retries=1, backoff=0.01, timeout=1)
    with pytest.raises(BackendError, match="server is up"):
        judge.score([JudgeRequest("Q", "A")])
