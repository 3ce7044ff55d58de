"""The diffing-method interface, its registry and the result type.

How to add a method (docs/extending.md):
1. a settings dataclass subclassing `MethodConfig` (`persona_diff.diffing.config`) with
   the fields of your method; reuse `CoderConfig` for one that trains a coder;
2. subclass `DiffMethod`, implement `fit(store) -> DiffResult`, and decorate the class
   with `@register_method("my-name", config=MyConfig)`;
3. import the module in `_load_builtin` below (or import it yourself before `get_method`).
   `get_method("my-name")(cfg).fit(store)`, `persona-diff diff --method my-name` and
   ``diff.methods: [my-name]`` in a run config then work.

Every registered method reads an `ActivationStore`. Settings reach a method as its config,
or as flat params shared by several methods (a run config's ``diff.params``, a plain dict):
`method_configs(methods, params)` routes each key to every chosen method whose config has
it, and a key no chosen method knows is an error naming the keys they know.

A `DiffResult` holds ranked directions [k, d_model] in the raw activation space of one layer,
with per-direction scores, latent ids (or -1), signs and statistics; `save(dir)` writes
`directions.safetensors` + `directions.json`, `DiffResult.load(dir)` reads them back.
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from jaxtyping import Float
from safetensors.torch import save_file
from torch import Tensor

from persona_diff.config import from_dict, to_dict
from persona_diff.diffing.config import MethodConfig
from persona_diff.errors import ConfigError, PersonaDiffError
from persona_diff.fileio import read_artifact
from persona_diff.models import LAYER_CONVENTION

C = TypeVar("C", bound=MethodConfig)

DiffParams = dict[str, Any]
"""Flat settings for several methods at once (a run config's ``diff.params``)."""
DiffConfig = DiffParams  # the older name, still used for ``diff.params``

# methods that do not read a store, and how to get them instead
NOT_STORE_BASED = {
    "persona": "persona vectors are built from a model, a trait file and a judge, not from an activation "
    "store: call persona_diff.diffing.persona.persona_vector(PersonaInputs(model, trait_file, judge)) "
    "then DiffResult.save(dir); `persona-diff steer --direction DIR` reads that folder",
}


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
            row = {
                "rank": i,
                "method": self.method,
                "layer": self.layer,
                "convention": LAYER_CONVENTION,
                "latent_id": self.latent_ids[i],
                "sign": self.signs[i],
                "score": float(self.scores[i]),
                "norm": float(self.directions[i].norm()),
            }
            if i < len(self.stats):
                row.update(self.stats[i])
            out.append(row)
        return out

    def save(self, out: str | Path) -> Path:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        save_file(
            {"directions": self.directions.float().contiguous(), "scores": self.scores.float().contiguous()},
            str(out / "directions.safetensors"),
        )
        meta = {
            "method": self.method,
            "layer": self.layer,
            "convention": LAYER_CONVENTION,
            "info": self.info,
            "directions": self.rows(),
        }
        (out / "directions.json").write_text(json.dumps(meta, indent=1))
        return out

    @classmethod
    def load(cls, path: str | Path) -> DiffResult:
        path = Path(path)
        meta, t = read_artifact(
            path,
            "directions.json",
            "directions.safetensors",
            "it is not a diffing result: run `persona-diff diff` first",
        )
        rows = meta["directions"]
        stats = [{k: v for k, v in r.items() if k.startswith(("mean_", "freq_"))} for r in rows]
        return cls(
            meta["method"],
            meta["layer"],
            t["directions"],
            t["scores"],
            [r["latent_id"] for r in rows],
            [r["sign"] for r in rows],
            stats,
            meta.get("info", {}),
        )


class DiffMethod(ABC):
    """fit(store) → ranked directions of one layer.

    `cfg`: the method's config (`config_cls`), None for its defaults, or flat params (a
    mapping, or another method's config) of which it takes the keys its config has."""

    name: ClassVar[str] = "method"
    config_cls: ClassVar[type[MethodConfig]] = MethodConfig

    def __init__(self, cfg: MethodConfig | Mapping[str, Any] | None = None, out_dir: str | Path | None = None):
        self.cfg = config_for(self.config_cls, cfg, where=f"diffing method {self.name}")
        self.out_dir = Path(out_dir) if out_dir else None

    @abstractmethod
    def fit(self, data: Any) -> DiffResult: ...


M = TypeVar("M", bound=DiffMethod)
_REGISTRY: dict[str, type[DiffMethod]] = {}


def register_method(name: str, config: type[MethodConfig] = MethodConfig) -> Callable[[type[M]], type[M]]:
    """Register a `DiffMethod` subclass as `name`, with `config` its settings dataclass."""
    if not (dataclasses.is_dataclass(config) and issubclass(config, MethodConfig)):
        raise TypeError(f"diffing method {name!r}: config must be a MethodConfig dataclass, got {config!r}")

    def deco(cls: type[M]) -> type[M]:
        cls.name = name
        cls.config_cls = config
        _REGISTRY[name] = cls
        return cls

    return deco


def _load_builtin() -> None:
    import importlib

    importlib.import_module("persona_diff.diffing.methods")


def available_methods() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def get_method(name: str) -> type[DiffMethod]:
    _load_builtin()
    if name in NOT_STORE_BASED:
        raise PersonaDiffError(f"{name!r} is not a store-based diffing method: {NOT_STORE_BASED[name]}")
    if name not in _REGISTRY:
        raise PersonaDiffError(f"unknown diffing method {name!r}; use one of {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def config_fields(cls: type[MethodConfig]) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _as_params(params: MethodConfig | Mapping[str, Any] | None) -> dict[str, Any]:
    if params is None:
        return {}
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        return to_dict(params)
    if isinstance(params, Mapping):
        return dict(params)
    raise ConfigError(f"diffing settings must be a method config or a mapping, got {type(params).__name__}")


def config_for(cls: type[C], params: MethodConfig | Mapping[str, Any] | None, where: str = "diff.params") -> C:
    """`cls` from `params`: itself when it is one, else the keys of `params` that `cls` has
    (flat params are shared, so a key of another method is passed over; a key no registered
    method has is an error)."""
    if isinstance(params, cls):
        return params
    data = _as_params(params)
    mine = set(config_fields(cls))
    _load_builtin()
    known = mine.union(*(config_fields(m.config_cls) for m in _REGISTRY.values()))
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; the diffing methods' keys are: {', '.join(sorted(known))}"
        )
    return from_dict(cls, {k: v for k, v in data.items() if k in mine}, where=where)


def method_configs(
    methods: Sequence[str], params: MethodConfig | Mapping[str, Any] | None = None, **common: Any
) -> dict[str, MethodConfig]:
    """The config of each of `methods` from flat `params` (a run config's ``diff.params``).

    Each key goes to every chosen method whose config has it. A key of another registered
    method is left unused (a config can keep its SAE settings while `diff.methods` names only
    `mean`); a key that no method has (a typo) is an error naming the keys the chosen ones know.
    `common` (e.g. ``seed=run_seed``) fills the methods that have the field, unless `params`
    sets it."""
    data = _as_params(params)
    classes = {m: get_method(m).config_cls for m in methods}
    known = sorted(set().union(*(config_fields(c) for c in classes.values())))
    anywhere = set().union(*(config_fields(get_method(m).config_cls) for m in available_methods()))
    unknown = sorted(set(data) - anywhere)
    if unknown:
        raise ConfigError(
            f"diff.params: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not a setting of "
            f"{', '.join(methods) or 'any chosen method'}; "
            f"their settings are: {', '.join(known)}"
        )
    out: dict[str, MethodConfig] = {}
    for m, cls in classes.items():
        mine = set(config_fields(cls))
        values = {k: v for k, v in {**common, **data}.items() if k in mine}
        out[m] = from_dict(cls, values, where=f"diff.params ({m})")
    return out
