"""A minimal training loop for `BatchTopKCoder` (SAE or crosscoder).

Why not `sae_lens.SAETrainer`: it has no crosscoder, and on 2 CPU cores a plain loop measured
faster at equal reconstruction (bench/sae_train.py, BENCHMARKS.md). SAEs trained here are
still saved in SAELens's format (`saving.save_sae_lens`).

Activations are normalised to a fixed RMS before training: each source is multiplied by
`scale = sqrt(d_in) / mean ‖x‖` (estimated on the first batches), so mean ‖x‖² ≈ d_in and
hyper-parameters carry over between models and layers. The scale is stored with the coder
and folded into the weights on export.

A non-finite loss stops training with the step and the last good checkpoint (written every
`checkpoint_every` steps to `<out>/checkpoint`).

On a GPU a step never waits for the host: BatchTopK keeps a fixed k·batch entries, firing
counts and the FVU tail are accumulated on the device, and the first non-finite step is
recorded on the device and checked every `check_every` steps, before every checkpoint and at
the end (so no non-finite weights are ever saved). Adam is the fused CUDA kernel there.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from persona_diff.diffing.coder import BatchTopKCoder
from persona_diff.diffing.config import CoderConfig
from persona_diff.errors import PersonaDiffError
from persona_diff.log import get_logger, progress
from persona_diff.models.device import resolve_device

log = get_logger(__name__)


class TrainingDivergedError(PersonaDiffError):
    """The loss became NaN/inf during SAE or crosscoder training."""


CoderTrainConfig = CoderConfig  # the name this module used before the settings moved to `diffing.config`


@dataclass
class TrainStats:
    steps: int
    tokens: int
    seconds: float
    fvu: float  # fraction of variance unexplained on the last 10% of steps
    dead_fraction: float  # latents that never fired in the last 10% of steps

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)


def estimate_scale(batches: list[torch.Tensor]) -> torch.Tensor:
    """Per-source scale [n_sources] making the mean norm sqrt(d_in)."""
    x = torch.cat(batches)  # [n, S, d]
    norms = x.norm(dim=-1).mean(0).clamp_min(1e-8)
    return math.sqrt(x.shape[-1]) / norms


def fvu(x: torch.Tensor, recon: torch.Tensor) -> float:
    resid = (x - recon).pow(2).sum()
    total = (x - x.mean(0, keepdim=True)).pow(2).sum()
    return float(resid / total.clamp_min(1e-12))


def train_coder(
    batches: Callable[[int], Iterator[torch.Tensor]],
    d_in: int,
    n_sources: int,
    cfg: CoderConfig,
    out_dir: str | Path | None = None,
    show_progress: bool = True,
    normalise_decoder: bool | None = None,
) -> tuple[BatchTopKCoder, torch.Tensor, TrainStats]:
    """Train on `batches(epoch)` → iterator of [b, n_sources, d_in] (re-called each epoch).

    Returns the coder (in normalised units, on the CPU), the scale per source, and statistics.
    Training runs on `cfg.device`; batches are moved there (non-blocking from pinned memory).
    """
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    use_amp = cfg.autocast and device.type == "cuda"
    normalise_decoder = n_sources == 1 if normalise_decoder is None else normalise_decoder
    coder = BatchTopKCoder(d_in, cfg.d_sae, cfg.k, n_sources, seed=cfg.seed)
    first = []
    it0 = batches(0)
    for _ in range(cfg.norm_batches):
        try:
            first.append(next(it0))
        except StopIteration:
            break
    if not first:
        raise PersonaDiffError("no activations to train on; capture more tokens (the store is empty)")
    scale = estimate_scale(first)
    with torch.no_grad():  # start the decoder bias at the data mean
        coder.b_dec.copy_((torch.cat(first) * scale[:, None]).mean(0))
    coder.to(device)
    scale_dev = scale.to(device)
    opt = torch.optim.Adam(coder.parameters(), lr=cfg.lr, betas=(0.9, 0.999), fused=device.type == "cuda")
    ckpt = Path(out_dir) / "checkpoint" if out_dir else None
    last_good: int | None = None

    def stream() -> Iterator[torch.Tensor]:
        epoch = 0
        while True:
            n = 0
            for b in batches(epoch):
                n += 1
                yield b
            if n == 0:
                return
            epoch += 1

    def check_finite() -> None:
        bad = int(first_bad)
        if bad >= 0:
            where = f"{ckpt} (step {last_good})" if last_good is not None and ckpt else "none yet"
            raise TrainingDivergedError(
                f"training loss became non-finite at step {bad}; last good checkpoint: {where}. "
                "Lower the learning rate, check the activations for NaN/inf, or resume from the checkpoint"
            )

    tail_from = int(cfg.steps * 0.9)
    # device-side accumulators: nothing in the loop below waits for the GPU
    resid = torch.zeros((), dtype=torch.float64, device=device)
    total = torch.zeros((), dtype=torch.float64, device=device)
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    fired = torch.zeros(cfg.d_sae, dtype=torch.bool, device=device)
    since_fired = torch.zeros(cfg.d_sae, dtype=torch.long, device=device)  # tokens since last firing
    tokens = 0
    t0 = time.perf_counter()
    data = stream()
    for step in progress(range(cfg.steps), "train", disable=not show_progress or None):
        x = next(data).to(device, non_blocking=True).float() * scale_dev[:, None]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            recon, lats, vals, pre = coder.forward_with_pre(x, sparse=cfg.sparse_decoder)
            recon = recon.float()
            loss = (recon - x).pow(2).sum(-1).sum(-1).mean()
            if cfg.aux_k > 0:
                dead = since_fired >= cfg.dead_tokens
                aux = coder.aux_k_loss(pre, x - recon, dead, cfg.aux_k)
                loss = loss + cfg.aux_coef * aux
        first_bad = torch.where((first_bad < 0) & ~loss.detach().isfinite(), step, first_bad)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        coder.update_threshold(lats.detach(), vals.detach())
        if normalise_decoder:
            coder.normalise_decoder()
        tokens += x.shape[0]
        with torch.no_grad():
            fires = torch.zeros(cfg.d_sae, dtype=torch.long, device=device).index_add_(0, lats, (vals > 0).long())
            since_fired = (since_fired + x.shape[0]).masked_fill(fires > 0, 0)
            if step >= tail_from:
                resid += (recon.detach() - x).pow(2).sum().double()
                total += (x - x.mean(0, keepdim=True)).pow(2).sum().double()
                fired |= fires > 0
        if cfg.check_every and (step + 1) % cfg.check_every == 0:
            check_finite()
        if ckpt and cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0:
            from persona_diff.diffing.saving import save_coder

            check_finite()
            save_coder(coder, scale, ckpt, extra={"step": step + 1})
            last_good = step + 1
    check_finite()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    coder.cpu()
    stats = TrainStats(
        cfg.steps, tokens, seconds, float(resid / total.clamp_min(1e-12)), 1 - float(fired.float().mean())
    )
    log.info(
        "trained %s: %.0f tok/s, FVU %.3f, dead %.1f%%",
        "SAE" if n_sources == 1 else "crosscoder",
        stats.tokens_per_s,
        stats.fvu,
        100 * stats.dead_fraction,
    )
    return coder, scale, stats
