"""BatchTopK sparse coder over one or more activation sources: an SAE (1 source) or a
crosscoder (2 sources: [h_base; h_ft]).

Why our own module rather than SAELens's classes:
- SAELens has no crosscoder, and one class for both keeps SAE and crosscoder on the same code;
- it has a *sparse decoder* path beside the dense one: only the active (row, latent) pairs are
  decoded, by gathering their decoder rows (`F.embedding_bag` with per-sample weights), which
  is what makes wide coders fast on GPU (issue 7). Both paths give the same values and
  gradients (tests/test_diffing_coder.py).
SAEs trained here are exported through SAELens's own `BatchTopKTrainingSAE.save_inference_model`
(`persona_diff.diffing.saving`), so `sae_lens.SAE.load_from_disk` opens them.

Shapes: x [batch, n_sources, d_in]; W_enc [n_sources, d_in, d_sae]; W_dec [d_sae, n_sources, d_in].
BatchTopK keeps the k·batch largest values of a_j · Σ_s ‖W_dec[j, s]‖ over the whole batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn


def _compute_dtype(t: Tensor) -> torch.dtype:
    """The autocast dtype when autocast is on for `t`'s device (embedding_bag is not autocast)."""
    kind = t.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else t.dtype


class BatchTopKCoder(nn.Module):
    threshold: Tensor  # a buffer (registered in __init__)

    def __init__(self, d_in: int, d_sae: int, k: int, n_sources: int = 1, seed: int = 0):
        super().__init__()
        self.d_in, self.d_sae, self.k, self.n_sources = d_in, d_sae, k, n_sources
        g = torch.Generator().manual_seed(seed)
        w = torch.randn(d_sae, n_sources, d_in, generator=g)
        w = w / w.flatten(1).norm(dim=1)[:, None, None]  # unit norm over all sources
        self.W_dec = nn.Parameter(w)
        self.W_enc = nn.Parameter(w.permute(1, 2, 0).clone())
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(n_sources, d_in))
        # EMA of the smallest kept activation: the JumpReLU threshold used at inference
        self.register_buffer("threshold", torch.zeros((), dtype=torch.float64))

    def dec_norms(self) -> Float[Tensor, "d_sae n_sources"]:
        return self.W_dec.norm(dim=-1)

    def pre_acts(self, x: Float[Tensor, "batch n_sources d_in"]) -> Float[Tensor, "batch d_sae"]:
        return F.relu(torch.einsum("bsd,sdm->bm", x - self.b_dec, self.W_enc) + self.b_enc)

    def select(self, pre: Float[Tensor, "batch d_sae"]) -> tuple[Tensor, Tensor, Tensor]:
        """BatchTopK: rows, latent ids and values of the k·batch largest scores, rows ascending.

        The size is always k·batch (no data-dependent shapes, so no host sync on a GPU). When
        fewer than k·batch pre-activations are positive some kept values are 0: they decode
        to nothing and receive no gradient (ReLU), but do not count as firing (`vals > 0`).
        """
        score = pre * self.dec_norms().sum(-1)
        n_keep = min(self.k * pre.shape[0], pre.numel())
        top = score.flatten().topk(n_keep, sorted=False).indices
        top, _ = top.sort()  # row-major order: rows ascending (needed by embedding_bag)
        rows, lats = top // self.d_sae, top % self.d_sae
        return rows, lats, pre.flatten()[top]

    def encode(self, x: Float[Tensor, "batch n_sources d_in"]) -> Float[Tensor, "batch d_sae"]:
        pre = self.pre_acts(x)
        rows, lats, vals = self.select(pre)
        acts = torch.zeros_like(pre)
        acts[rows, lats] = vals
        return acts

    def encode_jumprelu(self, x: Float[Tensor, "batch n_sources d_in"]) -> Float[Tensor, "batch d_sae"]:
        """Inference encoding (independent of the batch): keep a_j · Σ‖d_j‖ above the threshold."""
        pre = self.pre_acts(x)
        return pre * (pre * self.dec_norms().sum(-1) > self.threshold.to(pre.dtype))

    def decode_dense(self, acts: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch n_sources d_in"]:
        return torch.einsum("bm,msd->bsd", acts, self.W_dec) + self.b_dec

    def decode_sparse(
        self, rows: Tensor, lats: Tensor, vals: Tensor, batch: int
    ) -> Float[Tensor, "batch n_sources d_in"]:
        """Gather the active decoder rows only: cost ∝ (number active) · d, not batch · d_sae · d."""
        offsets = torch.searchsorted(rows, torch.arange(batch, device=rows.device))
        # under bf16 autocast `vals` is bf16: gather bf16 rows (half the memory traffic)
        dt = _compute_dtype(vals)
        out = F.embedding_bag(lats, self.W_dec.flatten(1).to(dt), offsets, mode="sum", per_sample_weights=vals.to(dt))
        return out.view(batch, self.n_sources, self.d_in) + self.b_dec

    def forward(self, x: Float[Tensor, "batch n_sources d_in"], sparse: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """(reconstruction, kept latent ids, their values) — dense or sparse decoder."""
        recon, lats, vals, _ = self.forward_with_pre(x, sparse)
        return recon, lats, vals

    def forward_with_pre(
        self, x: Float[Tensor, "batch n_sources d_in"], sparse: bool = False
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """As `forward`, plus the pre-activations [batch, d_sae] (for the aux-k loss)."""
        pre = self.pre_acts(x)
        rows, lats, vals = self.select(pre)
        if sparse:
            recon = self.decode_sparse(rows, lats, vals, x.shape[0])
        else:
            acts = torch.zeros_like(pre).index_put((rows, lats), vals)
            recon = self.decode_dense(acts)
        return recon, lats, vals, pre

    def aux_k_loss(
        self, pre: Float[Tensor, "batch d_sae"], resid: Float[Tensor, "batch n_sources d_in"], dead: Tensor, k_aux: int
    ) -> Tensor:
        """Aux-k loss (Gao et al. 2024): ‖e − ê‖² averaged over the batch, where e is the
        (detached) residual error and ê decodes the top-`k_aux` *dead* latents of each row
        (decoder rows only, no bias). Zero when no latent is dead.

        Sync-free: live latents are masked to 0 (pre is ReLU'd, so ≥ 0) rather than dropped,
        so with fewer than `k_aux` dead latents the extra picks decode to nothing."""
        if k_aux <= 0:
            return pre.new_zeros(())
        vals, idx = pre.masked_fill(~dead, 0).topk(min(k_aux, pre.shape[-1]), dim=-1)
        dt = _compute_dtype(vals)
        rec = F.embedding_bag(idx, self.W_dec.flatten(1).to(dt), mode="sum", per_sample_weights=vals.to(dt))
        diff = resid.detach().flatten(1).to(rec.dtype) - rec
        loss = diff.to(torch.promote_types(diff.dtype, torch.float32)).pow(2).sum(-1).mean()
        return loss * dead.any()

    @torch.no_grad()
    def update_threshold(self, lats: Tensor, vals: Tensor, lr: float = 0.01) -> None:
        """EMA towards the smallest kept score that fired (vals > 0); unchanged if none fired."""
        if len(vals):
            score = (vals * self.dec_norms().sum(-1)[lats]).masked_fill(vals <= 0, float("inf"))
            low = score.min().double()
            self.threshold.copy_(torch.where(low.isfinite(), (1 - lr) * self.threshold + lr * low, self.threshold))

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        """Unit-norm decoder rows (SAE only: the crosscoder's per-source norms are its signal)."""
        self.W_dec.div_(self.W_dec.flatten(1).norm(dim=1).clamp_min(1e-8)[:, None, None])
