"""SAE training speed and reconstruction: our BatchTopK loop (dense and sparse decoder) vs
SAELens's own `SAETrainer`, same data, width, k, batch, steps and learning rate, in one run.

Data: synthetic activations from a planted sparse dictionary (d=576 like SmolLM2, 4x-width
features, ~24 active per token, heavy-tailed magnitudes, a common offset), so the run needs no
model and both trainers see identical batches. FVU is measured on a held-out set with each
SAE's own BatchTopK encoding, in raw activation units.

    python bench/sae_train.py [--steps 60] [--width 2304] [--k 32] [--batch 1024] [--threads 1]
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch


def make_data(n: int, d: int, n_feat: int, seed: int = 0, offset_scale: float = 2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n_feat, d, generator=g)
    feats /= feats.norm(dim=-1, keepdim=True)
    offset = torch.randn(d, generator=g) * offset_scale  # drawn before anything that depends on n
    p = 24 / n_feat
    on = torch.rand(n, n_feat, generator=g) < p
    mag = torch.empty(n, n_feat).exponential_(1.0, generator=g) * 3
    return (on * mag) @ feats + offset + 0.05 * torch.randn(n, d, generator=g)


def fvu(x: torch.Tensor, r: torch.Tensor) -> float:
    return float((x - r).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


def run_ours(data, held, args, sparse: bool):
    from persona_diff.diffing.train import CoderTrainConfig, train_coder

    def batches(epoch):
        g = torch.Generator().manual_seed(epoch)
        perm = torch.randperm(len(data), generator=g)
        return iter(data[perm][:, None].split(args.batch))

    cfg = CoderTrainConfig(
        d_sae=args.width,
        k=args.k,
        steps=args.steps,
        batch_size=args.batch,
        lr=args.lr,
        sparse_decoder=sparse,
        checkpoint_every=0,
    )
    t0 = time.perf_counter()
    coder, scale, stats = train_coder(batches, data.shape[1], 1, cfg, show_progress=False)
    secs = time.perf_counter() - t0
    with torch.no_grad():
        recon, _, _ = coder(held[:, None] * scale[:, None])
    return args.steps * args.batch / secs, fvu(held, recon[:, 0] / scale[0])


def run_saelens(data, held, args):
    from sae_lens import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    def provider():
        for epoch in itertools.count():
            g = torch.Generator().manual_seed(epoch)
            perm = torch.randperm(len(data), generator=g)
            yield from data[perm].split(args.batch)

    sae = BatchTopKTrainingSAE(
        BatchTopKTrainingSAEConfig(
            d_in=data.shape[1], d_sae=args.width, k=args.k, normalize_activations="expected_average_only_in"
        )
    )
    tcfg = SAETrainerConfig(
        total_training_samples=args.steps * args.batch,
        train_batch_size_samples=args.batch,
        lr=args.lr,
        lr_end=args.lr,
        n_batches_for_norm_estimate=4,
        logger=LoggingConfig(log_to_wandb=False),
    )
    trainer = SAETrainer(tcfg, sae, provider())
    t0 = time.perf_counter()
    trainer.fit()
    secs = time.perf_counter() - t0
    s = trainer.activation_scaler.scaling_factor or 1.0
    with torch.no_grad():
        recon = sae.decode(sae.encode(held * s)) / s
    return args.steps * args.batch / secs, fvu(held, recon)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--width", type=int, default=2304)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--offset", type=float, default=2.0, help="scale of the constant offset in the data")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = make_data(16384, 576, 2304, offset_scale=args.offset)
    held = make_data(18432, 576, 2304, offset_scale=args.offset)[16384:]
    rows = []
    rows.append(("SAELens SAETrainer (BatchTopK)", *run_saelens(data, held, args)))
    rows.append(("ours, dense decoder", *run_ours(data, held, args, sparse=False)))
    rows.append(("ours, sparse decoder", *run_ours(data, held, args, sparse=True)))
    ref = rows[0][1]
    print(
        f"d=576 width={args.width} k={args.k} batch={args.batch} steps={args.steps} threads={args.threads} offset={args.offset}"
    )
    print(f"{'trainer':34s} {'tok/s':>9s} {'÷SAELens':>9s} {'FVU':>7s}")
    for name, tps, f in rows:
        print(f"{name:34s} {tps:9.0f} {tps / ref:9.2f} {f:7.3f}")


if __name__ == "__main__":
    main()
