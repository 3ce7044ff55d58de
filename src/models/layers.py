"""One place that knows where the residual-stream blocks live.

Convention (stored with every saved activation or direction): **block i's output is
HF `output_hidden_states[i + 1]`**; `hidden_states[0]` is the embedding output. One caveat:
HF applies the final norm to the last entry, so for the last block `hidden_states[-1]` is
`norm(block output)`, while persona-diff always reads the raw block output. Layer indices
are 0-based block indices; negative indices count from the end.

Works for Llama, Qwen2, Gemma/Gemma2, Mistral and Phi-3 style models (`model.model.layers`),
GPT-2 style (`transformer.h`), and for any of these under a PEFT wrapper
(`base_model.model.model.layers`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from persona_diff.errors import LayerIndexError

LAYER_CONVENTION = (
    "block_output: layer i = HF hidden_states[i+1] (raw block output; the last hidden_states entry is post-norm)"
)

_CANDIDATE_PATHS = (
    "base_model.model.model.layers",  # PEFT around a *ForCausalLM
    "base_model.model.transformer.h",
    "model.layers",  # Llama/Qwen2/Gemma *ForCausalLM
    "model.language_model.layers",  # multimodal wrappers (Gemma3, ...)
    "transformer.h",  # GPT-2 style
    "layers",  # a bare decoder
)


def _getattr_path(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def blocks_path(model: nn.Module) -> str:
    """The dotted attribute path of the decoder block list, e.g. ``model.layers``."""
    for path in _CANDIDATE_PATHS:
        try:
            obj = _getattr_path(model, path)
        except AttributeError:
            continue
        if isinstance(obj, nn.ModuleList) and len(obj) > 0:
            return path
    raise TypeError(f"cannot find decoder blocks in {type(model).__name__}; tried {', '.join(_CANDIDATE_PATHS)}")


def get_blocks(model: nn.Module) -> nn.ModuleList:
    return _getattr_path(model, blocks_path(model))


def num_layers(model: nn.Module) -> int:
    return len(get_blocks(model))


def resolve_layers(layers: list[int] | int, n_layers: int) -> list[int]:
    """Normalise layer indices (negatives from the end) and check their range."""
    items = [layers] if isinstance(layers, int) else list(layers)
    out = []
    for layer in items:
        idx = layer + n_layers if layer < 0 else layer
        if not 0 <= idx < n_layers:
            raise LayerIndexError(
                f"layer {layer} is out of range: the model has {n_layers} blocks "
                f"(valid: 0..{n_layers - 1}, or -1..-{n_layers})"
            )
        out.append(idx)
    return sorted(set(out))


def block_output(output: Any) -> torch.Tensor:
    """The residual-stream tensor of a block's output, whether a tensor or a tuple."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"unexpected block output type {type(output).__name__}")
