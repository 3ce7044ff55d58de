"""The run-directory contract: file names, typed records, and `load_run`.

Every stage of `persona-diff run` writes its files through these records and every reader
(the study, the CLI printout, the report) reads them back with `load_run`, so a file's shape
is defined once. ``summary.json`` carries ``schema_version`` (`SCHEMA_VERSION`); directories
written before it existed (version 1) still load.

    from persona_diff.rundir import load_run
    run = load_run("runs/demo/run")
    run.summary.label, run.summary.em_pct("finetuned").ci, run.answers("base")[0].answer
"""

from persona_diff.rundir.artifacts import (
    AnswerRow,
    CorrelationRow,
    DirectionRow,
    DirectionSet,
    DoseRow,
    FeatureScatter,
    SteeringCell,
)
from persona_diff.rundir.layout import SCHEMA_VERSION, RunLayout
from persona_diff.rundir.load import RunDirVersionError, RunResult, load_run
from persona_diff.rundir.records import (
    JudgeInfo,
    LabelResult,
    MoralScores,
    ProbeSummary,
    probes_from_outputs,
)
from persona_diff.rundir.summary import DiffTop, ProbeTable, RunSummary, StudyEntry, StudySummary
from persona_diff.rundir.values import (
    LABEL_COLOURS,
    LABEL_ORDER,
    LABELS,
    ROLES,
    ContractError,
    Estimate,
    Label,
    Role,
)

__all__ = [
    "LABELS",
    "LABEL_COLOURS",
    "LABEL_ORDER",
    "ROLES",
    "SCHEMA_VERSION",
    "AnswerRow",
    "ContractError",
    "CorrelationRow",
    "DiffTop",
    "DirectionRow",
    "DirectionSet",
    "DoseRow",
    "Estimate",
    "FeatureScatter",
    "JudgeInfo",
    "Label",
    "LabelResult",
    "MoralScores",
    "ProbeSummary",
    "ProbeTable",
    "Role",
    "RunDirVersionError",
    "RunLayout",
    "RunResult",
    "RunSummary",
    "SteeringCell",
    "StudyEntry",
    "StudySummary",
    "load_run",
    "probes_from_outputs",
]
