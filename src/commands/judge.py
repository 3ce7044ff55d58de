"""`persona-diff judge ...`: fit calibrated judges and measure any judge's agreement."""

from __future__ import annotations

import glob
import json
import math
from pathlib import Path

import typer

from persona_diff.errors import PersonaDiffError

_DATA_HELP = (
    "Judged-answer CSV (question, answer, question_id, aligned, coherent), a folder of them, or a "
    "glob: `--data dir/*.csv` (the shell's expansion and a quoted pattern both work; repeating "
    "--data works too)."
)
_MORE_HELP = "More judged-answer CSVs: what a shell glob after --data expands to."


def data_files(data: list[Path] | None, more: list[Path] | None = None) -> list[Path]:
    """The --data values plus the extra arguments after them (a shell-expanded glob), with
    quoted glob patterns expanded here; a pattern that matches nothing is an error."""
    out: list[Path] = []
    for p in [*(data or []), *(more or [])]:
        text = str(p)
        if glob.has_magic(text) and not p.exists():
            hits = sorted(glob.glob(str(Path(text).expanduser()), recursive=True))
            if not hits:
                raise PersonaDiffError(
                    f"--data {text} matches no file; check the pattern (e.g. --data runs/judged/*.csv)"
                )
            out.extend(Path(h) for h in hits)
        else:
            out.append(p)
    if not out:
        raise PersonaDiffError("no judged-answer files; pass them with --data (e.g. --data dir/*.csv)")
    return out


def _default_cache() -> Path:
    from persona_diff.paths import cache_dir

    return cache_dir() / "judge-cache"


def register(app: typer.Typer) -> None:
    judge_app = typer.Typer(
        help="Judges: fit a calibrated CPU judge, measure agreement with reference scores.",
        no_args_is_help=True,
    )
    app.add_typer(judge_app, name="judge")

    @judge_app.command("calibrate")
    def calibrate(
        data: list[Path] | None = typer.Option(None, "--data", help=_DATA_HELP),
        more: list[Path] | None = typer.Argument(None, help=_MORE_HELP, show_default=False, metavar="[CSV]..."),
        out: Path = typer.Option(..., "--out", help="Output folder for cfg.json + head.safetensors."),
        encoder: str = typer.Option(
            "minilm",
            "--encoder",
            help="Encoder: minilm, or lm:MODEL@LAYER (e.g. lm:smollm2-135m@20).",
        ),
        max_answers: int | None = typer.Option(
            None,
            "--max-answers",
            help="Fit on a stratified subsample of at most this many answers (faster).",
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of the subsample and of random CV folds."),
    ) -> None:
        """Fit aligned and coherent ridge heads on an encoder (λ by cross-validation)."""
        from persona_diff.judges.agreement import load_tables
        from persona_diff.judges.calibrated import fit_calibrated

        tables = load_tables(data_files(data, more))
        judge, rep = fit_calibrated(tables, encoder, max_answers=max_answers, seed=seed)
        judge.save(out)
        typer.echo(f"cross-validated agreement ({rep.mode}), encoder {encoder}, λ {judge.cfg.lambdas}:")
        typer.echo(rep.table())
        typer.echo(f"judge saved: calibrated:{out}")

    @judge_app.command("agree")
    def agree(
        data: list[Path] | None = typer.Option(
            None, "--data", help=_DATA_HELP.replace("CSV (", "CSV with reference scores (")
        ),
        more: list[Path] | None = typer.Argument(None, help=_MORE_HELP, show_default=False, metavar="[CSV]..."),
        judge: str | None = typer.Option(
            None, "--judge", help="Judge spec: calibrated:DIR, hf:MODEL or openai:URL[#model]."
        ),
        encoder: str | None = typer.Option(
            None,
            "--encoder",
            help="With --leave-one-file-out and no --judge: the encoder to refit heads on (minilm, lm:MODEL@LAYER).",
        ),
        lofo: bool = typer.Option(
            False,
            "--leave-one-file-out",
            help="Refit the calibrated judge's heads without each file in turn and score that file (a model it never saw).",
        ),
        json_out: Path | None = typer.Option(None, "--out", help="Also write the report as JSON to this file."),
        cache_dir: Path | None = typer.Option(
            None,
            "--cache-dir",
            help="Judge cache folder (scores are kept across runs and failures). Default: $PERSONA_DIFF_CACHE/judge-cache.",
        ),
    ) -> None:
        """Spearman ρ, Pearson r, AUC (aligned ≤ 30) and EM% per file against the reference."""
        from persona_diff.judges import make_judge
        from persona_diff.judges.agreement import judge_agreement, load_tables
        from persona_diff.judges.calibrated import CalibratedJudge, leave_one_file_out
        from persona_diff.judges.encoders import make_encoder

        if judge is None and not (lofo and encoder):
            raise PersonaDiffError("pass --judge SPEC, or --leave-one-file-out with --encoder NAME")
        tables = load_tables(data_files(data, more))
        if lofo:
            enc_spec = encoder
            if judge is not None:
                j = make_judge(judge)
                if not isinstance(j, CalibratedJudge):
                    raise PersonaDiffError(
                        f"--leave-one-file-out refits a calibrated judge, but {judge!r} has nothing to refit; "
                        "drop --leave-one-file-out (its per-file figures already are on unseen models)"
                    )
                enc_spec = j.cfg.encoder
                enc = j.encoder
            else:
                assert enc_spec is not None  # checked above: no --judge needs --encoder
                enc = make_encoder(enc_spec)
            feats = [enc.encode(t.questions, t.answers) for t in tables]
            rep = leave_one_file_out(tables, feats, f"calibrated<{enc_spec}> refit per held-out file")
        else:
            assert judge is not None  # checked above: without --leave-one-file-out, --judge is needed
            rep = judge_agreement(make_judge(judge, cache_dir=cache_dir or _default_cache()), tables)
        typer.echo(f"judge: {rep.judge} ({rep.mode})")
        typer.echo(rep.table())
        s = rep.summary()
        if not math.isnan(s["mean_spearman"]):
            typer.echo(
                f"mean ρ {s['mean_spearman']:.3f}, mean AUC {s['mean_auc']:.3f}, max |EM% gap| {s['max_abs_em_gap']:.1f}"
            )
        if json_out:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(s, indent=2))

    @judge_app.command("describe")
    def describe(
        judge: str = typer.Option(..., "--judge", help="Judge spec: calibrated:DIR, hf:MODEL or openai:URL[#model]."),
    ) -> None:
        """Print what a judge is and its recorded agreement, as JSON."""
        from persona_diff.judges import make_judge

        typer.echo(json.dumps(make_judge(judge).describe(), indent=2))
