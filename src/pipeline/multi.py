"""`persona-diff run --pairs FILE`: a study of several fine-tunes, then the cross-model view.

Each pair runs into `OUT/<name>/` as a full single run (its own report included), with three
things shared across pairs: one judge, the loaded base model while consecutive pairs name
the same base, and the base's probe outputs, computed once per distinct base and probe
setting under `OUT/_bases/<hash>/` (`persona_diff.pipeline.shared`). Each pair's results
equal those of a standalone `persona-diff run` with the same config and seed.

The top-level `OUT/` then gets `summary.json` (`StudySummary`: each pair's `RunSummary`, the
judge, the cross-model correlations and the coherent-vs-inverted contrast),
`analysis/models_table.json` and `report.html`. Feature shift per model: the top mean-diff
score of that run, i.e. the size of the mean activation change (fine-tuned − base, same
tokens) along its own leading direction.
"""

from __future__ import annotations

import functools
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from persona_diff.config import config_hash, to_dict
from persona_diff.errors import ConfigError
from persona_diff.log import get_logger
from persona_diff.pipeline.config import RunConfig
from persona_diff.rundir import (
    CorrelationRow,
    JudgeInfo,
    RunLayout,
    RunSummary,
    StudyEntry,
    StudySummary,
    load_run,
)
from persona_diff.rundir.io import read_json, write_json
from persona_diff.rundir.layout import BASES, INTERNALS, MODELS_TABLE, PAIRS_FILE

log = get_logger(__name__)


@dataclass
class PairSpec:
    name: str
    base: str
    finetuned: str
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. an organism's truth


def read_pairs(path: Path) -> list[dict[str, Any]]:
    """The entries of a pairs file: a list of {name, base, finetuned}, or a mapping with a
    ``pairs`` list (an organisms kit, a `finetune --domains` sweep)."""
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
    names = [str(p["name"]) for p in data]
    if len(set(names)) != len(names):
        raise ConfigError(f"pairs file {path}: names must be unique ({names})")
    bad = [n for n in names if not n or "/" in n or n.startswith(("_", ".")) or n in ("analysis", "plots", "internals")]
    if bad:
        raise ConfigError(
            f"pairs file {path}: {', '.join(map(repr, bad))} cannot name a folder of the study; rename them"
        )
    return data


def pair_specs(path: Path) -> list[PairSpec]:
    return [
        PairSpec(
            str(p["name"]),
            str(p["base"]),
            str(p["finetuned"]),
            {k: v for k, v in p.items() if k not in ("name", "base", "finetuned")},
        )
        for p in read_pairs(path)
    ]


def record(summary: RunSummary, name: str) -> Any:
    """One row of the cross-model table (`analysis.models_table.ModelRecord`)."""
    from persona_diff.analysis.models_table import ModelRecord

    em = summary.em_pct("finetuned")
    return ModelRecord(
        name=name,
        label=summary.label,
        feature_shift=summary.feature_shift,
        em_pct=None if em is None else em.value,
        self_report=summary.self_report("finetuned"),
        coherent_pct=summary.coherent_pct("finetuned"),
        extra={"label_confidence": summary.label_confidence},
    )


def study_summary(out: Path, entries: list[StudyEntry], n_boot: int, seed: int) -> StudySummary:
    """The study's summary.json (and analysis/models_table.json) from its pairs' summaries."""
    from persona_diff.analysis.models_table import (
        cross_model_correlations,
        label_contrast,
        model_table,
    )

    records = [record(e.summary, e.name) for e in entries]
    corr = cross_model_correlations(records, n_boot=n_boot, seed=seed)
    contrast = label_contrast(records, seed=seed) if {r.label for r in records} >= {"coherent", "inverted"} else None
    table: dict[str, Any] = {"rows": model_table(records), "correlations": corr}
    if contrast is not None:
        table["contrast"] = contrast
    write_json(out / MODELS_TABLE, table)
    judges = {e.summary.judge.spec: e.summary.judge for e in entries if e.summary.judge is not None}
    jd = read_json(RunLayout(out).judge)  # the study's one judge
    judge = JudgeInfo.from_dict(jd) if isinstance(jd, dict) else next(iter(judges.values()), None)
    return StudySummary(
        entries,
        judge=judge,
        judges_differ=sorted(judges) if len(judges) > 1 else [],
        correlations=[CorrelationRow.from_dict(c) for c in corr],
        contrast=contrast,
    )


def study_internals(
    out: Path,
    specs: list[PairSpec],
    entries: list[StudyEntry],
    probe_keys: dict[str, dict[str, Any]],
    cfg: RunConfig,
    judge: Any,
) -> bool:
    """The internals stage over every fine-tune of each base: ``OUT/internals`` (one base), or
    ``OUT/internals/<base hash>`` per base. Keyed by every pair's probe keys and labels, so a
    resumed study skips it and a new pair reruns it. True when a stage ran."""
    from persona_diff.internals.run import Member
    from persona_diff.pipeline.internals_stage import run_stage, stage_config
    from persona_diff.pipeline.stages import StageRunner

    labels = {e.name: e.summary.label for e in entries}
    groups: dict[str, list[PairSpec]] = {}
    for p in specs:
        groups.setdefault(p.base, []).append(p)
    runner = StageRunner(out)
    for base, pairs in groups.items():
        stage = INTERNALS if len(groups) == 1 else f"{INTERNALS}/{config_hash(base)}"
        deps = {
            "probes": {p.name: probe_keys[p.name] for p in pairs},
            "labels": {p.name: labels[p.name] for p in pairs},
            "truth": {p.name: p.extra for p in pairs},
            "internals": to_dict(stage_config(cfg)),
        }
        fts = [
            Member.fine_tune(p.name, p.finetuned, RunLayout(out / p.name).probes("finetuned"), labels[p.name], p.extra)
            for p in pairs
        ]
        base_probes = RunLayout(out / pairs[0].name).probes("base")  # the same in every pair of this base
        runner.run(
            stage,
            deps,
            functools.partial(
                run_stage,
                base_spec=base,
                base_probes=base_probes,
                fine_tunes=fts,
                cfg=cfg,
                labels={f.name: labels[f.name] for f in fts},
                judge=judge,
            ),
        )
    return runner.changed > 0


def run_pairs(pairs_file: Path, cfg: RunConfig, out: Path, force: bool = False) -> Path:
    from persona_diff.pipeline.run import Pipeline, resolve_judge
    from persona_diff.pipeline.shared import SharedStages
    from persona_diff.report import build_report

    specs = pair_specs(pairs_file)
    out.mkdir(parents=True, exist_ok=True)
    if pairs_file.resolve() != (out / PAIRS_FILE).resolve():
        shutil.copy(pairs_file, out / PAIRS_FILE)
    write_json(
        out / "config.json",
        {
            "config_hash": config_hash(to_dict(cfg)),
            "config": to_dict(cfg),
            "pairs": [{"name": p.name, "base": p.base, "finetuned": p.finetuned} for p in specs],
        },
    )
    shared = SharedStages(out / BASES)
    judge = functools.cache(lambda: resolve_judge(cfg, out))  # loaded once, by the first pair that needs it
    entries: list[StudyEntry] = []
    probe_keys: dict[str, dict[str, Any]] = {}
    base_model: tuple[str, Any] | None = None  # (spec, LoadedModel) of the last pair
    for p in specs:
        log.info("pair %s: %s vs %s", p.name, p.base, p.finetuned)
        reuse = base_model[1] if base_model is not None and base_model[0] == p.base else None
        pipe = Pipeline(
            p.base,
            p.finetuned,
            cfg,
            out / p.name,
            force=force,
            shared=shared,
            judge=judge,
            base_model=reuse,
            own_internals=False,
        )
        pipe.run()
        if pipe.loaded_base is not None:
            base_model = (p.base, pipe.loaded_base)
        summary = load_run(out / p.name).summary
        if summary is None:
            raise ConfigError(f"pair {p.name}: its run wrote no summary.json")
        keys = pipe.probe_keys()
        entries.append(StudyEntry(p.name, p.name, summary, base_probes=f"{BASES}/{config_hash(keys['base'])}"))
        probe_keys[p.name] = keys
        del pipe
    base_model = None
    if cfg.internals.enabled and study_internals(out, specs, entries, probe_keys, cfg, judge):
        for p in specs:  # each pair's report now points to the study's map
            build_report(out / p.name)
    study = study_summary(out, entries, cfg.analysis.n_boot, cfg.seed)
    write_json(RunLayout(out).summary, study.to_dict())
    return build_report(out)
