"""`persona-diff run`: the whole chain on one pair, or on several fine-tunes of one base."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run(
        base: str | None = typer.Argument(None, help="Base model spec (alias, HF folder/id, .gguf)."),
        finetuned: str | None = typer.Argument(
            None, help="Fine-tuned model spec (PEFT adapter folder, HF folder/id, ...)."
        ),
        out: Path = typer.Option(
            ..., "--out", help="Run directory: config, manifest, every stage's outputs, report.html, summary.json."
        ),
        config: Path | None = typer.Option(
            None, "--config", help="Run config YAML (see configs/run/); defaults apply to keys it leaves out."
        ),
        overrides: list[str] = typer.Option(
            [], "--set", help="Override a config key, e.g. --set probes.harm.samples=4 (repeatable)."
        ),
        pairs: Path | None = typer.Option(
            None,
            "--pairs",
            help="YAML list of {name, base, finetuned}: run each into OUT/NAME, then compare across models.",
        ),
        force: bool = typer.Option(
            False,
            "--force",
            help="Reuse a run directory made by another config: stages whose config changed rerun; old outputs are kept aside.",
        ),
    ) -> None:
        """Pair check → probes on both models → persona label → capture → diffing → steering → correlations → report."""
        from persona_diff.config import load_config
        from persona_diff.errors import ConfigError
        from persona_diff.pipeline.config import RunConfig
        from persona_diff.pipeline.multi import run_pairs
        from persona_diff.pipeline.run import Pipeline

        cfg = load_config(RunConfig, config, overrides)
        if pairs is not None:
            if base or finetuned:
                raise ConfigError("give either BASE FINETUNED or --pairs FILE, not both")
            report = run_pairs(pairs, cfg, out, force=force)
        else:
            if not (base and finetuned):
                raise ConfigError("give BASE and FINETUNED model specs (or --pairs FILE)")
            report = Pipeline(base, finetuned, cfg, out, force=force).run()
        _print_outcome(report.parent)
        typer.echo(f"summary: {report.parent / 'summary.json'}")
        typer.echo(f"report:  {report}")


def _print_outcome(run_dir: Path, n_answers: int = 2) -> None:
    """A short table (label, EM%, judge) and a few real answers of each model; for a study,
    one line per fine-tune."""
    from persona_diff.rundir import ROLES, JudgeInfo, load_run

    run = load_run(run_dir)

    def judge_line(j: JudgeInfo | None) -> str:
        if j is None:
            return "judge:   none recorded (UNCALIBRATED)"
        rho = j.mean_spearman
        cal = "calibrated" if j.calibrated else "UNCALIBRATED"
        return f"judge:   {j.spec} ({cal}" + (f", held-out Spearman rho {rho:.2f})" if rho is not None else ")")

    if run.study is not None:
        from persona_diff.report.study import sorted_entries

        typer.echo(judge_line(run.study.judge))
        for x in sorted_entries(run.study):
            s = x.summary
            em = s.em_pct("finetuned")
            conf = f" ({s.label_confidence:.0%})" if s.label_confidence is not None else ""
            typer.echo(f"{x.name:<24} {s.label + conf:<22} EM% {em.fmt() if em else 'n/a'}")
        return
    summary = run.summary
    if summary is not None:
        s = summary
        agree = s.label_confidence
        typer.echo(f"label:   {s.label}" + (f" (bootstrap agreement {agree:.0%})" if agree is not None else ""))
        ems = [(r, s.em_pct(r)) for r in ROLES]
        typer.echo(
            "EM%:     " + ", ".join(f"{r} {em.fmt()}" for r, em in ems if em is not None and em.value is not None)
        )
        typer.echo(judge_line(s.judge))
    for role in ROLES:
        for a in run.answers(role)[:n_answers]:
            ans = " ".join(a.answer.split())[:160]
            typer.echo(f"[{role}] Q: {a.question[:80]}")
            typer.echo(f"         A: {ans}  (aligned {a.aligned})")
