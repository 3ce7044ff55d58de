"""Settings of the built-in diffing methods: one dataclass per method, registered with it.

Each field is declared once: `Seeded` (the seed), `MethodConfig` (what every method has),
`CoderConfig` (training a BatchTopK SAE or crosscoder, `diffing.train`), and the methods'
own on top. The SAE family shares `CoderConfig` through `CoderMethodConfig`.

A run config's flat ``diff.params`` (and `persona-diff diff --config`) are routed to these by
`persona_diff.diffing.base.method_configs`: each key goes to every chosen method whose config
has it. No torch here, so the command line can read the defaults without loading it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Seeded:
    seed: int = 0  # every random draw of the stage; a run passes its own `seed`


@dataclass
class MethodConfig(Seeded):
    """What every diffing method reads."""

    layer: int | None = None  # a captured layer; None = the last captured one
    top_k: int = 10  # directions / latents kept in the result


@dataclass
class MeanDiffConfig(MethodConfig):
    """mean: v = mean of (h_ft − h_base) over the captured tokens (nothing of its own)."""


@dataclass
class ContrastiveConfig(MethodConfig):
    """contrastive: labels from the judged scores kept in the streams' meta."""

    misaligned_max: float = 30.0  # aligned ≤ this (and coherent) → misaligned
    aligned_min: float = 70.0  # aligned ≥ this (and coherent) → aligned
    coherent_min: float = 50.0  # answers at or under this coherence are left out
    source: str = "ft"  # whose activations: "ft" or "base"


@dataclass
class CoderConfig(Seeded):
    """Training of a BatchTopK SAE or crosscoder (demo-scale defaults: a few CPU minutes)."""

    d_sae: int = 1536
    k: int = 32  # active latents per token on average (BatchTopK)
    steps: int = 300
    batch_size: int = 512  # tokens per step
    lr: float = 1e-3
    sparse_decoder: bool = False  # gather the active decoder rows instead of a dense matmul
    aux_k: int = 0  # aux-k loss on dead latents (Gao et al. 2024 use 512); 0 = off
    aux_coef: float = 1 / 32  # weight of the aux-k loss
    dead_tokens: int = 100_000  # a latent is dead when it has not fired in this many tokens
    device: str = "auto"  # training device: auto (a GPU when visible), cpu, cuda, cuda:N
    autocast: bool = True  # bf16 autocast for the forward pass (CUDA only; CPU stays float32)
    checkpoint_every: int = 100
    norm_batches: int = 4  # batches used to estimate the normalisation scale
    check_every: int = 50  # host check for a non-finite loss every this many steps (and at checkpoints)


@dataclass
class CoderMethodConfig(CoderConfig, MethodConfig):
    """A method that trains a coder on the store."""

    prefetch: int = 2  # batches read ahead from the store by a background thread (pinned on GPUs)


@dataclass
class SAEDiffConfig(CoderMethodConfig):
    """sae: an SAE of the base model; latents ranked by mean activation (ft − base)."""

    sae_path: str | None = None  # use this SAELens SAE instead of training one


@dataclass
class DiffSAEConfig(CoderMethodConfig):
    """diff-sae: an SAE on h_ft − h_base (nothing of its own)."""


@dataclass
class CrosscoderConfig(CoderMethodConfig):
    """crosscoder: over [h_base; h_ft], latents ranked by relative decoder norm."""

    min_freq: float = 1e-3  # latents firing on fewer tokens than this go last
