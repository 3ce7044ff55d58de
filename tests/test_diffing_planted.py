"""Planted-feature recovery on synthetic activations written to a real store."""

from __future__ import annotations

import os

import pytest
import torch

from persona_diff.activations.store import ActivationStore, StoreWriter
from persona_diff.diffing import DiffConfig, DiffResult, get_method
from persona_diff.models import LAYER_CONVENTION

os.environ.setdefault("PERSONA_DIFF_NO_PROGRESS", "1")

D, N_FEAT, N_TOK, LAYER = 32, 40, 6000, 3


pytestmark = pytest.mark.usefixtures("one_thread")


def _unit(v):
    return v / v.norm(dim=-1, keepdim=True)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Base: sparse sums of shared features. Ft: the same + 2 fine-tune-only features,
    feature 0 boosted (more often on), and a constant mean shift."""
    g = torch.Generator().manual_seed(0)
    feats = _unit(torch.randn(N_FEAT + 2, D, generator=g))
    shared, ft_only = feats[:N_FEAT], feats[N_FEAT:]
    on = torch.rand(N_TOK, N_FEAT, generator=g) < 3 / N_FEAT
    mag = 1 + torch.rand(N_TOK, N_FEAT, generator=g)
    base = (on * mag) @ shared
    boost = (torch.rand(N_TOK, generator=g) < 0.3) * (1 + torch.rand(N_TOK, generator=g))
    on_ft = torch.rand(N_TOK, 2, generator=g) < 0.15
    ft = base + boost[:, None] * shared[0] + (on_ft * (1.5 + torch.rand(N_TOK, 2, generator=g))) @ ft_only
    shift = 0.3 * _unit(torch.randn(D, generator=g))
    ft_shifted = ft + shift
    root = tmp_path_factory.mktemp("planted")
    header = {
        "models": {"base": "synthetic-base", "finetuned": "synthetic-ft"},
        "model_type": "synthetic",
        "d_model": D,
        "n_layers": 4,
        "layers": [LAYER],
        "convention": LAYER_CONVENTION,
        "dtype": "float32",
        "positions": "all",
        "n_streams": 1,
        "streams_fingerprint": "x",
    }
    w = StoreWriter.open(root, header)
    w.write_streams([{"input_ids": [0], "prompt_len": 0, "meta": {}}])
    for s in range(0, N_TOK, 1000):
        sl = slice(s, s + 1000)
        w.add_shard(
            {
                f"base.{LAYER}": base[sl],
                f"ft.{LAYER}": ft_shifted[sl],
                "token_id": torch.zeros(1000, dtype=torch.long),
                "stream": torch.zeros(1000, dtype=torch.long),
                "pos": torch.arange(s, s + 1000),
            },
            (0, 1),
        )
    w.finish()
    expected_mean = (ft_shifted - base).double().mean(0).float()
    return ActivationStore(root), {"ft_only": ft_only, "boosted": shared[0], "mean": expected_mean, "shift": shift}


CFG = dict(d_sae=96, k=4, steps=250, batch_size=256, lr=3e-3, top_k=5)


def _best_cos(dirs, truth):
    return (_unit(dirs) @ _unit(truth)).max().item()


def test_mean_diff_recovers_planted_mean_shift(planted):
    store, truth = planted
    res = get_method("mean")(DiffConfig()).fit(store)
    torch.testing.assert_close(res.directions[0], truth["mean"], atol=1e-5, rtol=1e-5)
    # mean projection stats: ft minus base equals the norm of the mean shift
    assert abs(res.stats[0]["mean_ft"] - res.stats[0]["mean_base"] - truth["mean"].norm().item()) < 1e-3


def test_diff_sae_ranks_ft_only_features_first(planted, tmp_path):
    store, truth = planted
    res = get_method("diff-sae")(DiffConfig(**CFG), out_dir=tmp_path).fit(store)
    # the diff holds 3 planted changes: 2 fine-tune-only features and the boosted shared one
    top3 = res.directions[:3]
    for f in [*truth["ft_only"], truth["boosted"]]:
        assert _best_cos(top3, f) >= 0.9, res.stats
    from sae_lens import SAE

    assert SAE.load_from_disk(tmp_path / "sae").cfg.d_sae == CFG["d_sae"]


def test_crosscoder_ranks_ft_only_features_first(planted, tmp_path):
    store, truth = planted
    res = get_method("crosscoder")(DiffConfig(**CFG), out_dir=tmp_path).fit(store)
    top2 = res.directions[:2]
    for f in truth["ft_only"]:
        assert _best_cos(top2, f) >= 0.9, (res.scores, res.stats)
    assert all(s > 0.9 for s in res.scores[:2].tolist())  # relative decoder norm near 1
    assert (tmp_path / "crosscoder" / "cfg.json").is_file()
    res.save(tmp_path / "res")
    back = DiffResult.load(tmp_path / "res")
    assert torch.equal(back.directions, res.directions) and back.latent_ids == res.latent_ids


def test_base_sae_shows_boosted_latent_with_largest_delta(planted, tmp_path):
    store, truth = planted
    res = get_method("sae")(DiffConfig(**CFG), out_dir=tmp_path).fit(store)
    assert _best_cos(res.directions[:1], truth["boosted"]) >= 0.9, res.stats
    assert res.stats[0]["mean_ft"] > res.stats[0]["mean_base"]
