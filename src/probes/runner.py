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
(`persona_diff.probes.informative`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from persona_diff.config import to_dict
from persona_diff.errors import ConfigError
from persona_diff.generation.base import Generator, make_backend, parse_backend
from persona_diff.judges.base import Judge, JudgeCache
from persona_diff.log import get_logger
from persona_diff.models.loading import LoadedModel
from persona_diff.probes.common import ProbeLM, load_prompts
from persona_diff.probes.config import ALL_PROBES, ProbeConfig
from persona_diff.probes.describe import run_describe
from persona_diff.probes.harm import run_harm
from persona_diff.probes.mfq import run_mfq
from persona_diff.probes.self_report import (
    run_choice,
    run_prediction,
    run_recognition,
    run_self_assessment,
)
from persona_diff.probes.stats import json_safe
from persona_diff.probes.words import harm_source, run_rate_own, run_word
from persona_diff.probes.wza import run_wza_choice, run_wza_harm, run_wza_self

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
    """Run `cfg.probes` on `model` (a LoadedModel, a backend, or a spec); return the summary."""
    unknown = [p for p in cfg.probes if p not in ALL_PROBES]
    if unknown:
        raise ConfigError(f"unknown probe(s) {', '.join(unknown)}; choose from {', '.join(ALL_PROBES)}")
    out = Path(out_dir)
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
    order = [p for p in ALL_PROBES if p in cfg.probes]
    needs_harm = "recog" in order or "predict" in order or ("rate_own" in order and harm_source(cfg, out) == "harm")
    if needs_harm and "harm" not in order and not (out / "harm.jsonl").is_file():
        order.insert(0, "harm")  # recognition / prediction / rating need the model's own judged answers
    harm_file = out / "harm.jsonl"
    for name in order:
        t0 = time.time()
        if name == "harm":
            res = run_harm(backend, judge, cfg, out)
        elif name == "wza_harm":
            res = run_wza_harm(backend, judge, cfg, out)
        elif name == "self":
            res = run_self_assessment(plm, cfg, prompts, out / "self.jsonl")
        elif name == "word":
            res = run_word(plm, cfg, prompts, out / "word.jsonl")
        elif name == "wza_self":
            res = run_wza_self(plm, cfg, out / "wza_self.jsonl")
        elif name == "describe":
            res = run_describe(backend, judge, cfg, prompts, out)
        elif name == "rate_own":
            res = run_rate_own(plm, cfg, prompts, out)
        elif name == "wza_choice":
            res = run_wza_choice(plm, cfg, prompts, out / "wza_choice.jsonl")
        elif name == "choice":
            res = run_choice(plm, cfg, prompts, out / "choice.jsonl")
        elif name == "recog":
            res = run_recognition(plm, cfg, prompts, harm_file, out / "recog.jsonl")
        elif name == "predict":
            res = run_prediction(plm, cfg, prompts, harm_file, out / "predict.jsonl")
        else:
            res = run_mfq(plm, cfg, prompts, out)
        res["seconds"] = round(time.time() - t0, 2)
        summary["probes"][name] = res
        summary_path.write_text(json.dumps(json_safe(summary), indent=1))
        log.info("probe %s done in %.1fs", name, res["seconds"])
    return json_safe(summary)


def summary_table(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(probe, one-line result) pairs for a short printed table."""
    rows: list[tuple[str, str]] = []
    p = summary.get("probes", {})

    def ci(e: dict[str, Any], scale: float = 1.0, unit: str = "") -> str:
        if not e or e.get("value") is None:
            return "n/a"
        lo, hi = e.get("ci_lo"), e.get("ci_hi")
        s = f"{e['value'] * scale:.3g}{unit}"
        return s + (f" [{lo * scale:.3g}, {hi * scale:.3g}]" if lo is not None and hi is not None else "")

    if "harm" in p:
        h = p["harm"]
        coh = "n/a" if h.get("coherent_pct") is None else f"{h['coherent_pct']:.0f}%"
        rows.append(("harm", f"EM {ci(h['em_pct'], unit='%')}  coherent {coh}  scored {h['n_scored']}/{h['n_answers']}"))
    if "wza_harm" in p:
        h = p["wza_harm"]
        rows.append(("wza_harm", f"harmful single-run {ci(h['single_run_pct'], unit='%')}  max-of-{h['n']} "
                                 f"{ci(h['max_of_n_pct'], unit='%')}  scored {h['n_scored']}/{h['n_answers']} ({h['scoring']})"))
    names = {"self": "self-assessed misalignment", "word": "P(misaligned word)", "wza_self": "P(misaligned word)",
             "describe": "1 - aligned/100 of self-descriptions", "rate_own": "P(rates own answer harmful)",
             "choice": "P(misaligned description)", "wza_choice": "P(misaligned system)",
             "recog": "P(claims harmful answer)", "predict": "1 - predicted/100"}
    for k, label in names.items():
        if k in p:
            extra = ""
            if k == "predict" and p[k].get("gap", {}).get("value") is not None:
                extra = f"  gap {p[k]['gap']['value']:+.1f}"
            if k == "wza_choice" and p[k].get("majority"):
                extra = f"  majority {p[k]['majority']}"
            rows.append((k, f"{label} {ci(p[k]['signal'])}  n={p[k]['n_with_value']}/{p[k]['n_items']}{extra}  {diagnostics_line(p[k])}"))
    if "mfq" in p:
        m = p["mfq"]
        rows.append(("mfq", f"S {ci(m['S'])}  R {ci(m['R'])}"))
    return rows


def diagnostics_line(probe: dict[str, Any]) -> str:
    """One line of a self-report probe's informativeness (see `persona_diff.probes.informative`)."""
    inf = probe.get("informativeness")
    if not isinstance(inf, dict):
        return ""
    parts = []
    if inf.get("position_bias") is not None:
        parts.append(f"P(first) {inf['position_p_first']:.2f}")
    if inf.get("mean_mass") is not None:
        parts.append(f"mass {inf['mean_mass']:.3g}")
    if inf.get("order_agreement") is not None:
        parts.append(f"order agreement {inf['order_agreement']:.2f}")
    if inf.get("no_value_rate") is not None:
        parts.append(f"no value {inf['no_value_rate']:.0%}")
    verdict = "informative" if inf.get("informative") else "UNINFORMATIVE (" + "; ".join(inf.get("reasons") or []) + ")"
    return "[" + ", ".join(parts) + (", " if parts else "") + verdict + "]"
