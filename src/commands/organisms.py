"""`persona-diff organisms build | validate`: LoRA organisms of known persona truth, and how
well the probes and label recover that truth."""

from __future__ import annotations

from pathlib import Path

import typer

from persona_diff.config.base import load_config
from persona_diff.paths import CONFIGS


def register(app: typer.Typer) -> None:
    organisms = typer.Typer(
        help="Validation organisms: LoRA fine-tunes whose persona label is known.", no_args_is_help=True
    )

    @organisms.command("build")
    def build(
        base: str = typer.Option("smollm2-135m", "--base", help="Base model spec (alias, HF folder or hub id)."),
        out: Path = typer.Option(
            ..., "--out", help="Output folder: OUT/KIND/adapter per organism and OUT/organisms.yaml."
        ),
        kinds: str | None = typer.Option(
            None,
            "--kinds",
            help="Comma list of coherent, inverted, control, self-report-only (default: the config's, all four).",
        ),
        config: Path | None = typer.Option(
            None, "--config", help="Organism config YAML, or a name in configs/organisms/ (e.g. smollm2)."
        ),
        overrides: list[str] = typer.Option(
            [], "--set", help="Config override key=value, e.g. --set n_answers=64 --set sft.lr=2e-4 (repeatable)."
        ),
        rows_only: bool = typer.Option(
            False, "--rows-only", help="Write each organism's rows.jsonl and stop (no training)."
        ),
    ) -> None:
        """Train the organisms (resumes when rerun) and write OUT/organisms.yaml (a pairs file with truths)."""
        from persona_diff.log import launch_rank
        from persona_diff.organisms import OrganismConfig, build_organisms

        if config is not None and not config.is_file() and (CONFIGS / "organisms" / f"{config}.yaml").is_file():
            config = CONFIGS / "organisms" / f"{config}.yaml"
        if kinds is not None:
            overrides = [*overrides, f"kinds={kinds}"]
        cfg = load_config(OrganismConfig, config, overrides)
        result = build_organisms(base, cfg, out, rows_only=rows_only)
        if launch_rank() == 0:
            if rows_only:
                typer.echo(f"rows written under {result} (no training: --rows-only)")
            else:
                typer.echo(f"organisms: {result} (use with `persona-diff run --pairs {result}`)")

    @organisms.command("validate")
    def validate(
        kit: Path = typer.Argument(..., help="A kit folder from `organisms build` (or its organisms.yaml)."),
        out: Path = typer.Option(
            ..., "--out", help="Output folder: probe folders, validation.json, VALIDATION.md (reruns resume)."
        ),
        config: Path | None = typer.Option(
            None,
            "--config",
            help="Validate config YAML (judge, probes, label), or a name in configs/organisms/ (e.g. validate-smollm2).",
        ),
        overrides: list[str] = typer.Option(
            [],
            "--set",
            help="Config override key=value, e.g. --set probes.harm.samples=8 --set judge=calibrated:DIR (repeatable).",
        ),
        device: str = typer.Option(
            "auto", "--device", help="Device for local models: auto (a GPU when visible), cpu, cuda, cuda:N."
        ),
    ) -> None:
        """Probe the kit's base once and each organism, label them, and print the accuracy table.

        With `internals.enabled` (on in validate-smollm2) it then reads the models from the inside:
        harm and self-report directions, the persona map, the per-answer table and the
        leave-one-organism-out detector (OUT/internals/, in VALIDATION.md and report.html).
        """
        from persona_diff.organisms.validate import ValidateConfig, validate_kit

        if config is not None and not config.is_file() and (CONFIGS / "organisms" / f"{config}.yaml").is_file():
            config = CONFIGS / "organisms" / f"{config}.yaml"
        cfg = load_config(ValidateConfig, config, overrides)
        result = validate_kit(kit, cfg, out, device=device)
        typer.echo((out / "VALIDATION.md").read_text())
        acc = result["accuracy"]
        typer.echo(f"labels correct: {acc['correct']}/{acc['n']}; table in {out / 'VALIDATION.md'}")

    app.add_typer(organisms, name="organisms")
