"""`persona-diff diff`: ranked persona directions / latents from an activation store.

Settings are the chosen method's config (`persona_diff.diffing.config`): its defaults, then
``--config FILE`` (flat keys, as a run config's ``diff.params``), then ``--set key=value``,
then the options below, which default to "not given" (their help shows the config's default).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import typer

from persona_diff.diffing.config import CoderConfig, MethodConfig, SAEDiffConfig


def _setting(cls: type[Any], name: str, *decls: str, help: str) -> Any:
    """An option for config field `name`: None when not given, the config's default shown."""
    d = getattr(cls(), name)
    return typer.Option(None, *decls, help=f"{help} (setting {name}).", show_default="none" if d is None else str(d))


def register(app: typer.Typer) -> None:
    @app.command("diff")
    def diff_cmd(
        method: str = typer.Option(
            "mean",
            "--method",
            help="A store-based diffing method: mean, contrastive, sae, diff-sae or crosscoder (persona vectors need a model, a trait file and a judge: persona_diff.diffing.persona.persona_vector).",
        ),
        store: Path = typer.Option(..., "--store", help="Store folder written by `persona-diff capture`."),
        out: Path = typer.Option(
            ...,
            "--out",
            help="Output folder: cfg.json, directions.safetensors/.json, evidence.json, sae/ or crosscoder/.",
        ),
        config: Path | None = typer.Option(
            None, "--config", help="YAML of the method's settings (flat keys, as a run config's diff.params)."
        ),
        override: list[str] = typer.Option(
            [],
            "--set",
            help="Setting override key=value, repeatable (e.g. --set aux_coef=0.05); the options below win over it.",
        ),
        layer: int | None = _setting(
            MethodConfig, "layer", "--layer", help="Captured layer to diff (none: the last captured)"
        ),
        top_k: int | None = _setting(MethodConfig, "top_k", "--top-k", help="Directions / latents to keep"),
        d_sae: int | None = _setting(CoderConfig, "d_sae", "--d-sae", help="SAE / crosscoder width"),
        k: int | None = _setting(CoderConfig, "k", "--k", help="BatchTopK: active latents per token on average"),
        steps: int | None = _setting(CoderConfig, "steps", "--steps", help="Training steps"),
        batch_size: int | None = _setting(CoderConfig, "batch_size", "--batch-size", help="Training batch (tokens)"),
        lr: float | None = _setting(CoderConfig, "lr", "--lr", help="Adam learning rate"),
        seed: int | None = _setting(MethodConfig, "seed", "--seed", help="Random seed"),
        sae_path: str | None = _setting(
            SAEDiffConfig,
            "sae_path",
            "--sae-path",
            help="sae method: a SAELens SAE folder to use instead of training one",
        ),
        sparse_decoder: bool | None = _setting(
            CoderConfig,
            "sparse_decoder",
            "--sparse-decoder/--dense-decoder",
            help="Decode by gathering active decoder rows",
        ),
        aux_k: int | None = _setting(
            CoderConfig, "aux_k", "--aux-k", help="Aux-k loss on dead latents (Gao et al. use 512); 0 = off"
        ),
        device: str | None = _setting(
            CoderConfig,
            "device",
            "--device",
            help="Training device (and the evidence model's): auto (a GPU when visible), cpu, cuda, cuda:N",
        ),
        evidence: bool = typer.Option(
            True,
            "--evidence/--no-evidence",
            help="Write evidence.json (snippets, logit lens, base vs ft means); loads the base model.",
        ),
    ) -> None:
        """Fit a diffing method on a store and export its ranked directions with evidence."""
        from persona_diff.activations import ActivationStore
        from persona_diff.config import load_config, to_dict
        from persona_diff.diffing import get_method
        from persona_diff.diffing.base import config_fields
        from persona_diff.diffing.evidence import export_directions
        from persona_diff.errors import ConfigError

        cls = get_method(method)
        known = config_fields(cls.config_cls)
        given: dict[str, Any] = {
            "layer": layer,
            "top_k": top_k,
            "d_sae": d_sae,
            "k": k,
            "steps": steps,
            "batch_size": batch_size,
            "lr": lr,
            "seed": seed,
            "sae_path": sae_path,
            "sparse_decoder": sparse_decoder,
            "aux_k": aux_k,
            "device": device if "device" in known else None,
        }  # --device also places the evidence model
        given = {key: v for key, v in given.items() if v is not None}
        if bad := [key for key in given if key not in known]:
            opts = ", ".join("--" + key.replace("_", "-") for key in bad)
            raise ConfigError(f"{opts}: not a setting of the {method} method; its settings are {', '.join(known)}")
        cfg = dataclasses.replace(load_config(cls.config_cls, config, override), **given)
        st = ActivationStore(store)
        out.mkdir(parents=True, exist_ok=True)
        (out / "cfg.json").write_text(json.dumps({"method": method, "store": str(store), **to_dict(cfg)}, indent=1))
        result = cls(cfg, out_dir=out).fit(st)
        model = tok = None
        if evidence:
            from persona_diff.models import load_model

            lm = load_model(st.models["base"], device=device or str(getattr(cfg, "device", "auto")))
            st.check_arch(getattr(lm.model.config, "model_type", None), int(lm.model.config.hidden_size))
            model, tok = lm.model, lm.tokenizer
        export_directions(result, out, st if evidence else None, tok, model)
        for row in result.rows()[: cfg.top_k]:
            typer.echo(f"#{row['rank']} latent {row['latent_id']} score {row['score']:.4f}")
        typer.echo(f"{method}: {len(result.scores)} directions at layer {result.layer} in {out}")
