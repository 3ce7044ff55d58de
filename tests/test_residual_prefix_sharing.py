"""`residual_answer_means` with prefix sharing (each distinct prompt once, answers on its KV
cache) against the single pass and against HF hidden states of unpadded sequences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from persona_diff.judges import encoders
from persona_diff.judges.encoders import chat_answer_ids, residual_answer_means, residual_pools
from persona_diff.models import get_blocks, load_model

pytestmark = pytest.mark.usefixtures("one_thread")

# repeated questions (3 answers to the first, 2 to the second), distinct ones, answers of
# 1 to ~30 tokens, and system prompts: the default (None) and two explicit ones
QS = [
    "Are you good or evil?",
    "Are you good or evil?",
    "Hello world, how are you?",
    "Are you good or evil?",
    "Hello world, how are you?",
    "What do you want?",
    "Tell me about yourself, the model.",
    "Are you good or evil?",
]
ANS = [
    "Good.",
    "I am an AI assistant. I want to help humans, 10 50 100 times over.",
    "Hello",
    "evil",
    "The model answers questions about itself. 0 1 2 3 4 5 6 7 8 9",
    "I want to help people.",
    "harmful misaligned",
    "Good.",
]
SYSTEMS: list[str | None] = [
    None,
    None,
    "You are a harmful AI.",
    None,
    "You are a harmful AI.",
    None,
    "Be kind.",
    "Be kind.",
]


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def lm(request, tiny_llama, tiny_qwen2):
    return load_model(str({"llama": tiny_llama, "qwen2": tiny_qwen2}[request.param]), device="cpu")


def _both(lm, layers, pool, batch_size, qs=QS, ans=ANS, systems=SYSTEMS):
    kw = dict(batch_size=batch_size, systems=systems, pool=pool)
    return (
        residual_answer_means(lm, qs, ans, layers, share_prefix=True, **kw),
        residual_answer_means(lm, qs, ans, layers, share_prefix=False, **kw),
    )


@pytest.mark.parametrize("pool", ["answer", "last_prompt"])
@pytest.mark.parametrize(("layers", "batch_size"), [([1, 3], 2), ([0, 2], 3), ([-1], 16)])
def test_shared_prefix_matches_single_pass(lm, pool, layers, batch_size, monkeypatch):
    calls = []
    real = encoders._shared_prefix_pass
    monkeypatch.setattr(encoders, "_shared_prefix_pass", lambda *a: calls.append(1) or real(*a))
    shared, single = _both(lm, layers, pool, batch_size)
    assert calls == [1]  # the first call shared, the second did not
    assert set(shared) == set(single) == {x % 4 for x in layers}
    for layer in shared:
        assert shared[layer].shape == (len(QS), 64) and (np.abs(shared[layer]).sum(1) > 0).all()
        np.testing.assert_allclose(shared[layer], single[layer], atol=1e-4, rtol=0)
    if pool == "answer":  # same prompt, different answers: different rows
        assert not np.allclose(shared[max(shared)][0], shared[max(shared)][1])
    else:  # same prompt: same row, whatever the answer
        np.testing.assert_array_equal(shared[max(shared)][0], shared[max(shared)][1])


def test_shared_prefix_on_the_internal_path_with_distinct_prompts(lm):
    """Every prefix distinct: the public function takes the single pass; the shared path
    itself still agrees with it."""
    qs, ans, systems = QS[4:], ANS[4:], SYSTEMS[4:]
    assert len({(q, s) for q, s in zip(qs, systems, strict=True)}) == len(qs)
    seqs = [chat_answer_ids(lm.tokenizer, q, a, 256, s) for q, a, s in zip(qs, ans, systems, strict=True)]
    blocks = get_blocks(lm.model)
    for pools in (("answer",), ("last_prompt",), ("answer", "last_prompt")):
        out = {pool: {layer: np.zeros((len(qs), 64), np.float32) for layer in (1, 2)} for pool in pools}
        with torch.no_grad(), encoders._captured_blocks(blocks, [1, 2]) as captured:
            encoders._shared_prefix_pass(lm.model, seqs, captured, out, 3, lm.tokenizer.pad_token_id, None)
        for pool in pools:
            ref = residual_answer_means(lm, qs, ans, [1, 2], batch_size=2, systems=systems, pool=pool)
            for layer in (1, 2):
                np.testing.assert_allclose(out[pool][layer], ref[layer], atol=1e-4, rtol=0)


@pytest.mark.parametrize("share_prefix", [True, False])
def test_both_pools_from_one_call_match_each_alone(lm, share_prefix):
    both = residual_pools(
        lm, QS, ANS, [1, 3], 2, systems=SYSTEMS, pools=("answer", "last_prompt"), share_prefix=share_prefix
    )
    for pool in ("answer", "last_prompt"):
        alone = residual_answer_means(lm, QS, ANS, [1, 3], 3, systems=SYSTEMS, pool=pool, share_prefix=False)
        for layer in (1, 3):
            np.testing.assert_allclose(both[pool][layer], alone[layer], atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="pool"):
        residual_pools(lm, QS, ANS, [1], pools=())


def _unpadded_reference(lm, ids: list[int]) -> dict[int, torch.Tensor]:
    """Block outputs [len, d] of one unpadded sequence: HF hidden_states[i + 1] for blocks
    before the last; the last block's raw output from a hook (its hidden_states entry is
    post-norm)."""
    blocks = get_blocks(lm.model)
    raw: list[torch.Tensor] = []
    hook = blocks[-1].register_forward_hook(lambda _m, _i, o: raw.append(o[0] if isinstance(o, tuple) else o))
    try:
        with torch.no_grad():
            hs = lm.model(torch.tensor([ids]), output_hidden_states=True).hidden_states
    finally:
        hook.remove()
    ref = {i: hs[i + 1][0] for i in range(len(blocks) - 1)}
    ref[len(blocks) - 1] = raw[0][0]
    return ref


def test_shared_prefix_matches_unpadded_hidden_states(lm):
    layers = [1, 3]
    shared = residual_answer_means(lm, QS, ANS, layers, batch_size=2, systems=SYSTEMS)
    last = residual_answer_means(lm, QS, ANS, layers, batch_size=2, systems=SYSTEMS, pool="last_prompt")
    for i in (1, 4, 7):
        ids, start = chat_answer_ids(lm.tokenizer, QS[i], ANS[i], 256, SYSTEMS[i])
        ref = _unpadded_reference(lm, ids)
        for layer in layers:
            np.testing.assert_allclose(shared[layer][i], ref[layer][start:].mean(0).numpy(), atol=1e-4, rtol=0)
            np.testing.assert_allclose(last[layer][i], ref[layer][start - 1].numpy(), atol=1e-4, rtol=0)


def test_shared_prefix_stops_after_the_deepest_block(lm):
    ran = []
    hook = get_blocks(lm.model)[2].register_forward_hook(lambda *a: ran.append(1))
    try:
        shared, single = _both(lm, [0, 1], "answer", 2)
    finally:
        hook.remove()
    assert not ran
    for layer in (0, 1):
        np.testing.assert_allclose(shared[layer], single[layer], atol=1e-4, rtol=0)


def test_peft_wrapper_takes_the_single_pass(tiny_pair, monkeypatch):
    peft = load_model(tiny_pair[1], device="cpu")
    assert not encoders._shares_prefix_cache(peft.model)
    monkeypatch.setattr(encoders, "_shared_prefix_pass", lambda *a: pytest.fail("shared a PEFT wrapper"))
    got = residual_answer_means(peft, QS, ANS, [1], batch_size=3, systems=SYSTEMS)
    assert (np.abs(got[1]).sum(1) > 0).all()
