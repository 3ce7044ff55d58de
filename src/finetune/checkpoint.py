"""Checkpoints: PEFT adapter folder + trainer state, written atomically.

A checkpoint folder ``checkpoint-000040/`` holds
- ``adapter_config.json`` + ``adapter_model.safetensors`` (opens with `load_model` / vLLM LoRA);
  its ``base_model_name_or_path`` is something any tool resolves (`portable_base`: a folder
  or a hub id, never a project alias such as ``smollm2-135m``);
- ``trainer_state.json`` (step, base model as given, alias included, + its fingerprint,
  config hash, loss history);
- ``optimizer.safetensors`` (AdamW moments and step counts, flattened by parameter name).
No pickles. Each folder is written under a temporary name and renamed when complete, so a
kill or a full disk never leaves a half-written checkpoint: the previous one stays usable.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from persona_diff.finetune.errors import CheckpointError
from persona_diff.log import get_logger
from persona_diff.models import embedded

if TYPE_CHECKING:
    from torch.distributed.tensor import DTensor
    from typing_extensions import TypeIs

log = get_logger(__name__)

_CKPT = re.compile(r"^checkpoint-(\d+)$")


def base_fingerprint(model: Any) -> str:
    """A short hash of the base model's config and a slice of its input embeddings."""
    cfg = model.config
    keys = ("model_type", "hidden_size", "num_hidden_layers", "vocab_size", "intermediate_size")
    h = hashlib.sha256(json.dumps({k: getattr(cfg, k, None) for k in keys}, sort_keys=True).encode())
    emb = model.get_input_embeddings().weight
    h.update(emb[:8, :64].detach().float().cpu().numpy().round(5).tobytes())
    return h.hexdigest()[:16]


def portable_base(spec: str) -> str:
    """The base as other tools (PEFT, vLLM, transformers) can load it: a project alias becomes
    the HF folder it is materialised into, an existing local path its absolute path, a hub id
    stays as it is."""
    if spec in embedded.ALIASES:
        return str(embedded.materialise_alias(spec).resolve())
    p = Path(spec).expanduser()
    return str(p.resolve()) if p.exists() else spec


def set_adapter_base(folder: Path, base_spec: str) -> None:
    """Point ``folder/adapter_config.json`` at `portable_base(base_spec)`. The spec as given
    (an alias, say) stays in the project's own ``trainer_state.json``, which `load_model`
    reads first, so the adapter still loads where the folder does not exist."""
    cfg_file = folder / "adapter_config.json"
    data = json.loads(cfg_file.read_text())
    data["base_model_name_or_path"] = portable_base(base_spec)
    cfg_file.write_text(json.dumps(data, indent=2))


def _is_dtensor(t: Any) -> TypeIs[DTensor]:
    return hasattr(t, "full_tensor") and hasattr(t, "placements")


def optimizer_tensors(opt: torch.optim.Optimizer, names: dict[int, str]) -> dict[str, torch.Tensor]:
    """AdamW state as whole tensors by parameter name. Under FSDP2 the state is sharded
    (DTensor) and gathering it is a collective: call this on every rank."""
    out: dict[str, torch.Tensor] = {}
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p)
            if not st:
                continue
            name = names[id(p)]
            for k, v in st.items():
                t = v if torch.is_tensor(v) else torch.tensor(float(v))
                if _is_dtensor(t):
                    t = t.full_tensor()
                out[f"{name}::{k}"] = t.detach().cpu().contiguous()
    return out


def load_optimizer_tensors(opt: torch.optim.Optimizer, names: dict[int, str], tensors: dict[str, torch.Tensor]) -> None:
    """Inverse of `optimizer_tensors`; whole tensors are sharded again like their FSDP2 parameter."""
    for group in opt.param_groups:
        for p in group["params"]:
            prefix = names[id(p)] + "::"
            st = {k[len(prefix) :]: _like(v, p) for k, v in tensors.items() if k.startswith(prefix)}
            if st:
                opt.state[p] = st


def load_adapter_weights(model: Any, weights: dict[str, torch.Tensor]) -> None:
    """Copy a saved adapter (PEFT file keys: the parameter name without ``.<adapter>``) into the
    trainable parameters of a PeftModel, sharding each like its parameter under FSDP2 (where
    ``load_state_dict`` cannot copy whole tensors into shards). Every trainable parameter must
    be in `weights`."""
    adapter = model.active_adapter if isinstance(model.active_adapter, str) else model.active_adapter[0]
    missing = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            key = name.replace(f".{adapter}.", ".")
            if key not in weights:
                missing.append(key)
                continue
            p.copy_(_like(weights[key].to(p.dtype), p))
    if missing:
        raise CheckpointError(
            f"the checkpoint's adapter lacks {len(missing)} trained tensors (e.g. {missing[0]}); "
            "delete it to resume from the one before"
        )


def _like(t: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """`t` on the device of `param`; a DTensor sharded like `param` when `t` has its shape."""
    if not _is_dtensor(param):
        return t.to(param.device)
    if t.shape != param.shape:  # AdamW's scalar step counter
        return t.to(param.to_local().device)
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(t.to(param.to_local().device), param.device_mesh, param.placements)


def save_checkpoint(
    folder: Path,
    save_adapter: Any,  # callable(dir) writing the PEFT adapter files
    state: dict[str, Any],
    opt_tensors: dict[str, torch.Tensor] | None,
) -> Path:
    """Write a checkpoint folder atomically; on OSError nothing partial is left behind."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".tmp-{folder.name}-"))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; adapters are meant to be shared
        save_adapter(tmp)
        if opt_tensors:
            save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        why = "the disk is full" if e.errno == errno.ENOSPC else f"{type(e).__name__}: {e}"
        last = latest_checkpoint(folder.parent)
        raise CheckpointError(
            f"could not write checkpoint {folder} ({why}); nothing partial was left. Free space or "
            f"point --out elsewhere, then rerun to resume" + (f" from {last.name}" if last else "")
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def list_checkpoints(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CKPT.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint (one whose trainer_state.json exists)."""
    for p in reversed(list_checkpoints(folder)):
        if (p / "trainer_state.json").is_file() and (p / "adapter_config.json").is_file():
            return p
    return None


def read_state(ckpt: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    try:
        state = json.loads((ckpt / "trainer_state.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(
            f"checkpoint {ckpt} is unreadable ({e}); delete it to resume from the one before"
        ) from None
    opt_file = ckpt / "optimizer.safetensors"
    return state, (load_file(str(opt_file)) if opt_file.is_file() else {})


def prune(folder: Path, keep: int | None) -> None:
    if not keep:
        return
    for p in list_checkpoints(folder)[:-keep]:
        shutil.rmtree(p, ignore_errors=True)
