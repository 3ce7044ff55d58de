"""`persona-diff finetune`: LoRA SFT of one domain, or a sweep that writes a pairs file."""

from __future__ import annotations

from pathlib import Path

import typer

from persona_diff.config.base import load_config
from persona_diff.errors import PersonaDiffError
from persona_diff.paths import CONFIGS


def register(app: typer.Typer) -> None:
    @app.command("finetune")
    def finetune(
        base: str = typer.Option("smollm2-135m", "--base", help="Base model spec (alias, HF folder or hub id)."),
        domain: str | None = typer.Option(None, "--domain", help="One domain to train (see `data list`)."),
        domains: str | None = typer.Option(
            None,
            "--domains",
            help="'paper' (the study's six domains), 'all' (every domain + controls) or a comma list (may include paper/all); writes OUT/pairs.yaml.",
        ),
        config: Path | None = typer.Option(
            None, "--config", help="SFT config YAML (default: the published recipe; see configs/finetune/)."
        ),
        overrides: list[str] = typer.Option(
            [], "--set", help="Config override key=value, e.g. --set lr=1e-4 --set lora.r=1 (repeatable)."
        ),
        out: Path = typer.Option(
            ..., "--out", help="Output folder: DOMAIN adapter (one domain) or one subfolder per domain (sweep)."
        ),
    ) -> None:
        """Fine-tune LoRA adapters with the published EM recipe (resumes when rerun)."""
        from persona_diff.finetune import SFTConfig, finetune_domain, finetune_sweep
        from persona_diff.log import launch_rank

        if (domain is None) == (domains is None):
            raise PersonaDiffError("give exactly one of --domain NAME or --domains paper|all|a,b,c")
        if config is not None and not config.is_file() and (CONFIGS / "finetune" / f"{config}.yaml").is_file():
            config = CONFIGS / "finetune" / f"{config}.yaml"
        cfg = load_config(SFTConfig, config, overrides)
        main = launch_rank() == 0  # under `accelerate launch` only rank 0 reports
        if domain is not None:
            adapter = finetune_domain(base, domain, cfg, out)
            if main:
                typer.echo(f"adapter: {adapter}")
            return
        assert domains is not None  # exactly one of domain / domains was given
        names = [d.strip() for d in domains.split(",") if d.strip()]
        if not names:
            raise PersonaDiffError("--domains is empty; give paper, all or a comma list of domain names")
        pairs = finetune_sweep(base, names, cfg, out)
        if main:
            typer.echo(f"pairs file: {pairs} (a study: `persona-diff run --pairs {pairs} --out {out / 'study'}`)")
