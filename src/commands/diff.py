"""`persona-diff diff`: ranked persona directions / latents from an activation store."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("diff")
    def diff_cmd(
        method: str = typer.Option("mean", "--method", help="mean, contrastive, sae, diff-sae or crosscoder (persona: use the Python API)."),
        store: Path = typer.Option(..., "--store", help="Store folder written by `persona-diff capture`."),
        out: Path = typer.Option(..., "--out", help="Output folder: cfg.json, directions.safetensors/.json, evidence.json, sae/ or crosscoder/."),
        layer: int | None = typer.Option(None, "--layer", help="Captured layer to diff (default: the last captured)."),
        top_k: int = typer.Option(10, "--top-k", help="Directions / latents to keep."),
        d_sae: int = typer.Option(1536, "--d-sae", help="SAE / crosscoder width."),
        k: int = typer.Option(32, "--k", help="BatchTopK: active latents per token on average."),
        steps: int = typer.Option(300, "--steps", help="Training steps."),
        batch_size: int = typer.Option(512, "--batch-size", help="Training batch (tokens)."),
        lr: float = typer.Option(1e-3, "--lr", help="Adam learning rate."),
        seed: int = typer.Option(0, "--seed", help="Random seed."),
        sae_path: str | None = typer.Option(None, "--sae-path", help="sae method: a SAELens SAE folder to use instead of training one."),
        sparse_decoder: bool = typer.Option(False, "--sparse-decoder", help="Decode by gathering active decoder rows."),
        aux_k: int = typer.Option(0, "--aux-k", help="Aux-k loss on dead latents (Gao et al. use 512); 0 = off."),
        device: str = typer.Option("auto", "--device", help="Training device (and the evidence model's): auto (a GPU when visible), cpu, cuda, cuda:N."),
        evidence: bool = typer.Option(True, "--evidence/--no-evidence", help="Write evidence.json (snippets, logit lens, base vs ft means); loads the base model."),
    ) -> None:
        """Fit a diffing method on a store and export its ranked directions with evidence."""
        from persona_diff.activations import ActivationStore
        from persona_diff.config import to_dict
        from persona_diff.diffing import DiffConfig, get_method
        from persona_diff.diffing.evidence import export_directions

        cfg = DiffConfig(layer=layer, top_k=top_k, d_sae=d_sae, k=k, steps=steps, batch_size=batch_size, lr=lr,
                         seed=seed, sae_path=sae_path, sparse_decoder=sparse_decoder, aux_k=aux_k, device=device)
        st = ActivationStore(store)
        out.mkdir(parents=True, exist_ok=True)
        (out / "cfg.json").write_text(json.dumps({"method": method, "store": str(store), **to_dict(cfg)}, indent=1))
        result = get_method(method)(cfg, out_dir=out).fit(st)
        model = tok = None
        if evidence:
            from persona_diff.models import load_model

            lm = load_model(st.models["base"], device=device)
            st.check_arch(getattr(lm.model.config, "model_type", None), int(lm.model.config.hidden_size))
            model, tok = lm.model, lm.tokenizer
        export_directions(result, out, st if evidence else None, tok, model)
        for row in result.rows()[:top_k]:
            typer.echo(f"#{row['rank']} latent {row['latent_id']} score {row['score']:.4f}")
        typer.echo(f"{method}: {len(result.scores)} directions at layer {result.layer} in {out}")
