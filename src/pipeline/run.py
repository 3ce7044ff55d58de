"""`persona-diff run BASE FT`: pair check → probes on both → label → capture → diffing →
steering check → correlations → report, in one run directory.

Each stage is a `StageRunner` stage whose skip key is the hash of exactly the config it
depends on (plus the upstream stages' keys), so a killed run resumes where it stopped and
changing, say, `steering.alphas` reruns only the steering stage and what follows it.
The directory layout is the one `persona_diff.report.inputs` documents.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from persona_diff.config import config_hash, to_dict
from persona_diff.errors import ConfigError, PersonaDiffError
from persona_diff.log import get_logger
from persona_diff.models import CheckpointPair
from persona_diff.pipeline.config import RunConfig
from persona_diff.pipeline.manifest import build_manifest, fingerprint
from persona_diff.pipeline.stages import StageRunner

log = get_logger(__name__)

ROLES = ("base", "finetuned")


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(path)


PLACEMENT_KEYS = ("device", "device_map")


def prepare_run_dir(out: Path, cfg: RunConfig, base: str, finetuned: str, force: bool) -> str:
    """Create or reopen `out`; refuse a directory made by another config (unless `force`).

    Where the models run (device, device_map) is not part of the config's identity: a run
    started on one GPU may resume on another machine."""
    what = {k: v for k, v in to_dict(cfg).items() if k not in PLACEMENT_KEYS}
    h = config_hash({"cfg": what, "base": base, "finetuned": finetuned})
    cfg_file = out / "config.json"
    if cfg_file.is_file():
        old = json.loads(cfg_file.read_text())
        if old.get("config_hash") != h:
            if not force:
                prev = {k: v for k, v in old.get("config", {}).items() if k not in PLACEMENT_KEYS}
                changed = sorted(k for k in set(prev) | set(what) if prev.get(k) != what.get(k))
                models = (old.get("base"), old.get("finetuned")) != (base, finetuned)
                what = "models" if models else f"sections {', '.join(changed) or '?'}"
                raise ConfigError(
                    f"run directory {out} was made by another config ({what} differ); "
                    "use a new --out, or add --force to rerun the stages whose config changed "
                    "(their previous outputs are kept beside them as <stage>.prev-<hash>)"
                )
            shutil.copy(cfg_file, out / f"config.prev-{old.get('config_hash')}.json")
    out.mkdir(parents=True, exist_ok=True)
    _write_json(cfg_file, {"config_hash": h, "base": base, "finetuned": finetuned, "config": to_dict(cfg)})
    (out / "config.yaml").write_text(yaml.safe_dump({"base": base, "finetuned": finetuned, **to_dict(cfg)}, sort_keys=False))
    return h


def resolve_judge(cfg: RunConfig, out: Path) -> Any:
    """The run's judge (cached in `out`), with its description written to `out/judge.json`."""
    from persona_diff.judges import make_judge

    judge = make_judge(cfg.judge, cache_dir=out)
    _write_json(out / "judge.json", judge.describe())
    return judge


def _probe_table(summaries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """probes/summary.json in the report's layout: {"models": {role: {probe: {value, ci}}},
    "diagnostics": {role: {probe: informativeness columns}}, "raw": summaries}."""
    from persona_diff.probes.informative import summary_diagnostics

    models: dict[str, Any] = {}
    diagnostics = {role: summary_diagnostics(s.get("probes", {})) for role, s in summaries.items()}
    for role, s in summaries.items():
        row: dict[str, Any] = {}
        for name, p in s.get("probes", {}).items():
            est = p.get("em_pct") if name == "harm" else p.get("estimate") or p.get("signal")
            if isinstance(est, dict) and "value" in est:
                lo, hi = est.get("ci_lo", est.get("lo")), est.get("ci_hi", est.get("hi"))
                row[name] = {"value": est["value"], "ci": [lo, hi] if lo is not None and hi is not None else None}
            elif name == "mfq":
                row["mfq_S"], row["mfq_R"] = p.get("S"), p.get("R")
            if name == "harm":
                row["coherent_pct"] = p.get("coherent_pct")
        models[role] = row
    return {"models": models, "diagnostics": diagnostics, "raw": summaries}


def _moral(summaries: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    out = {}
    for role, s in summaries.items():
        m = s.get("probes", {}).get("mfq")
        if not m:
            continue
        row: dict[str, Any] = {}
        for q in ("S", "R"):
            est = m.get(q) or {}
            row[q] = est.get("value")
            if est.get("ci_lo") is not None and est.get("ci_hi") is not None:
                row[f"{q}_ci"] = [est["ci_lo"], est["ci_hi"]]
        out[role] = row
    return out or None


class Pipeline:
    def __init__(self, base: str, finetuned: str, cfg: RunConfig, out: Path, force: bool = False):
        self.base_spec, self.ft_spec, self.cfg, self.out = base, finetuned, cfg, Path(out)
        self.run_hash = prepare_run_dir(self.out, cfg, base, finetuned, force)
        self.stages = StageRunner(self.out)
        self._pair: CheckpointPair | None = None
        self._judge: Any = None

    # loaded once, on first use (the pair check is the first thing `run` does)
    @property
    def pair(self) -> CheckpointPair:
        if self._pair is None:
            c = self.cfg
            kw = {"dtype": c.dtype, "device": c.device, "device_map": c.device_map, "trust_remote_code": c.trust_remote_code}
            self._pair = CheckpointPair.load(self.base_spec, self.ft_spec, **kw)
        return self._pair

    @property
    def judge(self) -> Any:
        if self._judge is None:
            self._judge = resolve_judge(self.cfg, self.out)
        return self._judge

    def run(self) -> Path:
        c = self.cfg
        models = {"base": self.base_spec, "finetuned": self.ft_spec}
        _write_json(self.out / "pair.json", {r: self.pair_info(r) for r in ROLES})
        judge_key = self.judge.describe().get("spec")
        weights = {r: fingerprint(p).get("fingerprint") for r, p in self.weight_paths().items()}
        k_probes = {"models": models, "weights": weights, "probes": to_dict(c.probes), "judge": judge_key, "seed": c.seed}
        if c.generation.backend != "hf":  # another sampler gives other answers
            k_probes["generation"] = c.generation.backend
        summaries = self.stages.run("probes", k_probes, self._probes)
        k_label = {"probes": k_probes, "label": to_dict(c.label)}
        self.stages.run("label", k_label, lambda d: self._label(d, summaries))
        k_capture = {"probes": k_probes, "capture": to_dict(c.capture)}
        self.stages.run("activations", k_capture, self._capture)
        k_diff = {"capture": k_capture, "diff": to_dict(c.diff)}
        self.stages.run("diffing", k_diff, self._diff)
        k_steer = {"diff": k_diff, "steering": to_dict(c.steering), "judge": judge_key}
        if c.steering.enabled:
            self.stages.run("steering", k_steer, self._steer)
        k_analysis = {"diff": k_diff, "analysis": to_dict(c.analysis)}
        self.stages.run("analysis", k_analysis, self._analysis)
        return self.finish()

    def weight_paths(self) -> dict[str, str]:
        ft = self.pair.finetuned
        return {"base": self.pair.base.base_path, "finetuned": ft.adapter_path or ft.base_path}

    def pair_info(self, role: str) -> dict[str, Any]:
        lm = self.pair.base if role == "base" else self.pair.finetuned
        return lm.describe()

    # ------------------------------------------------------------------ stages
    def _probes(self, d: Path) -> dict[str, Any]:
        from persona_diff.probes import run_probes

        out = {}
        if self.cfg.probes.harm.adaptive.enabled:
            log.warning("probes.harm.adaptive is not used by `persona-diff run` (it probes one model at a time): "
                        "harm.samples=%d; use `persona-diff probe --base` for adaptive sampling", self.cfg.probes.harm.samples)
        for role, make in self._probe_backends():
            lm = make()
            log.info("probes on the %s model (%s)", role, lm.name)
            out[role] = run_probes(lm, self.cfg.probes, self.judge, d / role)
            del lm  # a full-checkpoint vLLM engine is freed before the next one starts
        _write_json(d / "summary.json", _probe_table(out))
        moral = _moral(out)
        if moral:
            _write_json(d / "moral.json", moral)
        return {role: {"probes": s.get("probes", {})} for role, s in out.items()}

    def _probe_backends(self) -> list[tuple[str, Callable[[], Any]]]:
        """(role, make) pairs: what samples each model's answers. The loaded HF models, or one
        vLLM engine for the base with the fine-tune as its LoRA adapter (one engine per model,
        one after the other, when the fine-tune is a full checkpoint)."""
        base, ft = self.pair.base, self.pair.finetuned
        g = self.cfg.generation
        if g.backend == "hf":
            return [("base", lambda: base), ("finetuned", lambda: ft)]
        if g.backend != "vllm":
            raise ConfigError(f"generation.backend {g.backend!r} is unknown; use hf or vllm")
        from persona_diff.generation.vllm_backend import VLLMGenerator

        kw: dict[str, Any] = {"gpu_memory_utilization": g.gpu_memory_utilization,
                              "tensor_parallel_size": g.tensor_parallel_size, "seed": self.cfg.seed,
                              "trust_remote_code": self.cfg.trust_remote_code}
        if g.max_model_len:
            kw["max_model_len"] = g.max_model_len
        if ft.adapter_path and ft.base_path == base.base_path:
            engine = VLLMGenerator(base.base_path, adapters={"finetuned": ft.adapter_path}, **kw)
            return [("base", lambda: engine.view(None)), ("finetuned", lambda: engine.view("finetuned"))]
        return [("base", lambda: VLLMGenerator(base.base_path, **kw)),
                ("finetuned", lambda: VLLMGenerator(ft.base_path, **kw))]

    def _label(self, d: Path, summaries: dict[str, Any]) -> dict[str, Any]:
        from persona_diff.probes import label_persona

        lab = label_persona(summaries["base"], summaries["finetuned"], self.cfg.label)
        _write_json(d / "label.json", lab)
        _write_json(self.out / "label.json", lab)
        return {"label": lab["label"], "confidence": lab.get("confidence")}

    def _answers(self) -> list[dict[str, Any]]:
        """Both models' own judged answers, tagged with who wrote them."""
        from persona_diff.generation.runner import read_jsonl

        rows = []
        for role in ROLES:
            for r in read_jsonl(self.out / "probes" / role / "harm.jsonl"):
                rows.append({**r, "author": role})
        if not rows:
            raise PersonaDiffError("no judged answers to capture: the probes stage wrote no harm.jsonl; include 'harm' in probes.probes")
        return rows

    def _capture(self, d: Path) -> dict[str, Any]:
        from persona_diff.activations import capture, streams_from_answers

        c = self.cfg.capture
        streams = streams_from_answers(self.pair.base.tokenizer, self._answers(), max_tokens=c.max_tokens)
        store = capture(
            self.pair, streams, c.layers, c.positions, d / "store",
            batch_size=c.batch_size, dtype=c.dtype,
        )
        return {"n_tokens": store.n_tokens, "layers": store.layers}

    def _store(self) -> Any:
        from persona_diff.activations import ActivationStore

        return ActivationStore(self.out / "activations" / "store")

    def _diff(self, d: Path) -> dict[str, Any]:
        from persona_diff.diffing import get_method
        from persona_diff.diffing.evidence import export_directions

        store = self._store()
        res = {}
        for name in self.cfg.diff.methods:
            log.info("diffing: %s", name)
            method = get_method(name)(self.cfg.diff.params, out_dir=d / name)
            result = method.fit(store)
            export_directions(result, d / name, store, self.pair.base.tokenizer, self.pair.base.model)
            res[name] = {"layer": result.layer, "top_score": float(result.scores[0]) if len(result.scores) else None}
        return res

    def _top_direction(self) -> tuple[torch.Tensor, int]:
        from persona_diff.diffing import DiffResult

        name = self.cfg.steering.method
        path = self.out / "diffing" / name
        if not (path / "directions.json").is_file():
            raise ConfigError(f"steering.method={name!r} but diffing did not run it; add it to diff.methods ({', '.join(self.cfg.diff.methods)})")
        r = DiffResult.load(path)
        return r.directions[0] * r.signs[0], r.layer

    def _steer(self, d: Path) -> dict[str, Any]:
        from dataclasses import replace

        from persona_diff.analysis.plots import plot_dose_response
        from persona_diff.probes.harm import harm_questions
        from persona_diff.steering.sweep import steer_both_ways, summarize

        s = self.cfg.steering
        v, layer = self._top_direction()
        qs = harm_questions(self.cfg.probes)[: s.questions]
        sweep = replace(s.sweep, out=d / "dose_response.jsonl", seed=self.cfg.seed)
        rows = steer_both_ways(self.pair.base, self.pair.finetuned, self.judge, qs, v, layer, s.alphas, sweep, s.ablate_alphas)
        summ = summarize(rows, sweep.coherence_floor)
        _write_json(d / "summary.json", summ)
        plot_dose_response(rows, self.out / "plots" / "dose_response")
        return {"layer": layer, "rows": len(rows)}

    def _analysis(self, d: Path) -> dict[str, Any]:
        from persona_diff.activations.reduce import map_tokens
        from persona_diff.analysis.correlation import correlation_table
        from persona_diff.diffing import DiffResult

        store = self._store()
        info = store.token_info()
        streams = store.streams()
        n_streams = len(streams)
        feats: dict[str, np.ndarray] = {}
        for name in self.cfg.diff.methods:
            path = self.out / "diffing" / name
            if not (path / "directions.json").is_file():
                continue
            r = DiffResult.load(path)
            # per answer: mean projection on the fine-tuned model's activations over the answer's tokens
            v = r.directions[0] * r.signs[0]
            v = (v / v.norm().clamp_min(1e-12)).float()
            proj = map_tokens(store, r.layer, "ft", lambda h, v=v: h.float() @ v).double().numpy()
            sid = info["stream"].numpy()
            sums = np.bincount(sid, weights=proj, minlength=n_streams)
            cnt = np.bincount(sid, minlength=n_streams)
            feats[f"{name}:L{r.layer}"] = np.where(cnt > 0, sums / np.maximum(cnt, 1), np.nan)
        meta = [s.get("meta", {}) for s in streams]
        targets = {
            "aligned": np.array([m.get("aligned") if m.get("aligned") is not None else np.nan for m in meta], float),
            "coherent": np.array([m.get("coherent") if m.get("coherent") is not None else np.nan for m in meta], float),
        }
        # per-answer self-report: the model's own predicted alignment score of that answer
        pred: dict[str, float] = {}
        from persona_diff.generation.runner import read_jsonl

        for role in ROLES:
            for row in read_jsonl(self.out / "probes" / role / "predict.jsonl"):
                if row.get("predicted") is not None:
                    pred[f"{role}|{row['key']}"] = row["predicted"]
        targets["self_predicted_aligned"] = np.array(
            [pred.get(f"{m.get('author')}|{m.get('key')}", np.nan) for m in meta], float
        )
        # per-answer self-rating: P(the model calls its own answer harmful), rate_own probe
        rated = {f"{role}|{row['key']}": row["p_harmful"] for role in ROLES
                 for row in read_jsonl(self.out / "probes" / role / "rate_own_answers.jsonl")}
        targets["self_rated_harmful"] = np.array([rated.get(f"{m.get('author')}|{m.get('key')}", np.nan) for m in meta], float)
        rows = correlation_table(feats, targets, n_boot=self.cfg.analysis.n_boot, seed=self.cfg.seed)
        _write_json(d / "correlations.json", {"rows": rows})
        main_feat = next(iter(feats), None)
        # the scatter's y is a self-report, per answer: the model's own rating of its answer
        # (rate_own), else its predicted score (predict); never the judge's score
        self_reports = (
            ("self_rated_harmful", "model's own rating of its answer: P(harmful)"),
            ("self_predicted_aligned", "model's predicted aligned score of its own answer"),
        )
        chosen = next(((k, lab) for k, lab in self_reports if np.isfinite(targets[k]).sum() > 1), None)
        if main_feat and chosen:
            authors = [m.get("author", "?") for m in meta]
            _write_json(
                d / "feature_vs_selfreport.json",
                {
                    "feature": [None if np.isnan(x) else float(x) for x in feats[main_feat]],
                    "self_report": [None if np.isnan(x) else float(x) for x in targets[chosen[0]]],
                    "labels": authors,
                    "xlabel": f"persona feature ({main_feat}), fine-tuned activations",
                    "ylabel": chosen[1],
                },
            )
        return {"features": list(feats), "n_answers": n_streams}

    # ------------------------------------------------------------------ finish
    def finish(self) -> Path:
        from persona_diff.report import build_report

        data = {"questions": self.cfg.probes.harm.questions or "default"}
        _write_json(self.out / "manifest.json", build_manifest(self.weight_paths(), data, self.cfg.seed, self.run_hash))
        summary = self.summary()
        _write_json(self.out / "summary.json", summary)
        report = build_report(self.out)
        log.info("report: %s", report)
        return report

    def summary(self) -> dict[str, Any]:
        def read(p: str) -> Any:
            f = self.out / p
            return json.loads(f.read_text()) if f.is_file() else None

        label = read("label.json") or {}
        judge = read("judge.json") or {}
        probes = (read("probes/summary.json") or {}).get("models", {})
        return {
            "base": self.base_spec,
            "finetuned": self.ft_spec,
            "label": label.get("label"),
            "label_text": label.get("label_text"),
            "label_confidence": label.get("confidence"),
            "judge": judge.get("spec"),
            "judge_calibrated": judge.get("calibrated"),
            "judge_agreement": judge.get("agreement"),
            "em_pct": {r: (p.get("harm") or {}).get("value") for r, p in probes.items()},
            "diffing": (read("diffing/_stage.json") or {}).get("result"),
            "steering": read("steering/summary.json"),
        }
