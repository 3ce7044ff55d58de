"""`Direction`: one residual-stream direction with its layer, convention and provenance.

    d = Direction.from_diff("runs/demo/run/diffing/mean")     # top direction of a diffing run
    with d.apply(model, alpha=8.0, positions="answer"):        # hooks removed on exit, always
        ...generate...
    d.save("runs/x/persona")                                   # cfg.json + direction.safetensors
    d = Direction.load("runs/x/persona")

The vector lives in the raw activation space of block `layer`'s output (convention
`persona_diff.models.LAYER_CONVENTION`, stored with it). `provenance` says where it came from
(method, models, source file, latent id, score); it is kept apart from what steering needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float

from persona_diff.models.layers import LAYER_CONVENTION
from persona_diff.steering.hooks import (
    Mode,
    Positions,
    SteeringError,
    SteeringState,
    random_like,
    steer,
)
from persona_diff.steering.io import DirectionFileError, read_directions, write_direction

if TYPE_CHECKING:
    from persona_diff.diffing.base import DiffResult

_RESERVED = {
    "format",
    "format_version",
    "layer",
    "convention",
    "method",
    "provenance",
    "d_model",
    "norm",
    "directions",
    "info",
}


@dataclass
class Direction:
    """A [d_model] vector at block `layer` (see the module docstring)."""

    vector: Float[torch.Tensor, " d_model"]
    layer: int
    convention: str = LAYER_CONVENTION
    method: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        v = torch.as_tensor(self.vector).detach()
        if v.dim() == 2 and v.shape[0] == 1:
            v = v[0]
        if v.dim() != 1:
            raise SteeringError(f"a Direction is one [d_model] vector, got shape {tuple(v.shape)}; pick a row")
        self.vector = v.float().cpu()
        self.layer = int(self.layer)

    @property
    def d_model(self) -> int:
        return int(self.vector.shape[0])

    @property
    def norm(self) -> float:
        return float(self.vector.norm())

    def unit(self) -> Direction:
        """The same direction with norm 1."""
        if self.norm == 0:
            raise SteeringError("cannot normalise a zero direction")
        return replace(self, vector=self.vector / self.norm, provenance={**self.provenance, "normalised": True})

    def random_like(self, seed: int = 0) -> Direction:
        """The control: a random direction of the same norm at the same layer."""
        return replace(
            self,
            vector=random_like(self.vector, seed),
            method="random",
            provenance={"control_of": self.method, "seed": seed},
        )

    @contextmanager
    def apply(
        self,
        model: Any,
        alpha: float = 1.0,
        positions: Positions = "all",
        *,
        mode: Mode = "add",
        layer: int | None = None,
        prompt_len: int | None = None,
    ) -> Iterator[SteeringState]:
        """Steer `model` (an nn.Module or a LoadedModel) inside the `with` block.

        ``mode="add"``: h ← h + α·v at block `layer` (this direction's, unless given);
        ``mode="ablate"``: remove the fraction α of h's component along v. `positions`: all,
        prompt or answer (`persona_diff.steering.hooks`). The hooks are removed on exit, also
        when the block raises.
        """
        if self.convention != LAYER_CONVENTION:
            raise SteeringError(
                f"this direction was saved under the layer convention {self.convention!r}, not "
                f"{LAYER_CONVENTION!r}; convert its layer index before steering"
            )
        with steer(
            model, self.vector, self.layer if layer is None else layer, alpha, positions, mode, prompt_len
        ) as state:
            yield state

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write ``path/cfg.json`` + ``path/direction.safetensors``; returns the folder."""
        cfg = {
            "layer": self.layer,
            "convention": self.convention,
            "method": self.method,
            "d_model": self.d_model,
            "norm": self.norm,
            "provenance": self.provenance,
        }
        return write_direction(path, self.vector, cfg)

    @classmethod
    def load(cls, path: str | Path, index: int = 0) -> Direction:
        """The `index`-th direction of a folder from `save`, a diffing output folder
        (`DiffResult.save`: ranked directions, sign applied) or a direction file with a sidecar."""
        return cls._from_file(path, index)

    @classmethod
    def load_all(cls, path: str | Path) -> list[Direction]:
        """Every direction in `path`, in its order (ranked, for a diffing output)."""
        mat, _, _ = read_directions(path)
        return [cls._from_file(path, i) for i in range(mat.shape[0])]

    @classmethod
    def from_diff(cls, source: str | Path | DiffResult, index: int = 0) -> Direction:
        """The `index`-th ranked direction of a diffing result (a `DiffResult` or the folder it
        was saved to, e.g. ``RUN/diffing/mean``), times its sign."""
        if isinstance(source, str | Path):
            return cls._from_file(source, index)
        n = int(source.directions.shape[0])
        if not 0 <= index < n:
            raise DirectionFileError(f"direction index {index} is out of range: the {source.method} result holds {n}")
        row = source.rows()[index]
        return cls(
            source.directions[index] * source.signs[index],
            source.layer,
            LAYER_CONVENTION,
            source.method,
            _diff_provenance(row, source.info, None, index),
        )

    @classmethod
    def _from_file(cls, path: str | Path, index: int) -> Direction:
        mat, meta, st = read_directions(path)
        if not 0 <= index < mat.shape[0]:
            raise DirectionFileError(f"direction index {index} is out of range: {st} holds {mat.shape[0]} direction(s)")
        rows = meta.get("directions")
        if isinstance(rows, list):  # a diffing result: ranked rows with sign, latent id, score
            row = rows[index] if index < len(rows) and isinstance(rows[index], dict) else {}
            vec = mat[index] * int(row.get("sign", 1))
            prov = _diff_provenance(row, meta.get("info", {}), st.parent, index)
        else:
            vec = mat[index]
            prov = dict(meta.get("provenance") or {})
            prov.update({k: v for k, v in meta.items() if k not in _RESERVED})  # the old sidecar's free keys
            prov.setdefault("source", str(st))
        return cls(
            vec.clone(), int(meta["layer"]), meta.get("convention") or LAYER_CONVENTION, meta.get("method"), prov
        )


def _diff_provenance(row: dict[str, Any], info: dict[str, Any], source: Path | None, index: int) -> dict[str, Any]:
    prov: dict[str, Any] = {"index": index}
    if source is not None:
        prov["source"] = str(source)
    for k in ("rank", "latent_id", "score", "sign"):
        if k in row:
            prov[k] = row[k]
    if isinstance(info, dict) and "models" in info:
        prov["models"] = info["models"]
    return prov
