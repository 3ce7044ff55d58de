"""The run-directory files the report reads (all optional; a missing one = "stage not run").

```
RUN_DIR/
  config.json | config.yaml        resolved run config (any mapping)
  manifest.json                    {"created", "config_hash", "versions": {pkg: ver}, "seeds": {...},
                                    "models": {"base": {...}, "ft": {...}}, "hashes": {...}}
  summary.json                     headline numbers (any flat-ish mapping), shown as key facts
  label.json                       {"label": "coherent"|"inverted"|"not-EM"|"em-unmeasured"|"undetermined",
                                    "label_text"?, "evidence": [str, ...] | {probe: {...}},
                                    "metrics": {...}, "thresholds": {...}}
  judge.json                       Judge.describe(): {"spec", "calibrated": bool,
                                    "agreement": {"mean_spearman", "mean_pearson", "mean_auc",
                                    "files": [{"file", "n", "spearman", ...}]} | null}
  probes/summary.json              {"models": {model: {probe: value | {"value", "ci": [lo, hi]}}},
                                    "diagnostics"?: {model: {probe: {"informative", "position_bias", ...}}}}
  probes/moral.json                {model: {"S", "R", "S_ci": [lo, hi], "R_ci": [lo, hi], "label"?}}
  diffing/<method>/directions.json DiffResult.save(): {"method", "layer", "directions": [rows with
                                    "rank", "latent_id", "score", ...]}
  steering/dose_response.jsonl     rows of persona_diff.steering.dose_response
  steering/summary.json            persona_diff.steering.summarize(rows, floor)
  analysis/correlations.json       {"rows": correlation_table(...) rows}
  analysis/feature_vs_selfreport.json
                                   {"feature": [...], "self_report": [...], "labels": [...],
                                    "names": [...]?, "xlabel"?, "ylabel"?}
  analysis/models_table.json       {"rows": model_table(...), "contrast": label_contrast(...)?,
                                    "correlations": cross_model_correlations(...)?}
  plots/*.png                      any other figure: embedded as it is
```
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from persona_diff.log import get_logger

log = get_logger(__name__)


def _json(path: Path) -> Any | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        log.warning("%s is not valid JSON (%s); the report treats it as missing", path, e)
        return None


def _jsonl(path: Path) -> list[dict[str, Any]] | None:
    if not path.is_file():
        return None
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn last line
    return rows


@dataclass
class RunData:
    run_dir: Path
    config: dict[str, Any] | None = None
    manifest: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    label: dict[str, Any] | None = None
    judge: dict[str, Any] | None = None
    probes: dict[str, Any] | None = None
    moral: dict[str, Any] | None = None
    diffing: dict[str, dict[str, Any]] = field(default_factory=dict)
    dose_response: list[dict[str, Any]] | None = None
    steering_summary: dict[str, Any] | None = None
    correlations: list[dict[str, Any]] | None = None
    feature_vs_selfreport: dict[str, Any] | None = None
    models_table: dict[str, Any] | None = None
    extra_plots: list[Path] = field(default_factory=list)


def load_run(run_dir: str | Path) -> RunData:
    """Read every report input that exists under `run_dir`."""
    d = Path(run_dir)
    cfg = _json(d / "config.json")
    if cfg is None and (d / "config.yaml").is_file():
        try:
            cfg = yaml.safe_load((d / "config.yaml").read_text())
        except yaml.YAMLError:
            cfg = None
    diffing = {}
    for f in sorted((d / "diffing").glob("*/directions.json")) if (d / "diffing").is_dir() else []:
        data = _json(f)
        if isinstance(data, dict):
            diffing[data.get("method", f.parent.name)] = data
    corr = _json(d / "analysis" / "correlations.json")
    if isinstance(corr, dict):
        corr = corr.get("rows")
    return RunData(
        run_dir=d,
        config=cfg,
        manifest=_json(d / "manifest.json"),
        summary=_json(d / "summary.json"),
        label=_json(d / "label.json"),
        judge=_json(d / "judge.json"),
        probes=_json(d / "probes" / "summary.json"),
        moral=_json(d / "probes" / "moral.json"),
        diffing=diffing,
        dose_response=_jsonl(d / "steering" / "dose_response.jsonl"),
        steering_summary=_json(d / "steering" / "summary.json"),
        correlations=corr,
        feature_vs_selfreport=_json(d / "analysis" / "feature_vs_selfreport.json"),
        models_table=_json(d / "analysis" / "models_table.json"),
        extra_plots=sorted((d / "plots").glob("*.png")) if (d / "plots").is_dir() else [],
    )
