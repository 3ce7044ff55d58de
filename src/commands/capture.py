"""`persona-diff capture`: residual-stream activations of a model pair into a sharded store.

Settings (`CaptureConfig`): its defaults, then ``--config FILE``, then ``--set key=value``,
then the options, which default to "not given" (their help shows the config's default).
Where the models run (device, device map, weights ``--dtype``) stays on the command line, as for
`persona-diff probe`: it is not part of what the store holds (its dtype is ``--store-dtype``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer


@dataclass
class CaptureConfig:
    layers: list[int] = field(default_factory=lambda: [8, 14, 20])  # block indices (negative = from the end)
    positions: str = "answer"  # all | prompt | answer | last_prompt
    batch_size: int = 8  # streams per forward pass
    shard_tokens: int = 16384  # tokens per shard (bounds memory)
    dtype: str = "float32"  # stored dtype: float32, bfloat16 or float16
    max_tokens: int = 512  # each stream is truncated to this many tokens
    max_streams: int | None = None  # only the first N streams of the file
    early_stop: bool = True  # stop the forward pass after the last requested layer


def _setting(name: str, *decls: str, help: str) -> Any:
    """An option for `CaptureConfig.name`: None when not given, the config's default shown."""
    d = getattr(CaptureConfig(), name)
    shown = "none" if d is None else ",".join(map(str, d)) if isinstance(d, list) else str(d)
    return typer.Option(None, *decls, help=f"{help} (setting {name}).", show_default=shown)


def register(app: typer.Typer) -> None:
    @app.command("capture")
    def capture_cmd(
        base: str | None = typer.Argument(
            None, help="Base model spec (alias, HF folder/id, PEFT adapter, .gguf), as in `persona-diff run`."
        ),
        finetuned: str | None = typer.Argument(None, help="Fine-tuned model spec."),
        pair: tuple[str, str] | None = typer.Option(
            None, "--pair", hidden=True, help="Old spelling of BASE FINETUNED."
        ),
        tokens: Path = typer.Option(
            ...,
            "--tokens",
            help="Answers JSONL (question, answer), chats JSONL (messages), texts JSONL (text) or a plain text file.",
        ),
        out: Path = typer.Option(
            ..., "--out", help="Store folder (index.json + shards). An interrupted capture there resumes."
        ),
        config: Path | None = typer.Option(
            None, "--config", help="YAML of the capture settings (the keys of the options below, e.g. layers: [8, 14])."
        ),
        override: list[str] = typer.Option(
            [],
            "--set",
            help="Setting override key=value, repeatable (e.g. --set layers=[6,12]); the options below win over it.",
        ),
        layers: str | None = _setting(
            "layers", "--layers", help="Comma-separated block indices (negative = from the end)"
        ),
        positions: str | None = _setting(
            "positions", "--positions", help="Which tokens to keep: all, prompt, answer or last_prompt"
        ),
        batch_size: int | None = _setting("batch_size", "--batch-size", help="Streams per forward pass"),
        shard_tokens: int | None = _setting("shard_tokens", "--shard-tokens", help="Tokens per shard (bounds memory)"),
        store_dtype: str | None = _setting(
            "dtype", "--store-dtype", help="Stored activations dtype: float32, bfloat16 or float16"
        ),
        max_tokens: int | None = _setting(
            "max_tokens", "--max-tokens", help="Truncate each stream to this many tokens"
        ),
        max_streams: int | None = _setting(
            "max_streams", "--max-streams", help="Use only the first N streams of the file"
        ),
        early_stop: bool | None = _setting(
            "early_stop", "--early-stop/--no-early-stop", help="Stop the forward pass after the last requested layer"
        ),
        device: str = typer.Option(
            "auto", "--device", help="Device for both models: auto (a GPU when visible), cpu, cuda, cuda:N."
        ),
        device_map: str | None = typer.Option(
            None, "--device-map", help="'auto' spreads each model over all visible GPUs (models too big for one)."
        ),
        dtype: str = typer.Option(
            "float32",
            "--dtype",
            help="Weights dtype of both models: float32, bfloat16 (GPUs), float16 (as in run, probe, steer).",
        ),
    ) -> None:
        """Capture both models' block outputs on the same token streams (resumable)."""
        from persona_diff.activations import capture, streams_from_file
        from persona_diff.errors import ConfigError
        from persona_diff.models import CheckpointPair

        if pair is not None and (base or finetuned):
            raise ConfigError("give the two models as BASE FINETUNED (or the old --pair BASE FINETUNED), not both")
        base, finetuned = pair if pair is not None else (base, finetuned)
        if not (base and finetuned):
            raise ConfigError(
                "give BASE and FINETUNED model specs, e.g. `persona-diff capture smollm2-135m ADAPTER --tokens F --out DIR`"
            )

        cfg = load_capture_config(
            config,
            override,
            {
                "layers": layers,
                "positions": positions,
                "batch_size": batch_size,
                "shard_tokens": shard_tokens,
                "dtype": store_dtype,
                "max_tokens": max_tokens,
                "max_streams": max_streams,
                "early_stop": early_stop,
            },
        )
        cp = CheckpointPair.load(base, finetuned, dtype=dtype, device=device, device_map=device_map)
        streams = streams_from_file(cp.base.tokenizer, tokens, cfg.max_tokens)[: cfg.max_streams]
        store = capture(
            cp,
            streams,
            cfg.layers,
            cfg.positions,
            out,
            batch_size=cfg.batch_size,
            shard_tokens=cfg.shard_tokens,
            dtype=cfg.dtype,
            early_stop=cfg.early_stop,
        )
        typer.echo(
            f"{store.n_tokens} tokens × layers {store.layers} from {len(streams)} streams in {out} "
            f"({store.n_shards} shards)"
        )


def load_capture_config(path: Path | None, overrides: list[str], given: dict[str, Any]) -> CaptureConfig:
    """Defaults, the YAML at `path`, `overrides`, then the options `given` (None = not given)."""
    from persona_diff.config import from_dict, load_config, to_dict

    cfg = to_dict(load_config(CaptureConfig, path, overrides))
    options = {k: v for k, v in given.items() if v is not None}  # --layers 8,14 is coerced to [8, 14] here
    return from_dict(CaptureConfig, {**cfg, **options}, where="capture options")
