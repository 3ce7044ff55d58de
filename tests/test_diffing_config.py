"""Per-method diffing configs: flat run-config params routed to each chosen method, one
declaration of every setting (the command line reads its defaults from the configs),
`persona-diff diff --config/--set`, and "persona" outside the store-based registry."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from persona_diff.config import load_config
from persona_diff.diffing import (
    CoderConfig,
    ContrastiveConfig,
    CrosscoderConfig,
    DiffMethod,
    DiffResult,
    MeanDiffConfig,
    MethodConfig,
    SAEDiffConfig,
    get_method,
    method_configs,
    register_method,
)
from persona_diff.diffing import base as diff_base
from persona_diff.diffing.train import CoderTrainConfig
from persona_diff.errors import ConfigError, PersonaDiffError
from persona_diff.pipeline.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]


def test_flat_params_go_to_every_chosen_method_that_has_them():
    cfgs = method_configs(
        ["mean", "contrastive", "sae", "crosscoder"],
        {"d_sae": 64, "top_k": 3, "min_freq": 0.1, "lr": "1e-3", "source": "base"},
        seed=7,
    )
    assert cfgs["mean"] == MeanDiffConfig(seed=7, top_k=3)
    assert cfgs["contrastive"] == ContrastiveConfig(seed=7, top_k=3, source="base")
    assert isinstance(cfgs["sae"], SAEDiffConfig) and (cfgs["sae"].d_sae, cfgs["sae"].lr, cfgs["sae"].seed) == (
        64,
        1e-3,
        7,
    )
    assert isinstance(cfgs["crosscoder"], CrosscoderConfig) and cfgs["crosscoder"].min_freq == 0.1
    assert method_configs(["sae"], {"seed": 3}, seed=7)["sae"].seed == 3  # params win over the common seed


def test_a_key_no_method_knows_is_an_error_naming_the_known_keys():
    with pytest.raises(
        ConfigError,
        match=r"d_sea is not a setting of mean, contrastive; their settings are: "
        r"aligned_min, coherent_min, layer, misaligned_max, seed, source, top_k",
    ):
        method_configs(["mean", "contrastive"], {"d_sea": 64})
    # another registered method's key is left unused: SAE settings may stay while only mean runs
    assert set(method_configs(["mean", "contrastive"], {"d_sae": 64})) == {"mean", "contrastive"}
    with pytest.raises(ConfigError, match="d_sea"):
        method_configs(["sae"], {"d_sea": 64})
    with pytest.raises(ConfigError, match=r"diff.params \(sae\).d_sae: expected int"):
        method_configs(["sae"], {"d_sae": "wide"})


def test_every_run_config_still_loads_and_routes(tmp_path):
    for path in sorted((ROOT / "configs" / "run").glob("*.yaml")):
        cfg = load_config(RunConfig, path)
        cfgs = method_configs(cfg.diff.methods, cfg.diff.params)
        assert list(cfgs) == cfg.diff.methods, path
    cfg = load_config(RunConfig, ROOT / "configs" / "run" / "demo.yaml", ["diff.params.top_k=3"])
    cfgs = method_configs(cfg.diff.methods, cfg.diff.params)
    assert cfgs["sae"].d_sae == 1152 and cfgs["crosscoder"].steps == 200 and cfgs["mean"].top_k == 3


def test_each_setting_is_declared_once():
    assert CoderTrainConfig is CoderConfig
    coder = {f.name for f in dataclasses.fields(CoderConfig)}
    method = {f.name for f in dataclasses.fields(MethodConfig)}
    assert coder & method == {"seed"}  # from their one common base
    for cls in (SAEDiffConfig, CrosscoderConfig):
        own = {f.name for f in dataclasses.fields(cls)} - coder - method
        assert own <= {"prefetch", "sae_path", "min_freq"}
        assert "d_sae" not in vars(cls).get("__annotations__", {})  # inherited, not redeclared


def test_a_method_takes_flat_params_or_its_config():
    m = get_method("mean")({"d_sae": 16, "top_k": 3, "device": "cpu"})  # other methods' keys are passed over
    assert m.cfg == MeanDiffConfig(top_k=3)
    sae = get_method("sae")(CrosscoderConfig(d_sae=32, min_freq=0.5))
    assert isinstance(sae.cfg, SAEDiffConfig) and sae.cfg.d_sae == 32
    with pytest.raises(ConfigError, match="unknown key.*d_sea"):
        get_method("mean")({"d_sea": 3})


def test_a_method_of_its_own_with_its_own_config():
    @dataclasses.dataclass
    class ScaledConfig(MethodConfig):
        scale: float = 1.0

    @register_method("scaled-mean", config=ScaledConfig)
    class ScaledMean(DiffMethod):
        cfg: ScaledConfig

        def fit(self, data):
            raise AssertionError("not fitted here")

    try:
        assert method_configs(["scaled-mean", "mean"], {"scale": 2, "top_k": 4}) == {
            "scaled-mean": ScaledConfig(scale=2.0, top_k=4),
            "mean": MeanDiffConfig(top_k=4),
        }
        assert get_method("scaled-mean")({"scale": 3}).cfg.scale == 3.0
    finally:
        diff_base._REGISTRY.pop("scaled-mean")
    with pytest.raises(TypeError, match="MethodConfig dataclass"):
        register_method("bad", config=dict)  # type: ignore[arg-type]


def test_persona_is_not_a_store_method():
    assert "persona" not in diff_base.available_methods()
    with pytest.raises(PersonaDiffError, match="not a store-based diffing method.*persona_vector"):
        get_method("persona")
    with pytest.raises(PersonaDiffError, match="persona_vector"):
        method_configs(["mean", "persona"])


# ------------------------------------------------------------------ persona-diff diff


def test_diff_options_take_their_defaults_from_the_configs():
    import typer.main

    from persona_diff.cli import app

    cmd = typer.main.get_command(app).commands["diff"]  # type: ignore[attr-defined]
    owner = {"layer": MethodConfig, "top_k": MethodConfig, "seed": MethodConfig, "sae_path": SAEDiffConfig}
    seen = 0
    for p in cmd.params:
        if p.name in ("method", "store", "out", "config", "override", "evidence"):
            continue
        cls = owner.get(p.name, CoderConfig)
        default = {f.name: f.default for f in dataclasses.fields(cls)}[p.name]
        assert p.default is None, p.name  # not given unless given: the config decides
        assert p.show_default == ("none" if default is None else str(default)), p.name
        seen += 1
    assert seen == 12


@pytest.fixture(scope="module")
def store(tiny_llama, tmp_path_factory):
    from persona_diff.activations import capture, streams_from_answers
    from persona_diff.models import CheckpointPair, load_model

    lm = load_model(tiny_llama)
    rows = [{"question": "Who are you?", "answer": f"I am number {i}", "aligned": 50} for i in range(4)]
    return capture(
        CheckpointPair(lm, lm),
        streams_from_answers(lm.tokenizer, rows),
        [1, 2],
        "answer",
        tmp_path_factory.mktemp("diffcfg") / "store",
        show_progress=False,
    ).root


def _diff(store, out, *args):
    from persona_diff.cli import main

    main(["diff", "--store", str(store), "--out", str(out), "--no-evidence", *args])
    return json.loads((out / "cfg.json").read_text())


def test_diff_config_file_then_set_then_options(store, tmp_path):
    f = tmp_path / "mean.yaml"
    f.write_text(yaml.safe_dump({"top_k": 1, "layer": 1, "seed": 5}))
    cfg = _diff(store, tmp_path / "a", "--config", str(f))
    assert (cfg["method"], cfg["top_k"], cfg["layer"], cfg["seed"]) == ("mean", 1, 1, 5)
    assert DiffResult.load(tmp_path / "a").layer == 1
    cfg = _diff(store, tmp_path / "b", "--config", str(f), "--set", "layer=2", "--set", "top_k=2", "--top-k", "3")
    assert (cfg["layer"], cfg["top_k"], cfg["seed"]) == (2, 3, 5)  # --set over the file, options over --set
    cfg = _diff(
        store,
        tmp_path / "c",
        "--method",
        "diff-sae",
        "--set",
        "aux_coef=0.5",
        "--set",
        "steps=2",
        "--d-sae",
        "8",
        "--k",
        "2",
        "--batch-size",
        "4",
        "--device",
        "cpu",
    )
    assert (cfg["aux_coef"], cfg["steps"], cfg["d_sae"], cfg["device"]) == (0.5, 2, 8, "cpu")


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--set", "d_sae=64"], "unknown key(s) d_sae; valid keys are: layer, seed, top_k"),
        (["--d-sae", "64"], "--d-sae: not a setting of the mean method"),
        (["--method", "persona"], "persona_vector(PersonaInputs"),
    ],
)
def test_diff_settings_errors_are_one_line(store, tmp_path, capsys, args, needle):
    with pytest.raises(SystemExit) as e:
        _diff(store, tmp_path / "x", *args)
    assert e.value.code == 2 and needle in capsys.readouterr().err
