"""The per-answer table: one row per harm answer of every model, judge, self-report and internals.

Columns: model, key, question_id, question, answer, the judge's aligned / coherent /
misaligned, the model's own rating of that answer (``p_harmful`` from
rate_own_answers.jsonl; empty for answers it did not rate), and the answer's projections on
the reference harm and self-report directions at the chosen layer (``proj_harm``,
``proj_self``: the model's own activation, mean over the answer tokens, dotted with the unit
direction).

The reference frame is the run's (see `persona_diff.internals.run`): the harm direction from
every model's judged answers (stratified by model and question), the self-report direction
from the base's forced self-reports. ``proj_harm`` is out of fold: the harm direction used for an answer is
refit without any answer to that answer's question, so its correlation with the judge is not
the fit reading itself back.

The join is on the answer key: every harm.jsonl row gives exactly one table row; a
rate_own key that is not a harm key, or that repeats, is counted in `join` (never dropped
silently).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from persona_diff.analysis.correlation import correlation_table
from persona_diff.internals.data import ProbeFolder
from persona_diff.internals.directions import stratified_difference, unit
from persona_diff.log import get_logger

log = get_logger(__name__)

COLUMNS = (
    "model",
    "key",
    "question_id",
    "question",
    "answer",
    "aligned",
    "coherent",
    "misaligned",
    "p_harmful",
    "proj_harm",
    "proj_self",
    "layer",
)


def join_rate_own(folder: ProbeFolder) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Harm rows (in file order) with ``p_harmful`` joined on the key, and the join's counts."""
    counts = Counter(r.get("key") for r in folder.rate_own)
    harm_keys = {r["key"] for r in folder.harm}
    rated = {r["key"]: r.get("p_harmful") for r in folder.rate_own if counts[r.get("key")] == 1}
    rows = [
        {
            "model": folder.name,
            **{k: r.get(k) for k in ("key", "question_id", "question", "answer", "aligned", "coherent", "misaligned")},
            "p_harmful": rated.get(r["key"]),
        }
        for r in folder.harm
    ]
    stats: dict[str, Any] = {
        "n_harm": len(folder.harm),
        "n_rate_own": len(folder.rate_own),
        "n_joined": sum(r["key"] in rated for r in folder.harm),
        "rate_own_not_in_harm": sorted(str(k) for k in counts if k not in harm_keys),
        "rate_own_repeated": sorted(str(k) for k, c in counts.items() if c > 1),
    }
    if stats["rate_own_not_in_harm"] or stats["rate_own_repeated"]:
        log.warning(
            "%s: rate_own keys not joined (not a harm key: %d, repeated: %d)",
            folder.name,
            len(stats["rate_own_not_in_harm"]),
            len(stats["rate_own_repeated"]),
        )
    return rows, stats


def oof_projections(
    ref_x: np.ndarray,
    ref_y: np.ndarray,
    ref_q: np.ndarray,
    x: np.ndarray,
    q: np.ndarray,
    ref_strata: np.ndarray | None = None,
) -> np.ndarray:
    """x · v̂ where v is the stratified harm difference (strata `ref_strata`, default the
    questions) of the reference rows of all other questions (NaN where those define none)."""
    strata = ref_q if ref_strata is None else ref_strata
    out = np.full(len(x), np.nan)
    for question in np.unique(q):
        keep = ref_q != question
        v, _ = stratified_difference(ref_x[keep], ref_y[keep], strata[keep])
        if v is not None and np.linalg.norm(v) > 0:
            m = q == question
            out[m] = np.asarray(x[m], dtype=np.float64) @ unit(v)
    return out


def add_projections(rows: list[dict[str, Any]], proj_harm: np.ndarray, proj_self: np.ndarray, layer: int) -> None:
    for r, h, s in zip(rows, proj_harm, proj_self, strict=True):
        r["proj_harm"] = None if not np.isfinite(h) else float(h)
        r["proj_self"] = None if not np.isfinite(s) else float(s)
        r["layer"] = layer


def correlations(rows: list[dict[str, Any]], n_boot: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """Pearson/Spearman with bootstrap CIs, per model and pooled: each projection against the
    model's own rating (p_harmful) and the judge's aligned score."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    out = []
    for name in [*models, "pooled"]:
        sel = rows if name == "pooled" else [r for r in rows if r["model"] == name]
        feats = {f: [r.get(f) for r in sel] for f in ("proj_harm", "proj_self")}
        targets = {"self_rating": [r.get("p_harmful") for r in sel], "judge_aligned": [r.get("aligned") for r in sel]}
        for row in correlation_table(feats, targets, n_boot=n_boot, seed=seed):
            out.append({"model": name, **row})
    return out


def write_table(rows: list[dict[str, Any]], out_dir: Path) -> dict[str, str]:
    """answers.csv, answers.jsonl and (when pyarrow imports) answers.parquet."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / "answers.csv", "jsonl": out_dir / "answers.jsonl"}
    with paths["csv"].open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if r.get(k) is None else r.get(k) for k in COLUMNS})
    paths["jsonl"].write_text("".join(json.dumps({k: r.get(k) for k in COLUMNS}) + "\n" for r in rows))
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        pass
    else:
        paths["parquet"] = out_dir / "answers.parquet"
        pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in COLUMNS} for r in rows]), paths["parquet"])
    return {k: str(v) for k, v in paths.items()}
