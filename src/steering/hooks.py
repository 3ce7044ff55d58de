"""`steer(...)`: add α·v to, or project a direction out of, the residual stream.

Why plain PyTorch forward hooks and not nnsight here: steering must act inside HF
``generate`` with its KV cache, where every decoding step is a separate forward of one new
token. A forward hook on the block modules (found by `persona_diff.models.get_blocks`, so
PEFT wrappers work too) sees each of those calls, costs nothing when the model is not
steered, needs no source-compiled trace body, and composes with any caller (generation,
teacher-forced scoring, the judges, an nnsight trace of the same module). nnsight remains
the tool for *reading* activations; for a persistent intervention across a generate loop a
hook is the smaller and more predictable mechanism. Hooks are always removed on exit,
including when the wrapped code raises.

Positions:
- ``"all"``: every position of every forward call;
- ``"prompt"``: absolute positions ``< prompt_len``;
- ``"answer"``: absolute positions ``>= prompt_len`` (the newly generated tokens).

The absolute position of a token is the number of tokens already in the KV cache plus its
index in the current call, read from the KV cache (under any of its names) in a pre-hook on block 0. When
``prompt_len`` is not given it is taken from the first forward call of each new sequence
(empty cache): in ``generate`` that call is exactly the (left-padded) prompt. For a single
teacher-forced forward over prompt+answer pass ``prompt_len`` explicitly.

Modes (layer convention: block ℓ's output, HF ``hidden_states[ℓ+1]``):
- ``"add"``: ``h ← h + α·v`` (v as given, not normalised);
- ``"ablate"``: ``h ← h − α·P h`` where P projects onto span(v) (a [D] vector or the rows
  of a [k, D] matrix, orthonormalised); α = 1 removes the component entirely, α = 0 does
  nothing, values in between are partial ablation.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import nn

from persona_diff.errors import PersonaDiffError
from persona_diff.models.kv_cache import cache_from_kwargs
from persona_diff.models.layers import block_output, get_blocks, resolve_layers

Positions = Literal["all", "prompt", "answer"]
Mode = Literal["add", "ablate"]
_POSITIONS = ("all", "prompt", "answer")
_MODES = ("add", "ablate")


class SteeringError(PersonaDiffError):
    """A steering request does not fit the model (shape, layer, mode)."""


@dataclass
class SteeringState:
    """What the hooks saw: useful for checking that they ran."""

    layers: list[int]
    mode: str
    positions: str
    alpha: float
    prompt_len: int | None = None
    offset: int = 0  # tokens already in the cache at the current call
    calls: dict[int, int] = field(default_factory=dict)  # layer -> hook calls
    steered_tokens: dict[int, int] = field(default_factory=dict)  # layer -> positions changed


def _unwrap(model: Any) -> nn.Module:
    """Accept an nn.Module or a LoadedModel-like object with `.model`."""
    return model if isinstance(model, nn.Module) else model.model


def _per_layer(direction: Any, layers: list[int], d_model: int) -> dict[int, torch.Tensor]:
    if isinstance(direction, Mapping):
        missing = [ly for ly in layers if ly not in direction]
        if missing:
            raise SteeringError(
                f"direction dict has no entry for layer(s) {missing}; give one vector per steered layer"
            )
        out = {ly: torch.as_tensor(direction[ly]) for ly in layers}
    else:
        v = torch.as_tensor(direction)
        out = {ly: v for ly in layers}
    for ly, v in out.items():
        if v.shape[-1] != d_model or v.dim() not in (1, 2):
            raise SteeringError(
                f"direction for layer {ly} has shape {tuple(v.shape)}; expected [{d_model}] "
                f"or [k, {d_model}] for this model (d_model={d_model})"
            )
    return out


def _basis(v: torch.Tensor) -> torch.Tensor:
    """Orthonormal rows spanning v ([D] or [k, D]) — float64 QR for accuracy."""
    m = v.reshape(-1, v.shape[-1]).to(torch.float64)
    norms = m.norm(dim=-1)
    if bool((norms == 0).any()):
        raise SteeringError("cannot ablate a zero direction; pass a non-zero vector")
    q, r = torch.linalg.qr(m.T)
    keep = r.diagonal().abs() > 1e-10 * norms.max()
    return q[:, keep].T.contiguous()  # [k', D]


def _position_mask(state: SteeringState, seq: int, device: torch.device) -> torch.Tensor | None:
    if state.positions == "all":
        return None
    pos = torch.arange(seq, device=device) + state.offset
    if state.prompt_len is None:
        raise SteeringError(
            f"positions={state.positions!r} needs the prompt length: pass prompt_len=..., or enter "
            "steer() before the forward call that reads the prompt (an empty KV cache)"
        )
    return pos < state.prompt_len if state.positions == "prompt" else pos >= state.prompt_len


def _with_hidden(output: Any, hidden: torch.Tensor) -> Any:
    if isinstance(output, torch.Tensor):
        return hidden
    if isinstance(output, tuple):
        return (hidden, *output[1:])
    if isinstance(output, list):
        return [hidden, *output[1:]]
    raise TypeError(f"unexpected block output type {type(output).__name__}")


@contextmanager
def steer(
    model: Any,
    direction: Float[torch.Tensor, " d_model"] | Float[torch.Tensor, "k d_model"] | Mapping[int, torch.Tensor],
    layers: int | list[int],
    alpha: float = 1.0,
    positions: Positions = "all",
    mode: Mode = "add",
    prompt_len: int | None = None,
) -> Iterator[SteeringState]:
    """Steer `model` (an nn.Module or a LoadedModel) inside the `with` block.

    `direction` is one vector for every layer, or a mapping layer → vector. See the module
    docstring for `positions` and `mode`. Yields a `SteeringState` that counts hook calls.
    """
    if positions not in _POSITIONS:
        raise SteeringError(f"positions={positions!r} is not valid; use one of {', '.join(_POSITIONS)}")
    if mode not in _MODES:
        raise SteeringError(f"mode={mode!r} is not valid; use one of {', '.join(_MODES)}")
    module = _unwrap(model)
    blocks = get_blocks(module)
    layer_ids = resolve_layers(layers, len(blocks))
    d_model = int(getattr(getattr(module, "config", None), "hidden_size", 0) or 0)
    if not d_model:
        d_model = int(
            torch.as_tensor(direction if not isinstance(direction, Mapping) else next(iter(direction.values()))).shape[
                -1
            ]
        )
    vecs = _per_layer(direction, layer_ids, d_model)
    if mode == "add" and any(v.dim() != 1 for v in vecs.values()):
        raise SteeringError("mode='add' needs one [d_model] vector per layer; [k, d_model] is for mode='ablate'")
    param = next(module.parameters())
    if mode == "add":
        prepared = {ly: (float(alpha) * v.to(torch.float64)).to(param.device, param.dtype) for ly, v in vecs.items()}
    else:
        prepared = {ly: _basis(v).to(param.device, param.dtype) for ly, v in vecs.items()}

    state = SteeringState(list(layer_ids), mode, positions, float(alpha), prompt_len)

    def pre_hook(_mod: nn.Module, args: tuple, kwargs: dict) -> None:
        hidden = args[0] if args else kwargs.get("hidden_states")
        cache = cache_from_kwargs(kwargs)
        past = 0
        if cache is not None and hasattr(cache, "get_seq_length"):
            past = int(cache.get_seq_length(0))
        state.offset = past
        if past == 0 and prompt_len is None and hidden is not None:
            state.prompt_len = int(hidden.shape[1])

    def make_hook(ly: int):
        vec = prepared[ly]

        def hook(_mod: nn.Module, _args: tuple, output: Any) -> Any:
            h = block_output(output)
            state.calls[ly] = state.calls.get(ly, 0) + 1
            mask = _position_mask(state, h.shape[1], h.device)
            if mask is not None and not bool(mask.any()):
                return None
            if mode == "add":
                new = h + vec
            else:
                coef = h @ vec.T  # [B, T, k]
                new = h - float(alpha) * (coef @ vec)
            if mask is not None:
                new = torch.where(mask[None, :, None], new, h)
            n = int(mask.sum()) if mask is not None else h.shape[1]
            state.steered_tokens[ly] = state.steered_tokens.get(ly, 0) + n * h.shape[0]
            return _with_hidden(output, new)

        return hook

    handles = []
    try:
        if positions != "all":
            handles.append(blocks[0].register_forward_pre_hook(pre_hook, with_kwargs=True))
        for ly in layer_ids:
            handles.append(blocks[ly].register_forward_hook(make_hook(ly)))
        yield state
    finally:
        for h in handles:
            h.remove()


def random_like(direction: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A random direction with the same shape and (row) norm as `direction` (the control)."""
    gen = torch.Generator().manual_seed(seed)
    r = torch.randn(direction.shape, generator=gen, dtype=torch.float64)
    norms = direction.to(torch.float64).norm(dim=-1, keepdim=True)
    return (r / r.norm(dim=-1, keepdim=True) * norms).to(direction.dtype)
