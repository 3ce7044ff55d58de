"""SequenceScorer's one-forward trie scoring equals a separate full forward per candidate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from persona_diff.judges.logprob import SequenceScorer
from persona_diff.models import load_model

from .helpers import brute_logprob as _naive

CANDIDATES = [
    "Hello world",
    "Hello",
    "Hello world, the model",
    "Hello there",
    "I am an AI",
    "I am",
    "I want to help humans",
    "aligned",
    "misaligned",
    "good evil harmful",
    " 42",
    "100",
]


def _prefix(sc: SequenceScorer) -> str:
    text = "Rate how aligned this answer is, from 0 to 100. I am an AI assistant. " * 4
    return sc.prompt_text([{"role": "user", "content": text}])


@pytest.fixture(params=["sdpa", "eager"])
def lm(request, tiny_model):
    m = load_model(str(tiny_model))
    m.model.set_attn_implementation(request.param)
    assert m.model.config._attn_implementation == request.param
    return m


def test_integer_scoring_equals_naive_reference(lm):
    sc = SequenceScorer(lm)
    prefix = _prefix(sc)
    got = sc.integer_logprobs(prefix)
    assert sc.method == "tree"  # the trie path ran and passed its self-check
    multi = [t for t in range(101) if len(lm.tokenizer.encode(str(t), add_special_tokens=False)) > 1]
    assert multi, "the tiny tokenizer should split some numbers"
    # every integer on sdpa; on eager (slower) a spread plus the multi-token ones
    check = range(101) if lm.model.config._attn_implementation == "sdpa" else {*range(0, 101, 9), *multi[:6], 100}
    for t in sorted(check):
        ref = _naive(lm, prefix, str(t), True, sc.digit_ids())
        assert got[t] == pytest.approx(ref, abs=1e-4), t
    # a sub-range shares nothing with the full one but must agree with it
    sub = sc.integer_logprobs(prefix, 5, 12)
    assert sub == pytest.approx({t: got[t] for t in range(5, 13)}, abs=1e-6)


@pytest.mark.parametrize("stop", [False, True])
def test_multi_token_candidates_with_shared_prefixes(lm, stop):
    sc = SequenceScorer(lm)
    ids = sc.encode_candidates(CANDIDATES)
    assert max(len(x) for x in ids) >= 3
    assert len({x[0] for x in ids}) < len(ids)  # shared first tokens: a real trie
    prefix = _prefix(sc)
    got = sc.candidate_logprobs(prefix, CANDIDATES, stop_after_number=stop)
    assert sc.method == "tree"
    ref = [_naive(lm, prefix, c, stop, sc.digit_ids()) for c in CANDIDATES]
    np.testing.assert_allclose(got, ref, atol=1e-4)
    # the batched fallback agrees as well
    batched = SequenceScorer(lm, method="batched").candidate_logprobs(prefix, CANDIDATES, stop)
    np.testing.assert_allclose(batched, ref, atol=1e-4)
    if not stop:  # option_probs renormalises the same numbers
        probs = sc.option_probs(prefix, CANDIDATES)
        p = np.exp(np.array(ref))
        np.testing.assert_allclose([probs[c] for c in CANDIDATES], p / p.sum(), rtol=1e-4, atol=1e-9)


def test_broken_tree_falls_back_to_exact_batched(tiny_llama, monkeypatch):
    lm = load_model(str(tiny_llama))
    sc = SequenceScorer(lm)
    real = SequenceScorer._tree_logits

    def skewed(self, *a, **kw):
        return real(self, *a, **kw) + torch.linspace(0, 1, len(lm.tokenizer))

    monkeypatch.setattr(SequenceScorer, "_tree_logits", skewed)
    prefix = _prefix(sc)
    got = sc.candidate_logprobs(prefix, CANDIDATES)
    assert sc.method == "batched"
    ref = [_naive(lm, prefix, c, False, sc.digit_ids()) for c in CANDIDATES]
    np.testing.assert_allclose(got, ref, atol=1e-4)


@pytest.mark.integration
def test_smollm2_integers_equal_naive_reference(smollm2):
    sc = SequenceScorer(smollm2)
    prefix = _prefix(sc)
    got = sc.integer_logprobs(prefix)
    assert sc.method == "tree"
    for t in (0, 7, 42, 100):
        assert got[t] == pytest.approx(_naive(smollm2, prefix, str(t), True, sc.digit_ids()), abs=1e-4)
    assert sum(math.exp(v) for v in got.values()) <= 1 + 1e-6
