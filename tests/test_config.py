"""Typed dataclass configs: YAML, overrides, unknown keys, hashing."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from persona_diff.config import config_hash, load_config, to_dict
from persona_diff.errors import ConfigError
from persona_diff.models.presets import load_preset


@dataclass
class Inner:
    samples: int = 2
    layers: list[int] = field(default_factory=lambda: [1, 2])


@dataclass
class Outer:
    name: str = "x"
    rate: float = 0.5
    flag: bool = False
    inner: Inner = field(default_factory=Inner)


def test_yaml_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("name: y\ninner:\n  samples: 5\n")
    cfg = load_config(Outer, f, ["inner.layers=[3, 4]", "flag=true", "rate=1e-3"])
    assert cfg == Outer(name="y", rate=1e-3, flag=True, inner=Inner(samples=5, layers=[3, 4]))
    assert load_config(Outer, None, ["inner.layers=7,8"]).inner.layers == [7, 8]


def test_unknown_key_names_valid_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key\(s\) sampels; valid keys are: layers, samples"):
        load_config(Outer, None, ["inner.sampels=3"])
    with pytest.raises(ConfigError, match="expected int"):
        load_config(Outer, None, ["inner.samples=many"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(Outer, None, ["nonsense"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Outer, tmp_path / "missing.yaml")


def test_hash_is_stable_and_sensitive():
    a, b = Outer(), Outer()
    assert config_hash(a) == config_hash(b) == config_hash(to_dict(b))
    b.inner.samples = 3
    assert config_hash(a) != config_hash(b)


@pytest.mark.parametrize(
    "name", ["smollm2-135m", "qwen2.5-0.5b-instruct", "qwen2.5-7b-instruct", "qwen2.5-32b-instruct"]
)
def test_presets_load(name):
    p = load_preset(name)
    assert all(0 <= layer < p.n_layers for layer in p.layers)
    with pytest.raises(ConfigError, match="known presets"):
        load_preset("nope")
