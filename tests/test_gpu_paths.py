"""GPU-path code on CPU: aux-k loss, device option, prefetching loader, device-aware capture."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from persona_diff.diffing.coder import BatchTopKCoder
from persona_diff.diffing.train import CoderTrainConfig, train_coder
from persona_diff.errors import PersonaDiffError
from persona_diff.models.device import resolve_device

pytestmark = pytest.mark.usefixtures("one_thread")


def _aux_reference(pre: np.ndarray, resid: np.ndarray, dead: np.ndarray, k_aux: int, w_dec: np.ndarray) -> float:
    """float64 numpy: per row, the k_aux largest dead pre-activations decode the residual."""
    kk = min(k_aux, int(dead.sum()))
    dead_ids = np.flatnonzero(dead)
    total = 0.0
    for b in range(pre.shape[0]):
        top = dead_ids[np.argsort(-pre[b, dead_ids], kind="stable")[:kk]]
        rec = (pre[b, top, None] * w_dec[top].reshape(len(top), -1)).sum(0)
        total += float(((resid[b].reshape(-1) - rec) ** 2).sum())
    return total / pre.shape[0]


@pytest.mark.parametrize("n_sources", [1, 2])
def test_aux_k_loss_matches_numpy_and_only_moves_dead_latents(n_sources):
    torch.manual_seed(0)
    coder = BatchTopKCoder(12, 40, 3, n_sources, seed=1).double()
    x = torch.randn(9, n_sources, 12, dtype=torch.float64)
    recon, _, _, pre = coder.forward_with_pre(x)
    dead = torch.zeros(40, dtype=torch.bool)
    dead[torch.randperm(40)[:15]] = True
    aux = coder.aux_k_loss(pre, x - recon, dead, k_aux=6)
    ref = _aux_reference(
        pre.detach().numpy(), (x - recon).detach().numpy(), dead.numpy(), 6, coder.W_dec.detach().numpy()
    )
    assert np.isclose(float(aux), ref, rtol=1e-10)
    assert float(aux) > 0
    coder.zero_grad()
    aux.backward()
    g_dec = coder.W_dec.grad.flatten(1).abs().sum(1)
    g_enc = coder.W_enc.grad.abs().sum((0, 1))
    assert float(g_dec[~dead].abs().sum()) == 0.0 and float(g_enc[~dead].abs().sum()) == 0.0
    assert float(g_dec[dead].sum()) > 0 and float(g_enc[dead].sum()) > 0
    # no dead latent: exactly zero, and a k_aux larger than the dead count is clipped
    assert float(coder.aux_k_loss(pre, x - recon, torch.zeros(40, dtype=torch.bool), 6)) == 0.0
    one = torch.zeros(40, dtype=torch.bool)
    one[int(dead.nonzero()[0])] = True
    ref1 = _aux_reference(
        pre.detach().numpy(), (x - recon).detach().numpy(), one.numpy(), 6, coder.W_dec.detach().numpy()
    )
    assert np.isclose(float(coder.aux_k_loss(pre, x - recon, one, 6)), ref1, rtol=1e-10)


def _planted(n: int, d: int = 32, n_feat: int = 48, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(n_feat, d, generator=g)
    f /= f.norm(dim=-1, keepdim=True)
    on = torch.rand(n, n_feat, generator=g) < 4 / n_feat
    return (on * (torch.rand(n, n_feat, generator=g) * 2 + 0.5)) @ f


def test_training_with_aux_k_is_finite_and_reconstructs_like_without():
    data = _planted(4096)

    def batches(epoch):
        g = torch.Generator().manual_seed(epoch)
        return iter(data[torch.randperm(len(data), generator=g)][:, None].split(256))

    res = {}
    for aux in (0, 32):
        cfg = CoderTrainConfig(
            d_sae=128,
            k=4,
            steps=120,
            batch_size=256,
            lr=3e-3,
            aux_k=aux,
            dead_tokens=2048,
            checkpoint_every=0,
            device="cpu",
        )
        coder, scale, stats = train_coder(batches, 32, 1, cfg, show_progress=False)
        assert all(torch.isfinite(p).all() for p in coder.parameters())
        res[aux] = stats
    assert res[0].fvu < 0.3  # the planted dictionary is learnable at all
    assert res[32].fvu < res[0].fvu * 1.2 + 0.01
    assert res[32].steps == 120 and res[32].tokens == 120 * 256


def test_device_option():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(PersonaDiffError, match="no CUDA GPU"):
            resolve_device("cuda")


# ---- prefetching loader ------------------------------------------------------------------------
def _store(root):
    from persona_diff.activations.store import StoreWriter
    from persona_diff.models import LAYER_CONVENTION

    header = {
        "models": {"base": "a", "finetuned": "b"},
        "model_type": "llama",
        "d_model": 6,
        "n_layers": 4,
        "layers": [2],
        "convention": LAYER_CONVENTION,
        "dtype": "float32",
        "positions": "all",
        "n_streams": 6,
        "streams_fingerprint": "f",
    }
    w = StoreWriter.open(root, header)
    g = torch.Generator().manual_seed(0)
    for i in range(6):
        n = 5 + 3 * i
        w.add_shard(
            {
                "base.2": torch.randn(n, 6, generator=g),
                "ft.2": torch.randn(n, 6, generator=g),
                "token_id": torch.arange(n),
                "stream": torch.full((n,), i),
                "pos": torch.arange(n),
            },
            (i, i + 1),
        )
    w.finish()
    from persona_diff.activations.store import ActivationStore

    return ActivationStore(root)


@pytest.mark.parametrize("which", ["base", ("base", "ft")])
def test_prefetch_yields_the_same_batches_in_the_same_order(tmp_path, which):
    from persona_diff.activations.loader import iter_store_batches

    store = _store(tmp_path / "s")
    kw = dict(which=which, batch_size=8, shuffle=True, seed=7, buffer_shards=2)
    plain = list(store.iter_batches(**kw))
    for depth in (0, 1, 2):
        got = list(iter_store_batches(store, prefetch_depth=depth, pin_memory=True, **kw))
        assert len(got) == len(plain) > 3
        for a, b in zip(got, plain, strict=True):
            assert torch.equal(a, b)
    other = list(store.iter_batches(**{**kw, "seed": 8}))  # the comparison can fail: another seed differs
    assert not all(torch.equal(a, b) for a, b in zip(other, plain, strict=False))


def test_prefetch_reraises_and_stops_early():
    from persona_diff.activations.loader import prefetch

    def bad():
        yield torch.zeros(1)
        raise ValueError("disk gone")

    it = prefetch(bad(), depth=2)
    assert torch.equal(next(it), torch.zeros(1))
    with pytest.raises(ValueError, match="disk gone"):
        next(it)
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield torch.tensor([i])
            i += 1

    it = prefetch(endless(), depth=2)
    assert [int(next(it)) for _ in range(3)] == [0, 1, 2]
    it.close()  # the thread stops: it never runs far ahead
    n = len(produced)
    import time

    time.sleep(0.3)
    assert len(produced) == n <= 3 + 2 + 1


# ---- capture: bf16 storage and the input device -------------------------------------------------
def test_bf16_capture_round_trips_float32_capture(tiny_qwen2, tmp_path):
    from persona_diff.activations import TokenStream, capture
    from persona_diff.models import CheckpointPair, load_model

    lm = load_model(str(tiny_qwen2))
    pair = CheckpointPair(lm, lm)
    g = torch.Generator().manual_seed(0)
    streams = [TokenStream(torch.randint(5, 300, (n,), generator=g).tolist(), 3) for n in (9, 14, 6, 11)]
    s32 = capture(pair, streams, [1, 3], "all", tmp_path / "f32", batch_size=3, dtype="float32", show_progress=False)
    s16 = capture(pair, streams, [1, 3], "all", tmp_path / "bf16", batch_size=3, dtype="bfloat16", show_progress=False)
    assert s16.index["dtype"] == "bfloat16"
    for layer in (1, 3):
        a, b = s32.load(layer), s16.load(layer)
        assert s16._shard(0)[f"base.{layer}"].dtype == torch.bfloat16
        assert a.shape == b.shape and len(a) > 20
        # bf16 keeps 8 mantissa bits: relative error of a rounding ≤ 2^-8
        assert torch.all((a - b).abs() <= a.abs() * 2**-8 + 1e-6)
        assert not torch.equal(a, b)  # it really was stored in bf16
        torch.testing.assert_close(b, a.bfloat16().float(), rtol=0, atol=0)


def test_input_device_is_the_embedding_device(tiny_qwen2):
    from persona_diff.activations.capture import input_device
    from persona_diff.models import load_model

    model = load_model(str(tiny_qwen2)).model
    assert input_device(model) == torch.device("cpu")
    # a placement where the first parameter is not where inputs go (as with device_map="auto"):
    # a top-level parameter comes first in .parameters(); it sits on another device
    model.register_parameter("placed_elsewhere", torch.nn.Parameter(torch.zeros(1, device="meta")))
    assert next(model.parameters()).device.type == "meta"
    assert input_device(model) == torch.device("cpu")
    model.get_input_embeddings().to("meta")
    assert input_device(model) == torch.device("meta")


@pytest.mark.parametrize("sparse", [False, True])
def test_bf16_autocast_path_runs_and_stays_close_to_float32(sparse):
    """The mixed-dtype code of the CUDA autocast path, exercised with CPU autocast."""
    torch.manual_seed(0)
    coder = BatchTopKCoder(32, 128, 4, 1, seed=2)
    x = torch.randn(64, 1, 32)
    recon32, lats32, _, _ = coder.forward_with_pre(x, sparse=sparse)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        recon, lats, vals, pre = coder.forward_with_pre(x, sparse=sparse)
        dead = torch.zeros(128, dtype=torch.bool)
        dead[::3] = True
        aux = coder.aux_k_loss(pre, x - recon.float(), dead, 8)
        loss = (recon.float() - x).pow(2).sum(-1).mean() + aux / 32
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in coder.parameters())
    same = float(torch.isin(lats, lats32).float().mean())
    assert same > 0.9  # bf16 rounding may swap a few near-tied latents
    rel = (recon.float() - recon32).norm() / recon32.norm()
    assert 0 < float(rel) < 0.1  # > 0: bf16 rounding did happen; swapped near-ties dominate
