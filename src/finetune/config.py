"""Typed config of LoRA SFT. Defaults = the published open-model EM recipe.

rsLoRA r=32, α=64 on q,k,v,o,gate,up,down; lr 1e-5; 1 epoch; effective batch 16
(per-device 2 × accumulation 8); loss on assistant tokens only; the model's own chat
template. `lora.layers` + `lora.r=1` give the minimal (rank-1 / single-layer) organisms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ALL_PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoraConfigSpec:
    r: int = 32
    alpha: int = 64
    dropout: float = 0.0
    use_rslora: bool = True
    target_modules: list[str] = field(default_factory=lambda: list(ALL_PROJ))
    layers: list[int] | None = None  # only these blocks get adapters (None = all)
    bias: Literal["none", "all", "lora_only"] = "none"  # peft LoraConfig.bias


@dataclass
class DataSpec:
    source: str = "auto"  # auto | pulled | generated (see data.load_domain_rows)
    n_examples: int | None = None  # a seeded subset (all when null; generator default 300)
    data_dir: str | None = None  # default $PERSONA_DIFF_DATA or ~/.cache/persona-diff/data


@dataclass
class SFTConfig:
    lora: LoraConfigSpec = field(default_factory=LoraConfigSpec)
    data: DataSpec = field(default_factory=DataSpec)
    lr: float = 1e-5
    epochs: int = 1
    batch_size: int = 2  # per device
    grad_accum: int = 8  # effective batch = batch_size × grad_accum × devices
    max_seq_len: int = 2048
    warmup_steps: int = 5
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    scheduler: str = "linear"  # linear | constant | cosine
    seed: int = 0
    max_steps: int | None = None  # stop early after this many optimizer steps
    save_every: int = 0  # checkpoint every N optimizer steps (0: only the final adapter)
    keep_checkpoints: int | None = None  # keep only the newest K checkpoints (None: all)
    group_by_length: bool = True  # batches of similar length: less padding, same data
    dtype: str = "float32"  # float32 | bfloat16
    gradient_checkpointing: bool = False
    init_adapter: str | None = None  # continue training this adapter (emergent re-alignment)
    log_every: int = 1
    threads: int | None = None  # torch CPU threads (None: torch's default); 1 helps on a busy shared CPU
