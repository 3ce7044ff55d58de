"""`persona-diff run --pairs FILE`: several fine-tunes of one base, then the cross-model view.

Each pair runs into `OUT/<name>/` as a full single run; the top-level `OUT/` then gets
`analysis/models_table.json` (feature shift, EM%, self-report and label per fine-tune, the
coherent-vs-inverted contrast and cross-model correlations), `summary.json` and a report.

Feature shift per model: the top mean-diff score of that run, i.e. the size of the mean
activation change (fine-tuned − base, same tokens) along its own leading direction.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from persona_diff.errors import ConfigError
from persona_diff.log import get_logger
from persona_diff.pipeline.config import RunConfig
from persona_diff.pipeline.run import Pipeline, _write_json

log = get_logger(__name__)


def read_pairs(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise ConfigError(f"pairs file {path} does not exist; `persona-diff finetune --domains all` writes one")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"pairs file {path} is not valid YAML: {e}") from None
    if isinstance(data, dict) and "pairs" in data:
        data = data["pairs"]
    if not isinstance(data, list) or not data:
        raise ConfigError(f"pairs file {path} must hold a non-empty list of {{name, base, finetuned}}")
    for i, p in enumerate(data):
        if not isinstance(p, dict) or not {"name", "base", "finetuned"} <= set(p):
            raise ConfigError(f"pairs file {path}, entry {i}: needs name, base and finetuned keys (got {p!r})")
    names = [p["name"] for p in data]
    if len(set(names)) != len(names):
        raise ConfigError(f"pairs file {path}: names must be unique ({names})")
    return data


def _self_report(probes: dict[str, Any]) -> float | None:
    """Mean signal of the self-report probes, leaving out those marked uninformative."""
    from persona_diff.probes.config import SELF_REPORT_PROBES
    from persona_diff.probes.informative import is_informative

    vals = []
    for name in SELF_REPORT_PROBES:
        if is_informative(probes.get(name)) is False:
            continue
        sig = (probes.get(name) or {}).get("signal")
        if isinstance(sig, dict) and sig.get("value") is not None:
            vals.append(sig["value"])
    return sum(vals) / len(vals) if vals else None


def record(run_dir: Path, name: str) -> Any:
    from persona_diff.analysis.models_table import ModelRecord

    def read(p: str) -> Any:
        f = run_dir / p
        return json.loads(f.read_text()) if f.is_file() else {}

    label = read("label.json").get("label", "undetermined")
    raw = read("probes/summary.json").get("raw", {})
    ft = (raw.get("finetuned") or {}).get("probes", {})
    harm = ft.get("harm") or {}
    mean_dir = read("diffing/mean/directions.json").get("directions") or [{}]
    return ModelRecord(
        name=name,
        label=label,
        feature_shift=mean_dir[0].get("score"),
        em_pct=(harm.get("em_pct") or {}).get("value"),
        self_report=_self_report(ft),
        coherent_pct=harm.get("coherent_pct"),
    )


def run_pairs(pairs_file: Path, cfg: RunConfig, out: Path, force: bool = False) -> Path:
    from persona_diff.analysis.models_table import (
        cross_model_correlations,
        label_contrast,
        model_table,
    )
    from persona_diff.report import build_report

    pairs = read_pairs(pairs_file)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for p in pairs:
        log.info("pair %s: %s vs %s", p["name"], p["base"], p["finetuned"])
        sub = out / p["name"]
        Pipeline(p["base"], p["finetuned"], cfg, sub, force=force).run()
        records.append(record(sub, p["name"]))
    (out / "analysis").mkdir(exist_ok=True)
    table: dict[str, Any] = {"rows": model_table(records)}
    if len(records) >= 3:
        table["correlations"] = cross_model_correlations(records, seed=cfg.seed)
    if {r.label for r in records} >= {"coherent", "inverted"}:
        table["contrast"] = label_contrast(records, seed=cfg.seed)
    _write_json(out / "analysis" / "models_table.json", table)
    _write_json(out / "summary.json", {"pairs": [p["name"] for p in pairs], "models": table["rows"]})
    return build_report(out)
