"""Behavioural probes: harmfulness (EM%), self-report probes, moral foundations (S, R), the
published protocols of Weckauff et al. (``wza_*``), and the coherent / inverted / not-EM /
em-unmeasured persona label.

Entry points: `run_probes(model, ProbeConfig, judge, out_dir)` and
`label_persona(base_summary, ft_summary, LabelConfig)`; `adaptive_harm` chooses the harm
samples per question from the data before both are probed; raw MFQ tables re-score with
`score_ratings_csv`. Whether a self-report probe carries signal on a model is in each
summary's ``informativeness`` (`persona_diff.probes.informative`). Probes are registered
with `register_probe` (`persona_diff.probes.registry`); ``ALL_PROBES`` and
``SELF_REPORT_PROBES`` are read from the registry when asked for.
"""

from persona_diff.probes import config as _config
from persona_diff.probes.adaptive import adaptive_harm
from persona_diff.probes.config import LabelConfig, ProbeConfig
from persona_diff.probes.label import LABEL_TEXT, label_persona
from persona_diff.probes.mfq import score_ratings_csv
from persona_diff.probes.registry import ProbeContext, register_probe
from persona_diff.probes.runner import run_probes, summary_table


def __getattr__(name: str) -> list[str]:
    if name in ("ALL_PROBES", "SELF_REPORT_PROBES"):
        return _config.__getattr__(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ALL_PROBES",
    "LABEL_TEXT",
    "SELF_REPORT_PROBES",
    "LabelConfig",
    "ProbeConfig",
    "ProbeContext",
    "adaptive_harm",
    "label_persona",
    "register_probe",
    "run_probes",
    "score_ratings_csv",
    "summary_table",
]
