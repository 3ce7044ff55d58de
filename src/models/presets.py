"""Model presets in configs/models/*.yaml (layers to read, dtype, system prompt)."""

from __future__ import annotations

from dataclasses import dataclass, field

from persona_diff.config.base import from_dict, read_yaml
from persona_diff.errors import ConfigError
from persona_diff.paths import CONFIGS as CONFIGS_DIR


@dataclass
class ModelPreset:
    spec: str = "smollm2-135m"
    dtype: str = "float32"
    n_layers: int = 30
    d_model: int = 576
    layers: list[int] = field(default_factory=lambda: [8, 14, 20])
    system_prompt: str | None = None


def load_preset(name: str) -> ModelPreset:
    path = CONFIGS_DIR / "models" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (CONFIGS_DIR / "models").glob("*.yaml"))
        raise ConfigError(f"no model preset {name!r}; known presets: {', '.join(known)}")
    return from_dict(ModelPreset, read_yaml(path), where=str(path))
