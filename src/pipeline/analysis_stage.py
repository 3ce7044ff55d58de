"""The analysis stage of a pair: per answer, each method's persona feature against the judge's
scores and the model's own self-report of that answer.

Writes ``analysis/correlations.json`` ({"rows": [CorrelationRow]}) and
``analysis/feature_vs_selfreport.json`` (`FeatureScatter`): the scatter's y is a self-report
per answer, the model's own rating of its answer (``rate_own``: P(harmful)), else its
predicted aligned score (``predict``); never the judge's score.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from persona_diff.fileio import read_jsonl
from persona_diff.rundir import ROLES, CorrelationRow, FeatureScatter, RunLayout
from persona_diff.rundir.io import write_json

SELF_REPORTS = (
    ("self_rated_harmful", "model's own rating of its answer: P(harmful)"),
    ("self_predicted_aligned", "model's predicted aligned score of its own answer"),
)


def _project(h: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return h.float() @ v


def _features(run_dir: Path, methods: list[str], store: Any, n_streams: int) -> dict[str, np.ndarray]:
    """Per answer: the mean projection of the fine-tuned model's activations over the answer's
    tokens on each method's top direction."""
    from persona_diff.activations.reduce import map_tokens
    from persona_diff.diffing import DiffResult

    sid = store.token_info()["stream"].numpy()
    feats: dict[str, np.ndarray] = {}
    for name in methods:
        path = run_dir / "diffing" / name
        if not (path / "directions.json").is_file():
            continue
        r = DiffResult.load(path)
        v = r.directions[0] * r.signs[0]
        v = (v / v.norm().clamp_min(1e-12)).float()
        proj = map_tokens(store, r.layer, "ft", partial(_project, v=v)).double().numpy()
        sums = np.bincount(sid, weights=proj, minlength=n_streams)
        cnt = np.bincount(sid, minlength=n_streams)
        feats[f"{name}:L{r.layer}"] = np.where(cnt > 0, sums / np.maximum(cnt, 1), np.nan)
    return feats


def _per_answer(lay: RunLayout, meta: list[dict[str, Any]], file: str, value: str) -> np.ndarray:
    vals = {
        f"{role}|{row['key']}": row[value]
        for role in ROLES
        for row in read_jsonl(lay.probes(role) / file)
        if row.get(value) is not None
    }
    return np.array([vals.get(f"{m.get('author')}|{m.get('key')}", np.nan) for m in meta], float)


def _nan_list(x: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else float(v) for v in x]


def analyse(run_dir: Path, d: Path, methods: list[str], store: Any, n_boot: int, seed: int) -> dict[str, Any]:
    from persona_diff.analysis.correlation import correlation_table

    lay = RunLayout(run_dir)
    streams = store.streams()
    feats = _features(run_dir, methods, store, len(streams))
    meta = [s.get("meta", {}) for s in streams]
    targets = {
        k: np.array([m.get(k) if m.get(k) is not None else np.nan for m in meta], float)
        for k in ("aligned", "coherent")
    }
    targets["self_predicted_aligned"] = _per_answer(lay, meta, "predict.jsonl", "predicted")
    targets["self_rated_harmful"] = _per_answer(lay, meta, "rate_own_answers.jsonl", "p_harmful")
    rows = correlation_table(feats, targets, n_boot=n_boot, seed=seed)
    write_json(d / "correlations.json", {"rows": [CorrelationRow.from_dict(r).to_dict() for r in rows]})
    main_feat = next(iter(feats), None)
    chosen = next(((k, lab) for k, lab in SELF_REPORTS if np.isfinite(targets[k]).sum() > 1), None)
    if main_feat and chosen:
        scatter = FeatureScatter(
            _nan_list(feats[main_feat]),
            _nan_list(targets[chosen[0]]),
            [str(m.get("author", "?")) for m in meta],
            xlabel=f"persona feature ({main_feat}), fine-tuned activations",
            ylabel=chosen[1],
        )
        write_json(d / "feature_vs_selfreport.json", scatter.to_dict())
    return {"features": list(feats), "n_answers": len(streams)}
