"""The default judge shipped with the package, its recipe and its refit.

``make_judge("default")`` is the calibrated judge in ``resources/judges/default``
(`SHIPPED_JUDGE`): fitted by `fit_default_judge` on the published GPT-4o-judged files, it
needs no reference data at run time. Refit it exactly with ``python
scripts/fit_default_judge.py`` (``--check`` compares a refit with the shipped files).
"""

from __future__ import annotations

import glob
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch

from persona_diff.errors import PersonaDiffError
from persona_diff.judges.agreement import AgreementReport, load_tables
from persona_diff.judges.calibrated import CalibratedJudge, check_judge_files
from persona_diff.judges.encoders import Encoder
from persona_diff.judges.fit import fit_calibrated
from persona_diff.judges.ridge import LAMBDAS
from persona_diff.log import get_logger
from persona_diff.paths import RESOURCES, reference_roots

log = get_logger(__name__)

# The recipe of the shipped default judge. SmolLM2's residual stream at block 14:
# leave-one-file-out ρ 0.68 on this 1,500-answer subsample and 0.72 on all 5,040 answers,
# against MiniLM's 0.54 / 0.60 (BENCHMARKS.md); it costs ~0.2 s an answer on 2 CPU cores, so
# a refit (`python scripts/fit_default_judge.py`) takes a few minutes.
DEFAULT_ENCODER = "lm:smollm2-135m@14"
DEFAULT_MAX_ANSWERS = 1500
DEFAULT_SEED = 0
SHIPPED_JUDGE = RESOURCES / "judges" / "default"
REFIT_COMMAND = "python scripts/fit_default_judge.py"
FALLBACK_JUDGE = "hf:smollm2-135m"


def find_reference_csvs() -> list[Path]:
    """Judged-answer CSVs (``**/judged_responses/*.csv``) from the first reference root that has
    some (`persona_diff.paths.reference_roots`)."""
    for root in reference_roots():
        pattern = str(root / "**" / "judged_responses" / "*.csv")
        hits = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
        if hits:
            return hits
    return []


def _reference_relative(path: str | Path) -> str:
    """`path` relative to the reference root that holds it (POSIX), else its file name: a
    shipped cfg never records this machine's folders."""
    p = Path(path).resolve()
    for root in reference_roots():
        try:
            return p.relative_to(root.resolve()).as_posix()
        except ValueError:
            continue
    return p.name


def fit_default_judge(
    csvs: Sequence[str | Path] | None = None, encoder: Encoder | str | None = None
) -> tuple[CalibratedJudge, AgreementReport]:
    """Fit the default judge with the shipped recipe: `DEFAULT_ENCODER` on a stratified
    subsample of `DEFAULT_MAX_ANSWERS` answers (seed `DEFAULT_SEED`), λ from `LAMBDAS` by
    leave-one-file-out CV, on `csvs` (default: the reference judged CSVs). Training files are
    recorded by their path relative to the reference root and their sha256."""
    files = find_reference_csvs() if csvs is None else [Path(c) for c in csvs]
    if not files:
        raise PersonaDiffError(
            "no judged-answer CSVs to fit the default judge on; set PERSONA_DIFF_REFERENCE_DATA "
            "to a folder holding model-organisms-em/judged_responses/*.csv"
        )
    tables = load_tables(files)
    judge, rep = fit_calibrated(
        tables,
        DEFAULT_ENCODER if encoder is None else encoder,
        lambdas=LAMBDAS,
        max_answers=DEFAULT_MAX_ANSWERS,
        seed=DEFAULT_SEED,
    )
    for f in judge.cfg.training_files:
        f["path"] = _reference_relative(f["path"])
    from persona_diff import __version__

    judge.cfg.provenance = {
        "recipe": (
            f"fit_default_judge: encoder {judge.cfg.encoder}, max_answers {DEFAULT_MAX_ANSWERS}, "
            f"seed {DEFAULT_SEED}, {len(LAMBDAS)} λ in [{LAMBDAS[0]:g}, {LAMBDAS[-1]:g}]"
        ),
        "refit": REFIT_COMMAND,
        "persona_diff": __version__,
        "torch": torch.__version__,
    }
    return judge, rep


def save_default_judge(judge: CalibratedJudge, out: str | Path | None = None) -> Path:
    """Write `judge` to `out` (the shipped folder by default), replacing it in one step."""
    out = Path(SHIPPED_JUDGE if out is None else out)
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    judge.save(tmp)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    judge.path, judge.spec = out.resolve(), f"calibrated:{out}"
    return out


def shipped_judge_key() -> str:
    """What the shipped judge's outputs depend on, wherever the package is installed: its name
    and a hash of its heads (a refit in a new release reruns what it judged)."""
    from persona_diff.fileio import sha256_file
    from persona_diff.judges.calibrated import SHIPPED_NAME

    return f"{SHIPPED_NAME}#{sha256_file(SHIPPED_JUDGE / 'head.safetensors')[:12]}"


def ensure_default_judge() -> tuple[str, bool]:
    """The default judge's spec and whether it is calibrated.

    That is the calibrated judge shipped with the package (`SHIPPED_JUDGE`, fitted with
    `fit_default_judge`): no reference data and no fit needed. Only when its files are
    missing or corrupt does it log a warning naming the fix and return the uncalibrated
    fallback `FALLBACK_JUDGE` with False.
    """
    try:
        check_judge_files(SHIPPED_JUDGE)
    except PersonaDiffError as e:
        log.warning(
            "the shipped calibrated judge is missing or corrupt (%s): judging with the "
            "UNCALIBRATED fallback %s, so judge-based numbers are not trustworthy. Fix: reinstall "
            "persona-diff, or refit it from the reference data with `%s` in a source checkout, "
            "or pass a judge you fitted (`persona-diff judge calibrate ... --out DIR`, then "
            "--judge calibrated:DIR)",
            e,
            FALLBACK_JUDGE,
            REFIT_COMMAND,
        )
        return FALLBACK_JUDGE, False
    return f"calibrated:{SHIPPED_JUDGE}", True
