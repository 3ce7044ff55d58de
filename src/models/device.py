"""Where models and tensors go: ``auto`` (a CUDA GPU when one is visible, else the CPU),
``cpu``, ``cuda`` or ``cuda:N``. Multi-GPU placement of one model is `device_map="auto"`
(accelerate spreads the layers over the visible GPUs), handled by `load_model`."""

from __future__ import annotations

import torch

from persona_diff.errors import PersonaDiffError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise PersonaDiffError(f"device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PersonaDiffError(f"device {name!r} asked for, but no CUDA GPU is visible; use device='cpu' or 'auto'")
    return dev
