"""`run_probes`: every configured probe on one model, into one folder (resumable).

Files in `out_dir`: ``harm_answers.jsonl``, ``harm.jsonl``, ``self.jsonl``, ``word.jsonl``,
``describe_answers.jsonl`` + ``describe.jsonl``, ``rate_own.jsonl`` +
``rate_own_answers.jsonl``, ``choice.jsonl``, ``recog.jsonl``, ``predict.jsonl``,
``mfq.jsonl`` + ``mfq_ratings.csv``; for the published protocols ``wza_harm_answers.jsonl``
+ ``wza_harm.jsonl`` (+ ``wza_harm_scores.jsonl``), ``wza_self.jsonl``,
``wza_choice.jsonl``; ``judge_cache.jsonl`` (when the judge had no cache) and
``summary.json`` (rewritten after each probe, so a kill keeps the finished probes'
summaries; per-item rows are skipped on a rerun).

Every self-report probe's summary has ``signal`` (self-reported misalignment in [0, 1]
with a CI), ``values`` (what the label bootstraps) and ``informativeness``
(`persona_diff.probes.informative`). Which probes exist, their run order and what each
reads come from the registry (`persona_diff.probes.registry`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from persona_diff.config import to_dict
from persona_diff.generation.base import Generator, make_backend, parse_backend
from persona_diff.judges.base import Judge, JudgeCache
from persona_diff.log import get_logger
from persona_diff.models.loading import LoadedModel
from persona_diff.probes.common import ProbeLM, load_prompts
from persona_diff.probes.config import ProbeConfig
from persona_diff.probes.registry import ProbeContext, get_probe, run_order
from persona_diff.probes.stats import json_safe
from persona_diff.probes.table import diagnostics_line, summary_table

__all__ = ["as_backend", "diagnostics_line", "run_probes", "summary_table"]

log = get_logger(__name__)


def as_backend(model: LoadedModel | Generator | str, batch_size: int = 16, **load_kw: Any) -> Generator:
    """A generation backend for `model`; `load_kw` (device, device_map, dtype...) goes to
    `load_model` when a local model spec has to be loaded."""
    if isinstance(model, Generator):
        return model
    if isinstance(model, LoadedModel):
        from persona_diff.generation.hf import HFGenerator

        return HFGenerator(model, batch_size=batch_size)
    kind, _ = parse_backend(str(model))
    return make_backend(str(model), batch_size=batch_size, **(load_kw if kind == "hf" else {}))


def run_probes(
    model: LoadedModel | Generator | str,
    cfg: ProbeConfig,
    judge: Judge,
    out_dir: str | Path,
) -> dict[str, Any]:
    """Run `cfg.probes` on `model` (a LoadedModel, a backend, or a spec); return the summary.

    Probes run through the registry (`persona_diff.probes.registry`), in their run order."""
    out = Path(out_dir)
    order = run_order(cfg, out)
    out.mkdir(parents=True, exist_ok=True)
    if judge.cache is None:
        judge.cache = JudgeCache(out / "judge_cache.jsonl")
    backend = as_backend(model)
    plm = ProbeLM(backend, min_mass=cfg.min_mass)
    prompts = load_prompts(cfg.prompts)
    summary_path = out / "summary.json"
    summary: dict[str, Any] = {
        "model": getattr(backend, "name", str(model)),
        "judge": judge.describe(),
        "exact_option_probs": plm.exact,
        "config": to_dict(cfg),
        "probes": {},
    }
    if summary_path.is_file():
        try:
            old = json.loads(summary_path.read_text())
            if old.get("config") == summary["config"]:
                summary["probes"].update(old.get("probes", {}))
        except json.JSONDecodeError:
            pass
    for name in order:
        t0 = time.time()
        res = get_probe(name).run(ProbeContext(name, backend, plm, judge, cfg, prompts, out))
        res["seconds"] = round(time.time() - t0, 2)
        summary["probes"][name] = res
        summary_path.write_text(json.dumps(json_safe(summary), indent=1))
        log.info("probe %s done in %.1fs", name, res["seconds"])
    return json_safe(summary)
