"""Refit the calibrated judge that ships with persona-diff (`make_judge("default")`).

    python scripts/fit_default_judge.py            # refit, write src/resources/judges/default
    python scripts/fit_default_judge.py --check    # refit, compare with the shipped files, write nothing

The recipe is `persona_diff.judges.calibrated.fit_default_judge`: SmolLM2-135M block-14
residual stream (`DEFAULT_ENCODER`), a stratified subsample of 1,500 answers (seed 0), ridge
λ by leave-one-file-out CV, fitted on the GPT-4o-judged CSVs under the reference data
(``model-organisms-em/judged_responses/*.csv``; set PERSONA_DIFF_REFERENCE_DATA, or keep
``../shared/data`` beside the checkout). About 4 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from persona_diff.judges.calibrated import (
    SHIPPED_JUDGE,
    CalibratedJudge,
    fit_default_judge,
    save_default_judge,
)

RTOL = 1e-4  # per tensor: max |Δ| / max |shipped|; float32 features vary a little across BLAS builds


def differences(new: CalibratedJudge, old: CalibratedJudge) -> tuple[list[str], float]:
    """What differs between two fitted judges beyond `RTOL` (empty when they match), and the
    largest relative tensor difference."""
    out: list[str] = []
    worst = 0.0
    if set(new.t) != set(old.t):
        out.append(f"tensors differ: {sorted(set(new.t) ^ set(old.t))}")
    for k in sorted(set(new.t) & set(old.t)):
        a, b = new.t[k], old.t[k]
        if a.shape != b.shape:
            out.append(f"{k}: shape {a.shape} != {b.shape}")
            continue
        rel = float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-12)) if a.size else 0.0
        worst = max(worst, rel)
        if rel > RTOL:
            out.append(f"{k}: max relative difference {rel:.2g} > {RTOL:g}")
    for name in ("encoder", "dim", "metrics", "lambdas", "n_train", "cv", "subsample"):
        if getattr(new.cfg, name) != getattr(old.cfg, name):
            out.append(f"cfg.{name}: {getattr(new.cfg, name)!r} != {getattr(old.cfg, name)!r}")

    def files(j: CalibratedJudge) -> list[tuple[str, str, int]]:
        return [(f["name"], f["sha256"], f["n"]) for f in j.cfg.training_files]

    if files(new) != files(old):
        out.append(f"training files: {files(new)} != {files(old)}")
    return out, worst


def main(argv: list[str] | None = None, encoder: str | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data",
        type=Path,
        action="append",
        default=None,
        help="judged-answer CSV or folder (repeatable); default: the reference judged_responses CSVs",
    )
    ap.add_argument("--out", type=Path, default=SHIPPED_JUDGE, help=f"output folder (default {SHIPPED_JUDGE})")
    ap.add_argument(
        "--check",
        action="store_true",
        help="refit and compare with the judge in --out (the shipped one by default); write nothing",
    )
    args = ap.parse_args(argv)
    csvs = None
    if args.data:
        csvs = [c for d in args.data for c in (sorted(d.glob("*.csv")) if d.is_dir() else [d])]
    judge, rep = fit_default_judge(csvs, encoder=encoder)  # `encoder`: tests swap in a tiny one
    print(f"cross-validated agreement ({rep.mode}), encoder {judge.cfg.encoder}, λ {judge.cfg.lambdas}:")
    print(rep.table())
    if args.check:
        old = CalibratedJudge.load(args.out, check_probe=False)
        diff, worst = differences(judge, old)
        for line in diff:
            print(f"DIFFERS {line}")
        verdict = "differs from" if diff else "reproduces"
        print(f"refit {verdict} {args.out} (largest relative tensor difference {worst:.2g}, tolerance {RTOL:g})")
        return 1 if diff else 0
    save_default_judge(judge, args.out)
    print(f"default judge written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
