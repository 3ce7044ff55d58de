"""Where each file of a run directory lives; the schema version of the layout.

```
RUN_DIR/                            one pair (`persona-diff run BASE FT`)
  summary.json                      RunSummary (kind "pair", schema_version)
  config.json | config.yaml         resolved run config
  manifest.json                     versions, seed, model fingerprints
  label.json                        LabelResult
  judge.json                        JudgeInfo
  pair.json                         what each model is (LoadedModel.describe)
  probes/summary.json               {"schema_version", "models": {role: {probe: ProbeSummary}}, "diagnostics"}
  probes/moral.json                 {"schema_version", "models": {role: MoralScores}}
  probes/<role>/harm.jsonl          AnswerRow per judged answer (+ every probe's own files)
  diffing/<method>/directions.json  DirectionSet
  steering/dose_response.jsonl      DoseRow per line
  steering/summary.json             {"cells": [SteeringCell]}
  analysis/correlations.json        {"rows": [CorrelationRow]}
  analysis/feature_vs_selfreport.json  FeatureScatter
  plots/*.png                       figures (other PNGs are embedded in the report as they are)
  internals/                        harm and self-report directions, per-answer table (answers.csv/.jsonl),
                                    correlations.json, map.json, persona_map.png, internals.json
  stages.log.jsonl                  start / skip / finish / shared events of every stage
  report.html

STUDY_DIR/                          several pairs (`persona-diff run --pairs FILE`)
  summary.json                      StudySummary (kind "study")
  judge.json, config.json, pairs.yaml
  <name>/                           one RUN_DIR per pair
  _bases/<hash>/                    probe outputs of a base model, made once, copied into each pair
  analysis/models_table.json        analysis.models_table rows, contrast, correlations
  internals/                        the internals stage over every fine-tune (one base; internals/<hash>/ per
                                    base when there are several): persona map, per-answer table, detector
  report.html
```

Version 1 is the layout before ``schema_version`` existed (summary.json without it);
`persona_diff.rundir.legacy` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SCHEMA_VERSION = 2
OLDEST_READABLE = 1

SUMMARY = "summary.json"
CONFIG = "config.json"
CONFIG_YAML = "config.yaml"
MANIFEST = "manifest.json"
LABEL = "label.json"
JUDGE = "judge.json"
PAIR = "pair.json"
REPORT = "report.html"
STAGES_LOG = "stages.log.jsonl"
PROBES = "probes"
PROBE_TABLE = "probes/summary.json"
MORAL = "probes/moral.json"
HARM_ANSWERS = "harm.jsonl"
DIFFING = "diffing"
DIRECTIONS = "directions.json"
DOSE_RESPONSE = "steering/dose_response.jsonl"
STEERING_SUMMARY = "steering/summary.json"
CORRELATIONS = "analysis/correlations.json"
FEATURE_SCATTER = "analysis/feature_vs_selfreport.json"
MODELS_TABLE = "analysis/models_table.json"
PLOTS = "plots"
BASES = "_bases"
PAIRS_FILE = "pairs.yaml"
INTERNALS = "internals"
PERSONA_MAPS = ("internals/persona_map.png", "internals/persona_map/persona_map.png", "plots/persona_map.png")


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run (or study) directory."""

    root: Path

    def __truediv__(self, rel: str) -> Path:
        return self.root / rel

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY

    @property
    def label(self) -> Path:
        return self.root / LABEL

    @property
    def judge(self) -> Path:
        return self.root / JUDGE

    @property
    def probe_table(self) -> Path:
        return self.root / PROBE_TABLE

    @property
    def moral(self) -> Path:
        return self.root / MORAL

    @property
    def plots(self) -> Path:
        return self.root / PLOTS

    @property
    def report(self) -> Path:
        return self.root / REPORT

    @property
    def stages_log(self) -> Path:
        return self.root / STAGES_LOG

    def probes(self, role: str) -> Path:
        """The folder of one model's probe outputs."""
        return self.root / PROBES / role

    def harm_answers(self, role: str) -> Path:
        return self.probes(role) / HARM_ANSWERS

    def directions(self, method: str) -> Path:
        return self.root / DIFFING / method / DIRECTIONS

    def persona_map(self) -> Path | None:
        return next((p for rel in PERSONA_MAPS if (p := self.root / rel).is_file()), None)
