"""`persona-diff steer`: a dose-response sweep along a saved direction, with a random control."""

from __future__ import annotations

from pathlib import Path

import typer

from persona_diff.errors import PersonaDiffError

_MODES = ("add", "ablate")
_POSITIONS = ("all", "prompt", "answer")


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise PersonaDiffError(f"{what} {text!r} is not a comma-separated list of numbers (e.g. 0,2,4,8)") from None


def register(app: typer.Typer) -> None:
    @app.command("steer")
    def steer_cmd(
        model: str = typer.Option(
            ..., "--model", help="Model to steer: alias, HF folder or hub id, PEFT adapter folder, .gguf."
        ),
        direction: Path = typer.Option(
            ...,
            "--direction",
            help="Direction: a folder from Direction.save, a diffing output folder (e.g. RUN/diffing/mean) or a direction .safetensors with a JSON sidecar.",
        ),
        out: Path = typer.Option(
            ...,
            "--out",
            help="Output folder: dose_response.jsonl (resumable), dose_response.answers.jsonl, summary.json, dose_response.png/.svg.",
        ),
        index: int = typer.Option(0, "--index", help="Which ranked direction of a diffing output (0 = the top one)."),
        layers: str | None = typer.Option(
            None, "--layers", help="Comma-separated blocks to steer at (default: the direction's own layer)."
        ),
        alphas: str = typer.Option(
            "0,2,4,8,16",
            "--alphas",
            help="Comma-separated α values: add α·v (mode add) or the fraction of the component removed (mode ablate).",
        ),
        unit: bool = typer.Option(
            False, "--unit", help="Normalise the direction to norm 1 first (α is then in activation units)."
        ),
        mode: str = typer.Option(
            "add", "--mode", help="add: h += α·v; ablate: remove the fraction α of h's component along v."
        ),
        positions: str = typer.Option("all", "--positions", help="Which tokens to steer: all, prompt or answer."),
        questions: Path | None = typer.Option(
            None,
            "--questions",
            help="Questions file (Betley YAML, list, JSONL). Default: Betley et al.'s first-plot questions from the reference data, else the shipped set.",
        ),
        limit_questions: int | None = typer.Option(None, "--limit-questions", help="Use only the first N questions."),
        judge: str = typer.Option(
            "default",
            "--judge",
            help="Judge spec: default (the calibrated judge shipped with the package), calibrated:DIR, hf:MODEL, openai:URL#model.",
        ),
        samples: int = typer.Option(2, "--samples", help="Answers sampled per question at each α."),
        max_new_tokens: int = typer.Option(48, "--max-new-tokens", help="Maximum new tokens per answer."),
        batch_size: int = typer.Option(16, "--batch-size", help="Generation batch size."),
        coherence_floor: float = typer.Option(
            50.0, "--coherence-floor", help="The chosen α is the largest whose coherent% stays at or above this."
        ),
        control: bool = typer.Option(
            True, "--control/--no-control", help="Also sweep a random direction of the same norm (the control)."
        ),
        seed: int = typer.Option(
            0, "--seed", help="Sampling seed, shared by every α (differences come from the steering, not the sampler)."
        ),
        base: str | None = typer.Option(
            None,
            "--base",
            help="Base model of a PEFT adapter, if its adapter_config.json does not name one that resolves.",
        ),
        device: str = typer.Option("auto", "--device", help="auto (a GPU when visible), cpu, cuda, cuda:N."),
        dtype: str = typer.Option("float32", "--dtype", help="Weights dtype: float32, bfloat16 (GPUs), float16."),
    ) -> None:
        """Dose-response sweep: EM% and coherent% as α grows along a direction, against a random control."""
        if mode not in _MODES:
            raise PersonaDiffError(f"--mode {mode!r} is not valid; use one of {', '.join(_MODES)}")
        if positions not in _POSITIONS:
            raise PersonaDiffError(f"--positions {positions!r} is not valid; use one of {', '.join(_POSITIONS)}")
        alpha_list = _floats(alphas, "--alphas")
        layer_list = [int(x) for x in _floats(layers, "--layers")] if layers else None
        if not alpha_list:
            raise PersonaDiffError("--alphas is empty; pass e.g. --alphas 0,2,4,8")

        from persona_diff.generation import load_questions
        from persona_diff.judges import make_judge
        from persona_diff.models import load_model
        from persona_diff.steering import (
            Direction,
            DoseResponseConfig,
            default_questions_file,
            sweep_direction,
        )

        d = Direction.load(direction, index)
        if unit:
            d = d.unit()
        qs = load_questions(questions or default_questions_file())[:limit_questions]
        lm = load_model(model, base=base, device=device, dtype=dtype)
        j = make_judge(judge, cache_dir=out)
        cfg = DoseResponseConfig(
            mode=mode,
            positions=positions,
            samples_per_question=samples,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            coherence_floor=coherence_floor,
            random_control=control,
            seed=seed,
            model_tag=model,
        )
        summary = sweep_direction(lm, j, qs, d, out, alpha_list, layer_list, cfg)
        for cell in summary["cells"]:
            typer.echo(
                f"layer {cell['layer']}: chosen α={cell['chosen_alpha']} EM% persona={cell['em_pct_persona']} "
                f"random={cell['em_pct_random']} baseline={cell['em_pct_baseline']}"
            )
        typer.echo(f"results in {out}")
