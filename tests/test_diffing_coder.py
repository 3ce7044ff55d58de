"""BatchTopK coder: sparse decoder == dense decoder (values and gradients), SAELens export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from persona_diff.diffing.coder import BatchTopKCoder
from persona_diff.diffing.saving import load_coder, sae_metadata, save_coder, save_sae_lens
from persona_diff.diffing.train import CoderTrainConfig, TrainingDivergedError, train_coder
from persona_diff.errors import PersonaDiffError
from persona_diff.models import LAYER_CONVENTION

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("n_sources", [1, 2])
def test_sparse_decoder_equals_dense_forward_and_grads(n_sources):
    torch.manual_seed(0)
    x = torch.randn(37, n_sources, 24, dtype=torch.float64)
    grads = {}
    outs = {}
    for sparse in (False, True):
        coder = BatchTopKCoder(24, 96, 5, n_sources, seed=3).double()
        torch.manual_seed(5)
        with torch.no_grad():
            coder.b_enc.normal_(0, 0.1)
            coder.b_dec.normal_(0, 0.1)
        recon, lats, vals = coder(x, sparse=sparse)
        loss = (recon - x).pow(2).sum() + recon.sin().sum()
        loss.backward()
        outs[sparse] = recon.detach()
        grads[sparse] = {n: p.grad.clone() for n, p in coder.named_parameters()}
        assert len(lats) == 5 * 37
        # independent reference: numpy float64 of acts @ W_dec + b_dec
        acts = coder.encode(x).detach().numpy()
        ref = np.einsum("bm,msd->bsd", acts, coder.W_dec.detach().numpy()) + coder.b_dec.detach().numpy()
        np.testing.assert_allclose(recon.detach().numpy(), ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(outs[True], outs[False], rtol=1e-10, atol=1e-10)
    for name in grads[False]:
        torch.testing.assert_close(grads[True][name], grads[False][name], rtol=1e-9, atol=1e-10, msg=name)


def test_batchtopk_keeps_k_per_row_on_average_by_numpy_reference():
    torch.manual_seed(1)
    coder = BatchTopKCoder(16, 64, 3, 1, seed=0)
    x = torch.randn(50, 1, 16)
    acts = coder.encode(x).detach().numpy()
    pre = coder.pre_acts(x).detach().numpy()
    flat = pre.flatten()
    thresh = sorted(flat, reverse=True)[3 * 50 - 1]
    ref = np.where(pre >= thresh, pre, 0.0)
    np.testing.assert_allclose(acts, ref, rtol=0, atol=0)


def test_saved_sae_loads_in_saelens_and_matches_on_raw_activations(tmp_path):
    from sae_lens import SAE

    torch.manual_seed(0)
    data = torch.randn(2048, 1, 32) * 7 + 3  # raw scale far from RMS 1

    def batches(epoch):
        g = torch.Generator().manual_seed(epoch)
        return iter(data[torch.randperm(len(data), generator=g)].split(256))

    coder, scale, stats = train_coder(
        batches, 32, 1, CoderTrainConfig(d_sae=64, k=4, steps=60, batch_size=256), show_progress=False
    )
    assert stats.fvu < 1.0
    save_sae_lens(coder, scale, tmp_path / "sae", metadata=sae_metadata(3, "org/base-model"))
    sae = SAE.load_from_disk(tmp_path / "sae")
    assert type(sae).__name__ == "JumpReLUSAE"
    # the SAE says what it reads: block 3's output of that model, in TransformerLens's naming
    meta = sae.cfg.metadata
    assert meta.hook_name == "blocks.3.hook_resid_post" and meta.model_name == "org/base-model"
    assert meta.layer == 3 and meta.layer_convention == LAYER_CONVENTION
    raw = data[:100, 0]
    ours = coder.encode_jumprelu(raw[:, None] * scale[:, None])
    theirs = sae.encode(raw)
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=1e-4)
    recon_ours = coder.decode_dense(ours)[:, 0] / scale[0]
    torch.testing.assert_close(sae.decode(theirs), recon_ours, atol=1e-4, rtol=1e-4)
    # and our own folder format round-trips
    save_coder(coder, scale, tmp_path / "c")
    back, s2, cfg = load_coder(tmp_path / "c")
    assert torch.equal(back.W_dec, coder.W_dec) and torch.equal(s2, scale) and cfg["k"] == 4


def test_nan_stops_training_with_step_and_checkpoint(tmp_path):
    torch.manual_seed(0)
    good = torch.randn(256, 1, 8)
    bad = good.clone()
    bad[3, 0, 2] = float("nan")

    def batches(epoch):
        return iter([good[:64], good[64:128], good[128:192], good[192:], bad[:64]])

    cfg = CoderTrainConfig(d_sae=16, k=2, steps=10, batch_size=64, checkpoint_every=2, norm_batches=1)
    with pytest.raises(TrainingDivergedError, match=r"at step 4; last good checkpoint: .*checkpoint \(step 4\)"):
        train_coder(batches, 8, 1, cfg, out_dir=tmp_path, show_progress=False)
    back, _, meta = load_coder(tmp_path / "checkpoint")
    assert meta["step"] == 4 and torch.isfinite(back.W_dec).all()


def test_select_has_fixed_size_and_zero_values_do_not_fire():
    """Fewer positive pre-activations than k·batch: the kept set stays k·batch (no data-dependent
    shape), the extra entries are zeros, and the threshold EMA only sees the ones that fired."""
    coder = BatchTopKCoder(8, 32, 4, 1, seed=0)
    pre = torch.zeros(5, 32)
    pre[0, 3], pre[2, 7], pre[4, 31] = 2.0, 0.5, 1.0  # 3 positives, k·batch = 20
    rows, lats, vals = coder.select(pre)
    assert len(rows) == len(lats) == len(vals) == 20
    assert torch.all(rows[1:] >= rows[:-1])  # row-major, as embedding_bag needs
    fired = {(int(r), int(c)) for r, c, v in zip(rows, lats, vals, strict=True) if v > 0}
    assert fired == {(0, 3), (2, 7), (4, 31)}
    norms = coder.dec_norms().sum(-1)
    coder.update_threshold(lats, vals, lr=0.5)
    assert np.isclose(float(coder.threshold), 0.5 * min(0.5 * float(norms[7]), float(norms[31]), 2 * float(norms[3])))
    before = float(coder.threshold)
    coder.update_threshold(lats, torch.zeros_like(vals), lr=0.5)  # nothing fired: unchanged
    assert float(coder.threshold) == before


def test_sae_metadata_of_a_diff_sae_and_vague_hook_names_refused(tmp_path):
    from sae_lens import SAE

    coder = BatchTopKCoder(8, 16, 2, 1, seed=0)
    scale = torch.ones(1)
    meta = sae_metadata(5, "smollm2-135m", finetuned="runs/x/adapter")
    save_sae_lens(coder, scale, tmp_path / "d", meta)
    m = SAE.load_from_disk(tmp_path / "d").cfg.metadata
    assert m.hook_name == "blocks.5.hook_resid_post" and m.model_name == "smollm2-135m"
    assert m.finetuned_model_name == "runs/x/adapter" and "finetuned minus base" in m.input
    for vague in ("layer.3", "blocks.3", "blocks.3.diff"):
        with pytest.raises(PersonaDiffError, match="does not say what the SAE reads"):
            save_sae_lens(coder, scale, tmp_path / vague, {"hook_name": vague})
