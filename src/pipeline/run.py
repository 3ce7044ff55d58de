"""`persona-diff run BASE FT`: pair check → probes on both → label → capture → diffing →
steering check → correlations → report, in one run directory.

Each stage is a `StageRunner` stage whose skip key is the hash of exactly the config it
depends on (plus the upstream stages' keys), so a killed run resumes where it stopped and
changing, say, `steering.alphas` reruns only the steering stage and what follows it.
Each model's probes are a stage of their own (``probes/base``, ``probes/finetuned``) keyed
only by that model (`persona_diff.pipeline.shared.role_probe_key`): every sampling seed
comes from the config, not from which model went first, so a study can probe a base once
and hand its outputs to every pair. The directory layout is `persona_diff.rundir`'s.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import yaml

from persona_diff.config import config_hash, to_dict
from persona_diff.errors import ConfigError, PersonaDiffError
from persona_diff.fileio import read_jsonl
from persona_diff.log import get_logger
from persona_diff.models import CheckpointPair
from persona_diff.models.loading import LoadedModel
from persona_diff.pipeline.config import RunConfig
from persona_diff.pipeline.internals_stage import stage_config
from persona_diff.pipeline.manifest import build_manifest, fingerprint
from persona_diff.pipeline.outputs import build_summary, probe_table, write_probe_files
from persona_diff.pipeline.shared import SharedStages, role_probe_key
from persona_diff.pipeline.stages import StageRunner
from persona_diff.rundir import ROLES, LabelResult, RunLayout, RunSummary
from persona_diff.rundir.io import write_json

log = get_logger(__name__)

_probe_table = probe_table  # the name tests/test_probes_informative.py imports

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
                differ = "models" if models else f"sections {', '.join(changed) or '?'}"
                raise ConfigError(
                    f"run directory {out} was made by another config ({differ} differ); "
                    "use a new --out, or add --force to rerun the stages whose config changed "
                    "(their previous outputs are kept beside them as <stage>.prev-<hash>)"
                )
            shutil.copy(cfg_file, out / f"config.prev-{old.get('config_hash')}.json")
    out.mkdir(parents=True, exist_ok=True)
    write_json(cfg_file, {"config_hash": h, "base": base, "finetuned": finetuned, "config": to_dict(cfg)})
    # the resolved config as a --config file: `persona-diff run BASE FT --config THIS --out DIR` repeats the run
    (out / "config.yaml").write_text(
        f"# persona-diff run {base} {finetuned} --config config.yaml --out {out}\n"
        + yaml.safe_dump(to_dict(cfg), sort_keys=False)
    )
    return h


def resolve_judge(cfg: RunConfig, out: Path) -> Any:
    """The run's judge (cached in `out`), with its description written to `out/judge.json`."""
    from persona_diff.judges import make_judge

    judge = make_judge(cfg.judge, cache_dir=out)
    write_json(out / "judge.json", judge.describe())
    return judge


class Pipeline:
    """One pair into one run directory. A study passes `shared` (where base probes are kept
    once), `judge` (makes the study's one judge, on first use) and `base_model` (the loaded
    base, reused).

    Both specs are checked (`resolve_model`) before the run directory is written. The models
    and the judge load on first use, so a finished run skips every stage without loading
    either: stage keys need only the weights' fingerprints and the judge's spec."""

    def __init__(
        self,
        base: str,
        finetuned: str,
        cfg: RunConfig,
        out: Path,
        force: bool = False,
        *,
        shared: SharedStages | None = None,
        judge: Callable[[], Any] | None = None,
        base_model: LoadedModel | None = None,
        own_internals: bool = True,
    ):
        from persona_diff.judges.base import resolve_judge_spec
        from persona_diff.models.loading import resolve_model

        self.base_spec, self.ft_spec, self.cfg, self.out = base, finetuned, cfg, Path(out)
        self.sources = {"base": resolve_model(base), "finetuned": resolve_model(finetuned)}
        self.judge_key = resolve_judge_spec(cfg.judge)
        self.run_hash = prepare_run_dir(self.out, cfg, base, finetuned, force)
        self.stages = StageRunner(self.out)
        self.own_internals = own_internals  # a study maps all its fine-tunes at once instead
        self.shared = shared
        self._pair: CheckpointPair | None = None
        self._base_model = base_model
        self._make_judge = judge or (lambda: resolve_judge(cfg, self.out))
        self._judge: Any = None
        self._engine: Any = None
        self.adaptive: dict[str, Any] | None = None  # the harm_adaptive stage's record, when it ran

    # loaded once, on first use (the pair check is the first thing `run` does)
    @property
    def pair(self) -> CheckpointPair:
        if self._pair is None:
            from persona_diff.models.loading import load_model

            c = self.cfg
            kw: dict[str, Any] = {
                "dtype": c.dtype,
                "device": c.device,
                "device_map": c.device_map,
                "trust_remote_code": c.trust_remote_code,
            }
            base = self._base_model if self._base_model is not None else load_model(self.base_spec, **kw)
            self._pair = CheckpointPair(base, load_model(self.ft_spec, **kw))
            write_json(self.out / "pair.json", {"base": base.describe(), "finetuned": self._pair.finetuned.describe()})
        return self._pair

    @property
    def loaded_base(self) -> LoadedModel | None:
        """The base model if this run loaded it (a study hands it to the next pair)."""
        return self._pair.base if self._pair is not None else self._base_model

    @property
    def judge(self) -> Any:
        if self._judge is None:
            self._judge = self._make_judge()
            write_json(self.out / "judge.json", self._judge.describe())
        return self._judge

    def probe_keys(self) -> dict[str, dict[str, Any]]:
        """Per model: what its probe outputs depend on (`role_probe_key`)."""
        c = self.cfg
        judge_key = self.judge_key
        specs = {"base": self.base_spec, "finetuned": self.ft_spec}
        weights = {r: fingerprint(p).get("fingerprint") for r, p in self.weight_paths().items()}
        return {
            r: role_probe_key(specs[r], weights[r], to_dict(c.probes), judge_key, c.seed, c.generation.backend)
            for r in ROLES
        }

    def run(self) -> Path:
        c = self.cfg
        judge_key = self.judge_key
        k_probes = self.probe_keys()
        self.adaptive = self._harm_rounds(k_probes)
        if self.adaptive is not None:  # each model's harm n was chosen with the other model: part of its key
            k_probes = {r: {**k, "harm_samples": self._samples(r)} for r, k in k_probes.items()}
        summaries: dict[str, dict[str, Any]] = {role: self.probe_role(role, k_probes[role]) for role in ROLES}
        write_probe_files(self.out, summaries)
        k_label = {"probes": k_probes, "label": to_dict(c.label)}
        self.stages.run("label", k_label, lambda d: self._label(d, summaries))
        k_capture = {"probes": k_probes, "capture": to_dict(c.capture)}
        self.stages.run("activations", k_capture, self._capture)
        k_diff = {"capture": k_capture, "diff": {m: to_dict(x) for m, x in self._method_configs().items()}}
        self.stages.run("diffing", k_diff, self._diff)
        k_steer = {"diff": k_diff, "steering": to_dict(c.steering), "judge": judge_key}
        if c.steering.enabled:
            self.stages.run("steering", k_steer, self._steer)
        k_analysis = {"diff": k_diff, "analysis": to_dict(c.analysis)}
        self.stages.run("analysis", k_analysis, self._analysis)
        if c.internals.enabled and self.own_internals:
            k_int = {
                "probes": k_probes,
                "label": k_label,
                "internals": to_dict(stage_config(c)),
                **({"judge": judge_key} if c.internals.causal.enabled else {}),
            }
            self.stages.run("internals", k_int, self._internals)
        return self.finish()

    def weight_paths(self) -> dict[str, str]:
        return {"base": self.sources["base"].base_path, "finetuned": self.sources["finetuned"].weights}

    # ------------------------------------------------------------------ stages
    def _harm_rounds(self, k_probes: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
        """Stage ``harm_adaptive`` (``probes.harm.adaptive.enabled``): the harm probe on both
        models in rounds until the CI of the EM% difference decides (`adaptive_harm`); its
        record (the n of each model) sets ``harm.samples`` of the probe stages, which reuse its
        answers. Not in a study (a shared base's n would depend on every pair) and not with two
        vLLM engines (both models are held while the rounds alternate)."""
        c = self.cfg
        if not (c.probes.harm.adaptive.enabled and "harm" in c.probes.probes):
            return None
        src = self.sources
        one_engine = c.generation.backend == "hf" or src["finetuned"].base_path == src["base"].base_path
        if self.shared is not None or not one_engine:
            log.warning(
                "probes.harm.adaptive is off here (%s): harm.samples=%d for every model",
                "a --pairs study shares its base's probes"
                if self.shared is not None
                else "the fine-tune is a full checkpoint, which vLLM cannot hold beside the base",
                c.probes.harm.samples,
            )
            return None

        def rounds(d: Path) -> dict[str, Any]:
            from persona_diff.probes.adaptive import adaptive_harm
            from persona_diff.probes.runner import as_backend

            make = dict(self._probe_backends())
            base, ft = as_backend(make["base"]()), as_backend(make["finetuned"]())
            _, record = adaptive_harm(
                base, ft, self._probe_cfg(), self._label_cfg(), self.judge, d / "base", d / "finetuned"
            )
            return record

        return self.stages.run("harm_adaptive", {"probes": k_probes, "label": to_dict(c.label)}, rounds)

    def _samples(self, role: str) -> int:
        assert self.adaptive is not None
        return int(self.adaptive["base_samples" if role == "base" else "samples"])

    def _probe_cfg(self, role: str | None = None) -> Any:
        """The probe settings with the run's seed (and the adaptive stage's n for `role`)."""
        from persona_diff.probes.adaptive import with_samples

        cfg = replace(self.cfg.probes, seed=self.cfg.seed)
        return with_samples(cfg, self._samples(role)) if role is not None and self.adaptive is not None else cfg

    def _label_cfg(self) -> Any:
        return replace(self.cfg.label, seed=self.cfg.seed)

    def probe_role(self, role: str, key: dict[str, Any]) -> dict[str, Any]:
        """Stage ``probes/<role>``: every configured probe on one model. The base's comes from
        the study's shared folder when there is one."""
        stage = f"probes/{role}"
        compute = lambda d: self._probe_one(role, d)  # noqa: E731
        if role == "base" and self.shared is not None:
            return self.shared.fetch(self.stages, stage, key, compute)
        return self.stages.run(stage, key, compute)

    def _probe_one(self, role: str, d: Path) -> dict[str, Any]:
        from persona_diff.probes import run_probes

        if self.adaptive is not None:  # the rounds' answers: nothing is generated or judged twice
            shutil.copy(self.out / "harm_adaptive" / role / "harm_answers.jsonl", d / "harm_answers.jsonl")
        make = dict(self._probe_backends())[role]
        lm = make()
        log.info("probes on the %s model (%s)", role, getattr(lm, "name", role))
        s = run_probes(lm, self._probe_cfg(role), self.judge, d)
        del lm  # a full-checkpoint vLLM engine is freed before the next one starts
        return {"probes": s.get("probes", {})}

    def _probe_backends(self) -> list[tuple[str, Callable[[], Any]]]:
        """(role, make) pairs: what samples each model's answers. The loaded HF models, or one
        vLLM engine for the base with the fine-tune as its LoRA adapter (one engine per model,
        one after the other, when the fine-tune is a full checkpoint)."""
        g = self.cfg.generation
        if g.backend == "hf":
            return [("base", lambda: self.pair.base), ("finetuned", lambda: self.pair.finetuned)]
        base, ft = self.sources["base"], self.sources["finetuned"]
        if g.backend != "vllm":
            raise ConfigError(f"generation.backend {g.backend!r} is unknown; use hf or vllm")
        from persona_diff.generation.vllm_backend import VLLMGenerator

        kw: dict[str, Any] = {
            "gpu_memory_utilization": g.gpu_memory_utilization,
            "tensor_parallel_size": g.tensor_parallel_size,
            "seed": self.cfg.seed,
            "trust_remote_code": self.cfg.trust_remote_code,
        }
        if g.max_model_len:
            kw["max_model_len"] = g.max_model_len
        adapter = ft.adapter_path
        if adapter and ft.base_path == base.base_path:

            def engine() -> Any:  # made on first use, then shared by both models' probes
                if self._engine is None:
                    self._engine = VLLMGenerator(base.base_path, adapters={"finetuned": adapter}, **kw)
                return self._engine

            return [("base", lambda: engine().view(None)), ("finetuned", lambda: engine().view("finetuned"))]
        return [
            ("base", lambda: VLLMGenerator(base.base_path, **kw)),
            ("finetuned", lambda: VLLMGenerator(ft.base_path, **kw)),
        ]

    def _label(self, d: Path, summaries: dict[str, Any]) -> dict[str, Any]:
        from persona_diff.probes import label_persona

        lab = LabelResult.from_dict(
            label_persona(summaries["base"], summaries["finetuned"], self._label_cfg(), adaptive=self.adaptive)
        )
        write_json(d / "label.json", lab.to_dict())
        write_json(RunLayout(self.out).label, lab.to_dict())
        return {"label": lab.label, "confidence": lab.confidence}

    def _answers(self) -> list[dict[str, Any]]:
        """Both models' own judged answers, tagged with who wrote them."""
        rows = []
        for role in ROLES:
            for r in read_jsonl(RunLayout(self.out).harm_answers(role)):
                rows.append({**r, "author": role})
        if not rows:
            raise PersonaDiffError(
                "no judged answers to capture: the probes stage wrote no harm.jsonl; include 'harm' in probes.probes"
            )
        return rows

    def _capture(self, d: Path) -> dict[str, Any]:
        from persona_diff.activations import capture, streams_from_answers

        c = self.cfg.capture
        streams = streams_from_answers(self.pair.base.tokenizer, self._answers(), max_tokens=c.max_tokens)
        store = capture(
            self.pair,
            streams,
            c.layers,
            c.positions,
            d / "store",
            batch_size=c.batch_size,
            dtype=c.dtype,
        )
        return {"n_tokens": store.n_tokens, "layers": store.layers}

    def _store(self) -> Any:
        from persona_diff.activations import ActivationStore

        return ActivationStore(self.out / "activations" / "store")

    def _method_configs(self) -> dict[str, Any]:
        """Each diffing method's settings: `diff.params` routed to it, with the run's seed."""
        from persona_diff.diffing import method_configs

        return method_configs(self.cfg.diff.methods, self.cfg.diff.params, seed=self.cfg.seed)

    def _diff(self, d: Path) -> dict[str, Any]:
        from persona_diff.diffing import get_method
        from persona_diff.diffing.evidence import export_directions

        store = self._store()
        res = {}
        for name, method_cfg in self._method_configs().items():
            log.info("diffing: %s", name)
            method = get_method(name)(method_cfg, out_dir=d / name)
            result = method.fit(store)
            export_directions(result, d / name, store, self.pair.base.tokenizer, self.pair.base.model)
            res[name] = {"layer": result.layer, "top_score": float(result.scores[0]) if len(result.scores) else None}
        return res

    def _top_direction(self) -> tuple[torch.Tensor, int]:
        from persona_diff.diffing import DiffResult

        name = self.cfg.steering.method
        path = self.out / "diffing" / name
        if not (path / "directions.json").is_file():
            raise ConfigError(
                f"steering.method={name!r} but diffing did not run it; add it to diff.methods ({', '.join(self.cfg.diff.methods)})"
            )
        r = DiffResult.load(path)
        return r.directions[0] * r.signs[0], r.layer

    def _steer(self, d: Path) -> dict[str, Any]:
        from persona_diff.analysis.plots import plot_dose_response
        from persona_diff.probes.harm import harm_questions
        from persona_diff.steering.sweep import steer_both_ways, summarize

        s = self.cfg.steering
        v, layer = self._top_direction()
        qs = harm_questions(self.cfg.probes)[: s.questions]
        sweep = replace(s.sweep, out=d / "dose_response.jsonl", seed=self.cfg.seed)
        rows = steer_both_ways(
            self.pair.base, self.pair.finetuned, self.judge, qs, v, layer, s.alphas, sweep, s.ablate_alphas
        )
        summ = summarize(rows, sweep.coherence_floor)
        write_json(d / "summary.json", summ)
        plot_dose_response(rows, self.out / "plots" / "dose_response")
        return {"layer": layer, "rows": len(rows)}

    def _analysis(self, d: Path) -> dict[str, Any]:
        from persona_diff.pipeline.analysis_stage import analyse

        return analyse(self.out, d, list(self.cfg.diff.methods), self._store(), self.cfg.analysis.n_boot, self.cfg.seed)

    def _internals(self, d: Path) -> dict[str, Any]:
        from persona_diff.internals.run import Member
        from persona_diff.pipeline.internals_stage import run_stage

        # the last stage: it takes over the models the probes loaded (merging the adapter in
        # place) rather than loading its own; loaded when no earlier stage ran
        held = {"base": self._pair.base, "finetuned": self._pair.finetuned} if self._pair is not None else {}
        self._pair = self._base_model = None
        layout = RunLayout(self.out)
        label = LabelResult.from_dict(json.loads(layout.label.read_text())).label
        ft = Member.fine_tune("finetuned", self.ft_spec, layout.probes("finetuned"), label)
        return run_stage(
            d, self.base_spec, layout.probes("base"), [ft], self.cfg, {"finetuned": label}, lambda: self.judge, held
        )

    # ------------------------------------------------------------------ finish
    def finish(self) -> Path:
        """manifest.json, summary.json and report.html; kept as they are when no stage ran and
        they are newer than every stage (`persona-diff report DIR` rebuilds the report anyway)."""
        from persona_diff.report import build_report

        layout = RunLayout(self.out)
        if self.stages.up_to_date(self.out / "manifest.json", layout.summary, layout.report):
            log.info("run %s is up to date; report kept: %s", self.out, layout.report)
            return layout.report
        data = {"questions": self.cfg.probes.harm.questions or "default"}
        write_json(self.out / "manifest.json", build_manifest(self.weight_paths(), data, self.cfg.seed, self.run_hash))
        write_json(RunLayout(self.out).summary, self.summary().to_dict())
        report = build_report(self.out)
        log.info("report: %s", report)
        return report

    def summary(self) -> RunSummary:
        """summary.json, read back from the files the stages wrote."""
        return build_summary(self.out, self.base_spec, self.ft_spec)
