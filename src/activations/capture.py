"""nnsight capture of residual-stream activations from both models of a pair.

The same token streams go through the base and the fine-tuned model; block outputs at the
requested layers are kept at the requested positions (BOS/first token and padding dropped)
and written to an `ActivationStore` shard by shard, so memory is bounded by a few shards
(the one being filled and, with `write_ahead=1`, up to two in the writer thread) whatever
the number of tokens. With `early_stop` the forward pass halts right after the last
requested block (`tracer.stop()`), so no compute is spent above it.

The GPU is kept busy: the kept rows are gathered on the device (`index_select` with an index
computed on the CPU, no host sync), cast to the store dtype there and copied into pinned host
memory without blocking; the store's writer thread waits for a CUDA event before it reads
them, then saves, hashes and indexes the shard while the next batches run. On CPU the same
code gives the same values.

nnsight compiles `with model.trace()` bodies from this file's source, so the trace stays here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from nnsight import NNsight

from persona_diff.activations.store import ActivationStore, StoreWriter
from persona_diff.activations.tokens import TokenStream, check_positions, position_mask
from persona_diff.errors import PersonaDiffError
from persona_diff.log import get_logger, progress
from persona_diff.models import (
    LAYER_CONVENTION,
    CheckpointPair,
    block_output,
    blocks_path,
    resolve_layers,
)
from persona_diff.models.loading import DTYPES

log = get_logger(__name__)


def _envoy_path(root: Any, path: str) -> Any:
    for part in path.split("."):
        root = getattr(root, part)
    return root


def trace_blocks(
    wrapped: NNsight,
    path: str,
    layers: Sequence[int],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    early_stop: bool = True,
) -> list[torch.Tensor]:
    """Block outputs [batch, pos, d] at `layers` (ascending) for one batch, via nnsight."""
    saved: list[Any] = []
    with wrapped.trace(input_ids=input_ids, attention_mask=attention_mask) as tracer:
        blocks = _envoy_path(wrapped, path)
        for layer in layers:
            saved.append(blocks[layer].output.save())
        if early_stop:
            tracer.stop()
    return [block_output(s).detach() for s in saved]


def input_device(model: torch.nn.Module) -> torch.device:
    """Where the token ids must go: the input embedding's device. With `device_map="auto"`
    the layers are spread over several GPUs (accelerate's hooks move activations between
    them), so the first parameter is not necessarily where inputs belong."""
    try:
        emb = model.get_input_embeddings()  # type: ignore[operator]
        if emb is not None:
            return emb.weight.device
    except (AttributeError, NotImplementedError):
        pass
    return next(model.parameters()).device


def pad_batch(streams: Sequence[TokenStream], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right padding: real tokens keep positions 0..n-1, exactly as in an unpadded run."""
    width = max(len(s) for s in streams)
    ids = torch.full((len(streams), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(streams), width), dtype=torch.long)
    for i, s in enumerate(streams):
        ids[i, : len(s)] = torch.tensor(s.input_ids)
        mask[i, : len(s)] = 1
    return ids, mask


def streams_fingerprint(streams: Sequence[TokenStream]) -> str:
    h = hashlib.sha256()
    for s in streams:
        h.update(json.dumps([s.input_ids, s.prompt_len]).encode())
    return h.hexdigest()[:16]


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host->device copy; to CUDA from pinned memory without blocking (a pageable copy would
    wait for the whole stream, i.e. for the forward pass still running)."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def rows_to_host(h: torch.Tensor, rows: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Rows `rows` (on h's device) of h [batch, pos, d] flattened to [batch*pos, d], cast to
    `dtype` on the device, as a host tensor [n, d]. From CUDA the copy goes into pinned memory
    without blocking: record an event after it and synchronize it before reading the result."""
    sel = h.flatten(0, 1).index_select(0, rows).to(dtype)
    if sel.device.type != "cuda":
        return sel.cpu()
    return torch.empty(sel.shape, dtype=dtype, pin_memory=True).copy_(sel, non_blocking=True)


class _NoGrad:
    """Turn off requires_grad on a model's parameters for the capture, then restore it."""

    def __init__(self, model: torch.nn.Module):
        self.params = [p for p in model.parameters() if p.requires_grad]

    def __enter__(self) -> None:
        for p in self.params:
            p.requires_grad_(False)

    def __exit__(self, *exc: Any) -> None:
        for p in self.params:
            p.requires_grad_(True)


def capture(
    pair: CheckpointPair,
    token_streams: Sequence[TokenStream],
    layers: list[int] | int,
    positions: str = "answer",
    out_dir: str | Path = "activations",
    *,
    batch_size: int = 8,
    shard_tokens: int = 16384,
    dtype: str = "float32",
    early_stop: bool = True,
    show_progress: bool = True,
    write_ahead: int = 1,
) -> ActivationStore:
    """Capture block outputs of both models on the same streams into a store at `out_dir`.

    Resumes a killed capture of the same streams/layers/models from its last complete shard.
    `write_ahead`: finished shards that may wait for the background writer (0: write each
    shard on this thread before the next batch).
    """
    check_positions(positions)
    if dtype not in DTYPES:
        raise PersonaDiffError(f"dtype {dtype!r} is unknown; use one of {', '.join(DTYPES)}")
    if not token_streams:
        raise PersonaDiffError("no token streams to capture; pass a non-empty answers/text file")
    layers = resolve_layers(layers, pair.n_layers)
    tok = pair.base.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    bos_id = tok.bos_token_id
    header = {
        "models": {"base": pair.base.spec, "finetuned": pair.finetuned.spec},
        "model_type": getattr(pair.base.model.config, "model_type", None),
        "d_model": pair.d_model,
        "n_layers": pair.n_layers,
        "layers": layers,
        "convention": LAYER_CONVENTION,
        "dtype": dtype,
        "positions": positions,
        "n_streams": len(token_streams),
        "streams_fingerprint": streams_fingerprint(token_streams),
    }
    writer = StoreWriter.open(out_dir, header, write_ahead=write_ahead)
    if writer.streams_done == 0:
        writer.write_streams(
            [{"input_ids": s.input_ids, "prompt_len": s.prompt_len, "meta": s.meta} for s in token_streams]
        )
    elif writer.index["complete"]:
        log.info("capture in %s is complete; nothing to do", out_dir)
        return ActivationStore(out_dir)
    else:
        log.info("resuming capture in %s after stream %d", out_dir, writer.streams_done)

    models = {"base": pair.base.model, "ft": pair.finetuned.model}
    wrapped = {k: NNsight(m) for k, m in models.items()}
    paths = {k: blocks_path(m) for k, m in models.items()}
    out_dtype = DTYPES[dtype]
    buf: dict[str, list[torch.Tensor]] = {}
    buf_tokens = 0
    shard_start = writer.streams_done
    cuda_devices: set[torch.device] = set()  # where asynchronous copies of `buf` were issued

    def flush(end: int) -> None:
        nonlocal buf, buf_tokens, shard_start
        if buf_tokens:
            ready = []  # the writer thread waits for these before it reads `buf`
            for dev in cuda_devices:
                ready.append(torch.cuda.Event())
                ready[-1].record(torch.cuda.current_stream(dev))
            writer.add_shard(buf, (shard_start, end), ready)
        else:  # no kept tokens in these streams: still record progress
            writer.skip_to(end)
        buf, buf_tokens, shard_start = {}, 0, end
        cuda_devices.clear()

    starts = range(writer.streams_done, len(token_streams), batch_size)
    with writer, _NoGrad(models["base"]), _NoGrad(models["ft"]):
        for s in progress(starts, "capture", total=len(starts), disable=not show_progress or None):
            chunk = token_streams[s : s + batch_size]
            ids, am = pad_batch(chunk, pad_id)
            keep = torch.zeros_like(am, dtype=torch.bool)
            for i, st in enumerate(chunk):
                keep[i, : len(st)] = position_mask(st, positions, bos_id)
            rows = keep.nonzero()
            if len(rows):
                flat = rows[:, 0] * keep.shape[1] + rows[:, 1]  # the kept rows of h.flatten(0, 1)
                flat_on: dict[torch.device, torch.Tensor] = {}  # `flat` on each output device
                for key in ("base", "ft"):
                    dev = input_device(models[key])
                    ids_d, am_d = to_device(ids, dev), to_device(am, dev)
                    outs = trace_blocks(wrapped[key], paths[key], layers, ids_d, am_d, early_stop)
                    for layer, h in zip(layers, outs, strict=True):
                        if h.device not in flat_on:
                            flat_on[h.device] = to_device(flat, h.device)
                        host = rows_to_host(h, flat_on[h.device], out_dtype)
                        buf.setdefault(f"{key}.{layer}", []).append(host)
                cuda_devices.update(d for d in flat_on if d.type == "cuda")
                buf.setdefault("token_id", []).append(ids[keep])
                buf.setdefault("stream", []).append(rows[:, 0] + s)
                buf.setdefault("pos", []).append(rows[:, 1])
                buf_tokens += len(rows)
            if buf_tokens >= shard_tokens:
                flush(s + len(chunk))
        flush(len(token_streams))
        writer.finish()
    return ActivationStore(out_dir)
