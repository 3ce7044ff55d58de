"""`persona-diff capture`: residual-stream activations of a model pair into a sharded store."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("capture")
    def capture_cmd(
        pair: tuple[str, str] = typer.Option(..., "--pair", help="BASE FT: the two model specs (alias, folder, PEFT adapter, .gguf)."),
        layers: str = typer.Option("8,14,20", "--layers", help="Comma-separated block indices (negative = from the end)."),
        tokens: Path = typer.Option(..., "--tokens", help="Answers JSONL (question, answer), chats JSONL (messages), texts JSONL (text) or a plain text file."),
        out: Path = typer.Option(..., "--out", help="Store folder (index.json + shards). An interrupted capture there resumes."),
        positions: str = typer.Option("answer", "--positions", help="Which tokens to keep: all, prompt, answer or last_prompt."),
        batch_size: int = typer.Option(8, "--batch-size", help="Streams per forward pass."),
        shard_tokens: int = typer.Option(16384, "--shard-tokens", help="Tokens per shard (bounds memory)."),
        dtype: str = typer.Option("float32", "--dtype", help="Stored dtype: float32, bfloat16 or float16."),
        max_tokens: int = typer.Option(512, "--max-tokens", help="Truncate each stream to this many tokens."),
        max_streams: int | None = typer.Option(None, "--max-streams", help="Use only the first N streams of the file."),
        early_stop: bool = typer.Option(True, "--early-stop/--no-early-stop", help="Stop the forward pass after the last requested layer."),
        device: str = typer.Option("auto", "--device", help="Device for both models: auto (a GPU when visible), cpu, cuda, cuda:N."),
        device_map: str | None = typer.Option(None, "--device-map", help="'auto' spreads each model over all visible GPUs (models too big for one)."),
        model_dtype: str = typer.Option("float32", "--model-dtype", help="Weights dtype of both models: float32, bfloat16 (GPUs), float16."),
    ) -> None:
        """Capture both models' block outputs on the same token streams (resumable)."""
        from persona_diff.activations import capture, streams_from_file
        from persona_diff.models import CheckpointPair

        layer_list = [int(x) for x in layers.split(",") if x.strip()]
        cp = CheckpointPair.load(pair[0], pair[1], dtype=model_dtype, device=device, device_map=device_map)
        streams = streams_from_file(cp.base.tokenizer, tokens, max_tokens)[:max_streams]
        store = capture(cp, streams, layer_list, positions, out, batch_size=batch_size, shard_tokens=shard_tokens,
                        dtype=dtype, early_stop=early_stop)
        typer.echo(f"{store.n_tokens} tokens × layers {store.layers} from {len(streams)} streams in {out} "
                   f"({store.n_shards} shards)")
