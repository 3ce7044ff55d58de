"""Redraw the figures of a run directory from its JSON files (no model is loaded).

    python scripts/plot_run.py RUN_DIR [--which all|dose|latents|sr|feature] [--out DIR]

Figures go to OUT (default RUN_DIR/plots) as PNG and SVG. The files read are those of the run-directory
contract (`persona_diff.rundir`); a figure whose input is missing is skipped with a note.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from persona_diff.analysis import plots
from persona_diff.report import load_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path, help="a run directory")
    ap.add_argument(
        "--which", default="all", choices=["all", "dose", "latents", "sr", "feature"], help="which figure(s)"
    )
    ap.add_argument("--out", type=Path, default=None, help="output folder (default RUN_DIR/plots)")
    ap.add_argument("--top-k", type=int, default=20, help="latents in the Δ bar chart")
    args = ap.parse_args()
    if not args.run_dir.is_dir():
        raise SystemExit(f"{args.run_dir} is not a directory; pass a run directory")
    d = load_run(args.run_dir)
    out = args.out or args.run_dir / "plots"
    made: list[Path] = []

    def want(name: str) -> bool:
        return args.which in ("all", name)

    if want("dose"):
        if d.dose_response:
            made += plots.plot_dose_response([r.to_dict() for r in d.dose_response], out / "dose_response")
        else:
            print("dose: steering/dose_response.jsonl missing (stage not run)")
    if want("latents"):
        if not d.directions:
            print("latents: no diffing/*/directions.json (stage not run)")
        for method, ds in d.directions.items():
            made += plots.plot_top_latents(
                [r.to_dict() for r in ds.rows],
                out / f"top_latents_{method}",
                k=args.top_k,
                value_key="score",
                title=f"{method}: top directions",
            )
    if want("sr"):
        if d.moral:
            values = {m: s.plot_row() for m, s in d.moral.items()}
            made += plots.plot_sr_bars(values, out / "sr_bars", base="base" if "base" in values else next(iter(values)))
        else:
            print("sr: probes/moral.json missing (stage not run)")
    if want("feature"):
        f = d.feature_vs_selfreport
        if f is not None and f.feature:
            made += plots.plot_feature_vs_selfreport(
                f.feature, f.self_report, f.labels, out / "feature_vs_selfreport", names=f.names
            )
        else:
            print("feature: analysis/feature_vs_selfreport.json missing (stage not run)")
    for p in made:
        print(p)


if __name__ == "__main__":
    main()
