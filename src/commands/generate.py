"""`persona-diff generate`: sample answers to a questions file as JSONL."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("generate")
    def generate(
        model: str = typer.Option(
            ..., "--model", help="Model spec, or backend spec (hf:SPEC, openai:URL#model, vllm:SPEC)."
        ),
        questions: Path = typer.Option(
            ..., "--questions", help="Questions file: Betley-format YAML, a plain list, or JSONL."
        ),
        out: Path = typer.Option(
            ...,
            "--out",
            help="Output JSONL (question_id, paraphrase, sample, answer). Existing rows are kept and skipped.",
        ),
        samples: int = typer.Option(1, "--samples", help="Samples per paraphrase."),
        max_new_tokens: int = typer.Option(128, "--max-new-tokens", help="Maximum new tokens per answer."),
        temperature: float = typer.Option(1.0, "--temperature", help="Sampling temperature (0 = greedy)."),
        top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling threshold."),
        seed: int = typer.Option(0, "--seed", help="Random seed."),
        batch_size: int = typer.Option(16, "--batch-size", help="Prompts per forward pass (HF backend)."),
        system: str | None = typer.Option(None, "--system", help="System prompt for questions that carry none."),
        paraphrases: str = typer.Option("all", "--paraphrases", help="'all' or 'first': which paraphrases to ask."),
    ) -> None:
        """Sample answers from a model for every question (resumable)."""
        from persona_diff.generation import SamplingParams, load_questions, make_backend
        from persona_diff.generation.runner import generate_answers

        qs = load_questions(questions)
        backend = make_backend(model, batch_size=batch_size)
        params = SamplingParams(
            temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, n=samples, seed=seed
        )
        rows = generate_answers(backend, qs, params, out, system=system, first_paraphrase_only=paraphrases == "first")
        for r in rows[:8]:
            typer.echo(f"[{r['question_id']}#{r['sample']}] {r['answer'][:200]!r}")
        typer.echo(f"{len(rows)} answers in {out}")
