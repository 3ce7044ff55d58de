"""LoRA SFT with the published EM recipe: config, loss masking, checkpoints, sweeps."""

from persona_diff.finetune.config import DataSpec, LoraConfigSpec, SFTConfig
from persona_diff.finetune.errors import CheckpointError, FinetuneError, ResumeMismatchError
from persona_diff.finetune.masking import encode_chat
from persona_diff.finetune.trainer import LoraSFTTrainer, train_lora

__all__ = [
    "CheckpointError",
    "DataSpec",
    "FinetuneError",
    "LoraConfigSpec",
    "LoraSFTTrainer",
    "ResumeMismatchError",
    "SFTConfig",
    "encode_chat",
    "train_lora",
]
from persona_diff.finetune.sweep import finetune_domain, finetune_sweep  # noqa: E402

__all__ += ["finetune_domain", "finetune_sweep"]
