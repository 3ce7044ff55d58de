"""Streaming reductions over a store: equal to the whole-layer computation, and no diffing
method or evidence export loads a whole layer (research-scale stores do not fit in memory)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from persona_diff.activations.reduce import column_stats, map_tokens
from persona_diff.activations.store import ActivationStore, StoreWriter
from persona_diff.diffing import DiffConfig, get_method
from persona_diff.diffing.evidence import export_directions
from persona_diff.models import LAYER_CONVENTION

pytestmark = pytest.mark.usefixtures("one_thread")

D, PER, N_SHARDS = 8, 9, 6


def _store(root) -> tuple[ActivationStore, torch.Tensor, torch.Tensor]:
    header = {
        "models": {"base": "a", "finetuned": "b"},
        "model_type": "llama",
        "d_model": D,
        "n_layers": 4,
        "layers": [2],
        "convention": LAYER_CONVENTION,
        "dtype": "float32",
        "positions": "all",
        "n_streams": N_SHARDS,
        "streams_fingerprint": "f",
    }
    w = StoreWriter.open(root, header)
    meta = [{"aligned": 10.0 if i % 2 else 90.0, "coherent": 80.0} for i in range(N_SHARDS)]
    w.write_streams([{"input_ids": list(range(PER + 1)), "prompt_len": 1, "meta": m} for m in meta])
    g = torch.Generator().manual_seed(0)
    base = torch.randn(N_SHARDS * PER, D, generator=g)
    ft = base + 0.5 * torch.randn(N_SHARDS * PER, D, generator=g) + torch.linspace(0, 1, D)
    for i in range(N_SHARDS):
        sl = slice(i * PER, (i + 1) * PER)
        w.add_shard(
            {
                "base.2": base[sl],
                "ft.2": ft[sl],
                "token_id": torch.arange(PER),
                "stream": torch.full((PER,), i),
                "pos": torch.arange(1, PER + 1),
            },
            (i, i + 1),
        )
    w.finish()
    return ActivationStore(root), base, ft


def test_map_and_column_stats_equal_the_whole_layer(tmp_path):
    store, base, ft = _store(tmp_path / "s")
    w = torch.randn(D, 5, generator=torch.Generator().manual_seed(1))
    # chunk 4 does not divide the 9-token shards: chunks straddle shard boundaries
    got = map_tokens(store, 2, ("base", "ft"), lambda x: x[:, 1] @ w - x[:, 0] @ w, chunk=4)
    np.testing.assert_allclose(got.numpy(), ((ft - base).double().numpy() @ w.double().numpy()), rtol=1e-5, atol=1e-5)
    st = column_stats(store, 2, "ft", lambda h: torch.relu(h @ w), chunk=4)
    ref = np.maximum(ft.double().numpy() @ w.double().numpy(), 0)
    np.testing.assert_allclose(st.mean.numpy(), ref.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(st.freq.numpy(), (ref > 0).mean(0), rtol=0, atol=1e-12)
    assert st.n == N_SHARDS * PER


def test_no_method_loads_a_whole_layer(tmp_path, monkeypatch):
    store, base, ft = _store(tmp_path / "s")

    def refuse(self, *a, **kw):
        raise AssertionError("a whole layer was loaded")

    monkeypatch.setattr(ActivationStore, "load", refuse)
    cfg = DiffConfig(d_sae=16, k=2, steps=5, batch_size=16, top_k=3, device="cpu")
    res = get_method("mean")(cfg).fit(store)
    torch.testing.assert_close(res.directions[0], (ft - base).mean(0), atol=1e-5, rtol=1e-5)
    con = get_method("contrastive")(cfg).fit(store)
    tok_mis = torch.tensor([i // PER % 2 == 1 for i in range(N_SHARDS * PER)])
    torch.testing.assert_close(con.directions[0], ft[tok_mis].mean(0) - ft[~tok_mis].mean(0), atol=1e-5, rtol=1e-5)
    for name in ("sae", "diff-sae", "crosscoder"):
        r = get_method(name)(cfg, out_dir=tmp_path / name).fit(store)
        assert len(r.scores) == 3 and torch.isfinite(r.directions).all(), name
        export_directions(r, tmp_path / f"{name}-out", store)
        assert (tmp_path / f"{name}-out" / "evidence.json").is_file()
