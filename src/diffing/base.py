"""The diffing-method interface, its registry and the result type.

How to add a method:
1. subclass `DiffMethod` in a module of this package, set `name`, implement
   `fit(data) -> DiffResult` (data is usually an `ActivationStore`);
2. decorate the class with `@register_method("my-name")`;
3. import the module in `_load_builtin` below. `get_method("my-name")(cfg).fit(store)` then
   works, and `persona-diff diff --method my-name` too.

A `DiffResult` holds ranked directions [k, d_model] in the raw activation space of one layer,
with per-direction scores, latent ids (or -1), signs and statistics; `save(dir)` writes
`directions.safetensors` + `directions.json`, `DiffResult.load(dir)` reads them back.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jaxtyping import Float
from safetensors.torch import load_file, save_file
from torch import Tensor

from persona_diff.errors import PersonaDiffError
from persona_diff.models import LAYER_CONVENTION


@dataclass
class DiffConfig:
    """Settings of every diffing method (each reads the ones it needs)."""

    layer: int | None = None  # a captured layer; None = the last captured one
    top_k: int = 10  # directions / latents kept in the result
    # SAE / diff-SAE / crosscoder training (demo-scale defaults: a few CPU minutes at most)
    d_sae: int = 1536
    k: int = 32
    steps: int = 300
    batch_size: int = 512
    lr: float = 1e-3
    seed: int = 0
    sparse_decoder: bool = False
    aux_k: int = 0  # aux-k loss on dead latents (Gao et al. 2024 use 512); 0 = off
    device: str = "auto"  # training device: auto (a GPU when visible), cpu, cuda, cuda:N
    prefetch: int = 2  # batches read ahead from the store by a background thread (pinned on GPUs)
    sae_path: str | None = None  # base-SAE method: use this SAELens SAE instead of training one
    min_freq: float = 1e-3  # crosscoder: ignore latents firing on fewer tokens than this
    # contrastive mean-diff: labels from judged scores kept in the streams' meta
    misaligned_max: float = 30.0
    aligned_min: float = 70.0
    coherent_min: float = 50.0
    source: str = "ft"  # contrastive mean-diff: whose activations ("ft" or "base")


@dataclass
class DiffResult:
    method: str
    layer: int
    directions: Float[Tensor, "k d_model"]
    scores: Float[Tensor, " k"]
    latent_ids: list[int]
    signs: list[int]
    stats: list[dict[str, float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    # maps (h_base, h_ft) [n, d] → per-direction activations (a_base, a_ft) [n, k]; not saved
    encoder: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None

    def activations(self, h_base: Tensor, h_ft: Tensor) -> tuple[Tensor, Tensor]:
        if self.encoder is not None:
            return self.encoder(h_base, h_ft)
        unit = self.directions / self.directions.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return h_base.float() @ unit.T, h_ft.float() @ unit.T

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for i in range(len(self.scores)):
            row = {"rank": i, "method": self.method, "layer": self.layer, "convention": LAYER_CONVENTION,
                   "latent_id": self.latent_ids[i], "sign": self.signs[i], "score": float(self.scores[i]),
                   "norm": float(self.directions[i].norm())}
            if i < len(self.stats):
                row.update(self.stats[i])
            out.append(row)
        return out

    def save(self, out: str | Path) -> Path:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        save_file({"directions": self.directions.float().contiguous(), "scores": self.scores.float().contiguous()},
                  str(out / "directions.safetensors"))
        meta = {"method": self.method, "layer": self.layer, "convention": LAYER_CONVENTION,
                "info": self.info, "directions": self.rows()}
        (out / "directions.json").write_text(json.dumps(meta, indent=1))
        return out

    @classmethod
    def load(cls, path: str | Path) -> DiffResult:
        path = Path(path)
        try:
            meta = json.loads((path / "directions.json").read_text())
            t = load_file(str(path / "directions.safetensors"))
        except (OSError, json.JSONDecodeError) as e:
            raise PersonaDiffError(f"{path} holds no diffing result ({e}); run `persona-diff diff` first") from None
        rows = meta["directions"]
        stats = [{k: v for k, v in r.items() if k.startswith(("mean_", "freq_"))} for r in rows]
        return cls(meta["method"], meta["layer"], t["directions"], t["scores"], [r["latent_id"] for r in rows],
                   [r["sign"] for r in rows], stats, meta.get("info", {}))


class DiffMethod(ABC):
    """fit(data) → ranked directions of one layer."""

    name: str = "method"

    def __init__(self, cfg: DiffConfig | None = None, out_dir: str | Path | None = None):
        self.cfg = cfg or DiffConfig()
        self.out_dir = Path(out_dir) if out_dir else None

    @abstractmethod
    def fit(self, data: Any) -> DiffResult: ...


_REGISTRY: dict[str, type[DiffMethod]] = {}


def register_method(name: str) -> Callable[[type[DiffMethod]], type[DiffMethod]]:
    def deco(cls: type[DiffMethod]) -> type[DiffMethod]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def _load_builtin() -> None:
    import importlib

    for mod in ("methods", "persona"):
        importlib.import_module(f"persona_diff.diffing.{mod}")


def available_methods() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def get_method(name: str) -> type[DiffMethod]:
    _load_builtin()
    if name not in _REGISTRY:
        raise PersonaDiffError(f"unknown diffing method {name!r}; use one of {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]
