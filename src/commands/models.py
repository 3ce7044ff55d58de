"""`persona-diff models inspect SPEC`."""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    models = typer.Typer(help="Inspect checkpoints.", no_args_is_help=True)

    @models.command("inspect")
    def inspect(
        spec: str = typer.Argument(
            ..., help="Model spec: alias (smollm2-135m), HF folder or id, PEFT adapter folder, or .gguf file."
        ),
        base: str | None = typer.Option(
            None, "--base", help="Base model for a PEFT adapter (default: read from adapter_config.json)."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
        trust_remote_code: bool = typer.Option(
            False, "--trust-remote-code", help="Allow custom model code from the checkpoint (off by default)."
        ),
    ) -> None:
        """Show architecture, layer count, d_model, chat template and adapter info."""
        from persona_diff.models import load_model

        lm = load_model(spec, base=base, trust_remote_code=trust_remote_code)
        info = lm.describe()
        if as_json:
            typer.echo(json.dumps(info, indent=2))
            return
        for k, v in info.items():
            typer.echo(f"{k:14s} {v}")

    app.add_typer(models, name="models")
