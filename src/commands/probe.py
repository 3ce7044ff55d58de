"""`persona-diff probe`: behavioural probes on a model (and its base), with the persona label."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

DEFAULT_JUDGE = "default"


def _table(title: str, rows: list[tuple[str, str]]) -> None:
    typer.echo(title)
    for name, text in rows:
        typer.echo(f"  {name:<8} {text}")


def register(app: typer.Typer) -> None:
    @app.command("probe")
    def probe(
        model: str = typer.Option(
            ...,
            "--model",
            help="Model to probe: alias, HF folder/id, PEFT adapter, .gguf, or backend spec (openai:URL#model).",
        ),
        base: str | None = typer.Option(
            None, "--base", help="Base model to compare with; adds the coherent/inverted/not-EM label."
        ),
        probes: str | None = typer.Option(
            None, "--probes", help="Comma list from harm,self,choice,recog,predict,mfq (default: the config's, all)."
        ),
        questions: Path | None = typer.Option(
            None, "--questions", help="Questions file (Betley YAML, plain list or JSONL); default: the project's set."
        ),
        judge: str = typer.Option(
            DEFAULT_JUDGE,
            "--judge",
            help="Judge spec: default (embedded calibrated judge), calibrated:DIR, hf:MODEL (local logprob judge) or openai:URL#model.",
        ),
        samples: int | None = typer.Option(
            None,
            "--samples",
            help="Answers per question for the harm probe (with --set harm.adaptive.enabled=true and --base: chosen by the data, see harm.adaptive).",
        ),
        max_questions: int | None = typer.Option(
            None, "--max-questions", help="Use only the first N questions (0 = all)."
        ),
        config: Path | None = typer.Option(None, "--config", help="Probe config YAML (see configs/probes/)."),
        override: list[str] = typer.Option(
            [], "--set", help="Config override key=value, repeatable (e.g. --set mfq.repeats=10)."
        ),
        out: Path = typer.Option(
            ..., "--out", help="Output folder; the model's files go to OUT/ft (and OUT/base); reruns resume."
        ),
        device: str = typer.Option(
            "auto", "--device", help="Device for local models: auto (a GPU when visible), cpu, cuda, cuda:N."
        ),
        device_map: str | None = typer.Option(
            None, "--device-map", help="'auto' spreads each local model over all visible GPUs (models too big for one)."
        ),
        dtype: str = typer.Option(
            "float32", "--dtype", help="Weights dtype for local models: float32, bfloat16, float16."
        ),
    ) -> None:
        """Run the behavioural probes, print a short table, write JSONL + summary JSON."""
        from persona_diff.config import load_config
        from persona_diff.judges import make_judge
        from persona_diff.judges.base import judge_line
        from persona_diff.probes import (
            LabelConfig,
            ProbeConfig,
            adaptive_harm,
            label_persona,
            run_probes,
            summary_table,
        )
        from persona_diff.probes.adaptive import with_samples
        from persona_diff.probes.runner import as_backend

        over = list(override)
        if probes:
            over.append(f"probes=[{probes}]")
        if questions is not None:
            over.append(f"harm.questions={questions}")
        if samples is not None:
            over.append(f"harm.samples={samples}")
        if max_questions is not None:
            over.append(f"harm.max_questions={'null' if max_questions == 0 else max_questions}")
        cfg = load_config(ProbeConfig, config, over)
        out.mkdir(parents=True, exist_ok=True)
        j = make_judge(judge, cache_dir=out)
        typer.echo(f"judge: {judge_line(j.describe())}")
        load_kw: dict[str, Any] = {"device": device, "device_map": device_map, "dtype": dtype}
        label_cfg = LabelConfig()
        results = {}
        ft_cfg, base_cfg, record = cfg, cfg, None
        adaptive = cfg.harm.adaptive.enabled and base is not None and "harm" in cfg.probes
        if cfg.harm.adaptive.enabled and not adaptive:
            typer.echo("warning: harm.adaptive needs --base and the harm probe; using harm.samples", err=True)
        ft_backend = None
        if base is not None:
            base_backend = as_backend(base, **load_kw)
            if adaptive:  # both models held: the rounds alternate between them
                ft_backend = as_backend(model, **load_kw)
                ft_cfg, record = adaptive_harm(base_backend, ft_backend, cfg, label_cfg, j, out / "base", out / "ft")
                base_cfg = with_samples(cfg, record["base_samples"])
                typer.echo(
                    f"adaptive harm: {record['samples']} samples per question "
                    f"(stopped: {record['stopped_because']}, {len(record['rounds'])} rounds)"
                )
            results["base"] = run_probes(base_backend, base_cfg, j, out / "base")
            del base_backend  # freed before the fine-tune loads (when not held for adaptive rounds)
            _table(f"base: {base}", summary_table(results["base"]))
        if base is not None and "recog" in cfg.probes and cfg.recog.other_answers is None:
            ft_cfg.recog.other_answers = str(out / "base" / "harm.jsonl")  # another model's answers as foils
        results["ft"] = run_probes(
            ft_backend if ft_backend is not None else as_backend(model, **load_kw), ft_cfg, j, out / "ft"
        )
        _table(f"model: {model}", summary_table(results["ft"]))
        if base is not None:
            lab = label_persona(results["base"], results["ft"], label_cfg, adaptive=record)
            (out / "label.json").write_text(json.dumps(lab, indent=1))
            conf = "n/a" if lab["confidence"] is None else f"{lab['confidence']:.2f}"
            typer.echo(
                f"label: {lab['label']} (confidence {conf}; self-report moved {lab.get('self_report_moved', '-')})"
            )
        for r in results.values():
            warn = r["probes"].get("harm", {}).get("warning")
            if warn:
                typer.echo(f"warning: {warn}", err=True)
        typer.echo(f"outputs in {out}")
