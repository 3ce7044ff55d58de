"""On a GPU, SAE training steps do not wait for the host (marker `gpu`; skipped without CUDA)."""

from __future__ import annotations

import warnings

import pytest
import torch

from persona_diff.diffing.train import CoderTrainConfig, train_coder

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("sparse", [False, True])
def test_training_loop_syncs_only_at_checks(sparse):
    data = torch.randn(8192, 1, 64, device="cuda")

    def batches(epoch):
        return iter(data.split(512))

    steps, every = 40, 20
    cfg = CoderTrainConfig(
        d_sae=256,
        k=8,
        steps=steps,
        batch_size=512,
        aux_k=16,
        dead_tokens=1024,
        checkpoint_every=0,
        check_every=every,
        device="cuda",
        sparse_decoder=sparse,
    )
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train_coder(batches, 64, 1, cfg, show_progress=False)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    # setup (scale estimate, b_dec init) + one per check + the final stats: far fewer than one per step
    assert len(syncs) < steps // 2, [str(w.message)[:120] for w in syncs[:5]]
