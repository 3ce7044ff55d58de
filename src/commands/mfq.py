"""`persona-diff mfq-score`: moral susceptibility S and robustness R from a raw ratings CSV."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def _fmt(e: dict) -> str:
    v, lo, hi = e.get("value"), e.get("ci_lo"), e.get("ci_hi")
    if v is None:
        return "inf (every repeat identical)"
    s = f"{v:.4f}"
    return s + (f"  [{lo:.4f}, {hi:.4f}]" if lo is not None and hi is not None else "")


def register(app: typer.Typer) -> None:
    @app.command("mfq-score")
    def mfq_score(
        file: Path = typer.Argument(..., help="CSV with columns persona_id, question_id, run_index, rating."),
        base: Path | None = typer.Option(None, "--base", help="The base model's CSV: also print ΔS and ΔR."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
        n_boot: int = typer.Option(1000, "--n-boot", help="Persona bootstrap replicates for the CIs."),
        seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    ) -> None:
        """Re-score published or generated MFQ ratings: S, R with persona-bootstrap 95% CIs."""
        from persona_diff.probes.mfq import score_ratings_csv
        from persona_diff.probes.stats import json_safe

        res = json_safe(score_ratings_csv(file, base, n_boot=n_boot, seed=seed))
        if as_json:
            typer.echo(json.dumps(res, indent=1))
            return
        typer.echo(f"{file}: {res['n_personas']} personas x {res['n_items']} items x {res['n_runs']} runs")
        typer.echo(f"  S (susceptibility) {_fmt(res['S'])}")
        typer.echo(f"  R (robustness)     {_fmt(res['R'])}")
        if base is not None:
            b = res["base"]
            typer.echo(f"base {base}: S {_fmt(b['S'])}; R {_fmt(b['R'])}")
            for k in ("dS", "dR"):
                v, rel = res[k], res[f"{k}_rel"]
                typer.echo(
                    f"  {k} " + ("n/a" if v is None else f"{v:+.4f}") + ("" if rel is None else f" ({100 * rel:+.1f}%)")
                )
