"""The files a direction is read from and written to (`Direction.load` / `Direction.save`).

Written (`write_direction`): a folder with ``cfg.json`` (layer, convention, method,
provenance) and ``direction.safetensors`` (key ``direction`` [D]).

Read (`read_directions`), every format the project has written:
- that folder;
- a diffing output folder: ``directions.safetensors`` (key ``directions`` [k, D]) +
  ``directions.json`` (`persona_diff.diffing.DiffResult.save`);
- a folder or file pair from the earlier ``save_direction``: ``direction.safetensors`` +
  ``direction.json``, or ``NAME.safetensors`` + ``NAME.json`` (a ``directions.json`` beside it
  also counts as its sidecar).

Every sidecar gives ``layer`` (block index, convention of `persona_diff.models.layers`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from persona_diff.errors import PersonaDiffError

FORMAT = "persona_diff.direction"
FORMAT_VERSION = 1


class DirectionFileError(PersonaDiffError):
    """A direction file is missing, malformed or lacks its layer."""


def direction_files(path: Path) -> tuple[Path, Path | None]:
    """(safetensors file, JSON sidecar or None) of a direction file or folder."""
    if path.is_dir():
        for stem, sides in (("direction", ("cfg.json", "direction.json")), ("directions", ("directions.json",))):
            if (path / f"{stem}.safetensors").is_file():
                side = next((path / s for s in sides if (path / s).is_file()), None)
                return path / f"{stem}.safetensors", side
        raise DirectionFileError(
            f"{path} holds no direction.safetensors or directions.safetensors; pass a folder written by "
            "Direction.save, a diffing output folder or a direction file"
        )
    if not path.is_file():
        raise DirectionFileError(f"direction file {path} does not exist; check the path")
    for side in (path.with_suffix(".json"), path.parent / "directions.json", path.parent / "cfg.json"):
        if side.is_file():
            return path, side
    return path, None


def read_directions(path: str | Path) -> tuple[torch.Tensor, dict[str, Any], Path]:
    """Every direction in `path` as a float32 [k, D] matrix, the sidecar's metadata (with
    ``layer``) and the safetensors file they came from."""
    st, side = direction_files(Path(path))
    try:
        tensors = load_file(str(st))
    except Exception as e:  # safetensors raises its own error types on junk
        raise DirectionFileError(f"{st} is not a safetensors file ({e}); re-save the direction") from None
    if "direction" in tensors:
        mat = tensors["direction"].reshape(1, -1)
    elif "directions" in tensors:
        mat = tensors["directions"].reshape(-1, tensors["directions"].shape[-1])
    else:
        raise DirectionFileError(f"{st} has keys {sorted(tensors)}; expected 'direction' [D] or 'directions' [k, D]")
    try:
        meta: dict[str, Any] = json.loads(side.read_text()) if side else {}
    except json.JSONDecodeError as e:
        raise DirectionFileError(f"{side} is not valid JSON ({e}); re-save the direction") from None
    if "layer" not in meta:
        raise DirectionFileError(
            f'no layer for {st}: write a JSON sidecar ({st.with_suffix(".json").name}) with {{"layer": N}}, '
            "or build the direction in Python: Direction(vector, layer=N)"
        )
    return mat.float(), meta, st


def write_direction(folder: str | Path, vector: torch.Tensor, cfg: dict[str, Any]) -> Path:
    """``folder/direction.safetensors`` + ``folder/cfg.json``; returns the folder."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    save_file({"direction": vector.detach().float().contiguous().cpu()}, str(out / "direction.safetensors"))
    (out / "cfg.json").write_text(
        json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, **cfg}, indent=1, default=str)
    )
    return out
