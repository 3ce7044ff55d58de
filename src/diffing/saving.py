"""Saving coders: SAEs in SAELens's format, crosscoders in the same folder convention.

- `save_sae_lens`: copies a 1-source coder into a `sae_lens.BatchTopKTrainingSAE`, folds the
  normalisation scale into the weights (so the saved SAE works on raw activations) and calls
  SAELens's own `save_inference_model`; `sae_lens.SAE.load_from_disk` then opens it as a
  JumpReLU SAE. Going through SAELens's writer (not writing its files by hand) keeps the
  format right across SAELens versions. Its metadata says what it reads (`sae_metadata`):
  ``hook_name`` ``blocks.{L}.hook_resid_post`` (TransformerLens's name for block L's output,
  the project's layer L), ``model_name`` (the model spec the activations came from), the layer
  and its convention, and for a diff-SAE the input (fine-tuned minus base, same tokens).
- `save_coder` / `load_coder`: cfg.json + sae_weights.safetensors for any coder (the
  crosscoder, checkpoints). SAELens has no crosscoder architecture, so these are ours.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from persona_diff.diffing.coder import BatchTopKCoder
from persona_diff.errors import PersonaDiffError
from persona_diff.fileio import read_artifact
from persona_diff.models.layers import LAYER_CONVENTION

ARCH = "persona_diff_batchtopk_coder"


def save_coder(
    coder: BatchTopKCoder, scale: torch.Tensor, out: str | Path, extra: dict[str, Any] | None = None
) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous() for k, v in coder.state_dict().items()}
    tensors["scale"] = scale.detach().float().contiguous()
    save_file(tensors, str(out / "sae_weights.safetensors"))
    cfg = {
        "architecture": ARCH,
        "d_in": coder.d_in,
        "d_sae": coder.d_sae,
        "k": coder.k,
        "n_sources": coder.n_sources,
        "dtype": "float32",
        **(extra or {}),
    }
    (out / "cfg.json").write_text(json.dumps(cfg, indent=1))
    return out


def load_coder(path: str | Path) -> tuple[BatchTopKCoder, torch.Tensor, dict[str, Any]]:
    path = Path(path)
    cfg, tensors = read_artifact(
        path,
        "cfg.json",
        "sae_weights.safetensors",
        "it is not a saved coder: point to a folder written by `persona-diff diff`",
    )
    if cfg.get("architecture") != ARCH:
        raise PersonaDiffError(
            f"{path} holds a {cfg.get('architecture')!r} model, not a persona-diff coder; "
            "open SAELens SAEs with sae_lens.SAE.load_from_disk"
        )
    coder = BatchTopKCoder(cfg["d_in"], cfg["d_sae"], cfg["k"], cfg["n_sources"])
    scale = tensors.pop("scale")
    coder.load_state_dict(tensors)
    return coder, scale, cfg


def hook_name(layer: int) -> str:
    """TransformerLens's hook name for the output of block `layer` (the project's layer)."""
    return f"blocks.{int(layer)}.hook_resid_post"


def sae_metadata(layer: int, model_name: str | None = None, finetuned: str | None = None) -> dict[str, Any]:
    """SAELens metadata of an SAE on block `layer`'s output of `model_name`; with `finetuned`,
    a diff-SAE whose input is h_finetuned − h_base at the same tokens."""
    meta: dict[str, Any] = {"hook_name": hook_name(layer), "layer": int(layer), "layer_convention": LAYER_CONVENTION}
    if model_name:
        meta["model_name"] = model_name
    if finetuned:
        meta.update(
            {
                "finetuned_model_name": finetuned,
                "input": f"difference of residual streams at {hook_name(layer)}: finetuned minus base (model_name), same tokens",
            }
        )
    return meta


def save_sae_lens(
    coder: BatchTopKCoder, scale: torch.Tensor, out: str | Path, metadata: dict[str, Any] | None = None
) -> Path:
    """Export a 1-source coder so that `sae_lens.SAE.load_from_disk(out)` opens it.

    `metadata` (e.g. `sae_metadata(layer, model_name)`) goes into the SAE's cfg metadata; a
    ``hook_name`` must be a TransformerLens-style hook (``blocks.{L}.hook_resid_post``).
    """
    from sae_lens import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig

    if coder.n_sources != 1:
        raise PersonaDiffError("only a 1-source coder (an SAE) can be saved in SAELens format; use save_coder")
    # rescale_acts_by_decoder_norm=False: our SAE decoder rows are unit norm and TopK selects on
    # raw activations; SAELens 6.54 defaults it to True, which would fold norms on save.
    cfg = BatchTopKTrainingSAEConfig(
        d_in=coder.d_in,
        d_sae=coder.d_sae,
        k=coder.k,
        apply_b_dec_to_input=True,
        rescale_acts_by_decoder_norm=False,
        normalize_activations="none",
    )
    name = (metadata or {}).get("hook_name")
    if name is not None and not re.fullmatch(r"blocks\.\d+\.hook_\w+", str(name)):
        raise PersonaDiffError(
            f"hook_name {name!r} does not say what the SAE reads; use sae_metadata(layer, model) "
            "(blocks.{L}.hook_resid_post)"
        )
    for key, val in (metadata or {}).items():
        setattr(cfg.metadata, key, val)
    sae = BatchTopKTrainingSAE(cfg)
    with torch.no_grad():
        sae.W_enc.copy_(coder.W_enc[0])
        sae.b_enc.copy_(coder.b_enc)
        sae.W_dec.copy_(coder.W_dec[:, 0])
        sae.b_dec.copy_(coder.b_dec[0])
        sae.topk_threshold.copy_(coder.threshold)
    sae.fold_activation_norm_scaling_factor(float(scale[0]))
    out = Path(out)
    sae.save_inference_model(out)
    return out
