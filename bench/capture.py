"""Capture cost vs a plain HF forward, early-stop scaling, and memory boundedness, in one run.

On SmolLM2-135M (30 blocks), the same token batches:
- plain HF forward (`model(input_ids, attention_mask)`, full model with lm_head);
- `capture` of all layers 0..29 (both models of a pair are timed, so it is divided by 2);
- `capture` of layer L=8 with early stop, and without early stop;
- peak RSS growth (over the loaded models) of a capture of 1x vs 10x the tokens, each in
  a fresh subprocess, with 2,048-token shards.

    python bench/capture.py [--streams 16] [--len 96] [--threads 1] [--shard-tokens 16384]
                            [--write-ahead 1] [--no-memory]

`--shard-tokens` smaller than the capture makes the store writer save and hash shards during
the capture (with the default, the small bench writes one shard at the end); `--write-ahead 0`
writes them on the main thread (no overlap with the forwards).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def _streams(tok, n, length, seed=0):
    from persona_diff.activations.tokens import TokenStream

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(100, len(tok) - 100, (n, length), generator=g)
    return [TokenStream(row.tolist(), length // 2) for row in ids]


def _pair():
    from persona_diff.models import CheckpointPair, load_model

    lm = load_model("smollm2-135m")
    return CheckpointPair(lm, lm)


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024


def memory_child(n_streams: int, length: int) -> None:
    """Current RSS sampled every 5 ms during the capture (ru_maxrss is dominated by loading)."""
    import threading

    from persona_diff.activations import capture

    pair = _pair()
    streams = _streams(pair.base.tokenizer, n_streams, length)
    base = _rss_kb()
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_kb())
            time.sleep(0.005)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    with tempfile.TemporaryDirectory() as d:
        capture(pair, streams, [8, 14, 20], "all", Path(d) / "s", batch_size=8, shard_tokens=2048, show_progress=False)
    done.set()
    t.join()
    print(json.dumps({"base_kb": base, "peak_kb": peak[0]}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--len", type=int, default=96)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only-memory", action="store_true", help="skip the timing part")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory part")
    ap.add_argument("--shard-tokens", type=int, default=16384, help="shard size (timing part)")
    ap.add_argument("--write-ahead", type=int, default=None, help="capture's write_ahead")
    ap.add_argument("--memory-child", nargs=2, type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    if not args.only_memory:
        timing(args)
    if not args.no_memory:
        memory(args)


def timing(args: argparse.Namespace) -> None:
    from persona_diff.activations import capture
    from persona_diff.activations.capture import pad_batch

    pair = _pair()
    model = pair.base.model
    streams = _streams(pair.base.tokenizer, args.streams, args.len)
    n_tok = args.streams * args.len
    bs = 8

    def plain():
        with torch.no_grad():
            for s in range(0, len(streams), bs):
                ids, am = pad_batch(streams[s : s + bs], 0)
                model(input_ids=ids, attention_mask=am)

    extra = {} if args.write_ahead is None else {"write_ahead": args.write_ahead}

    def cap(layers, early):
        with tempfile.TemporaryDirectory() as d:
            capture(
                pair,
                streams,
                layers,
                "all",
                Path(d) / "s",
                batch_size=bs,
                early_stop=early,
                shard_tokens=args.shard_tokens,
                show_progress=False,
                **extra,
            )

    cases = {
        "plain HF forward": plain,
        "capture all 30 layers": lambda: cap(list(range(30)), True),
        "capture layer 8, early stop": lambda: cap([8], True),
        "capture layer 8, no early stop": lambda: cap([8], False),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    plain()  # warm-up
    for _ in range(args.repeats):  # interleaved, so load changes hit every case alike
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    ref = med["plain HF forward"]
    print(
        f"SmolLM2-135M, {n_tok} tokens ({args.streams}x{args.len}), batch {bs}, threads {args.threads}, "
        f"median of {args.repeats}, shards of {args.shard_tokens} tokens, "
        f"write_ahead {args.write_ahead}"
    )
    print(f"{'case':34s} {'s/model':>8s} {'÷plain':>7s}")
    for k, v in med.items():
        per_model = v if k.startswith("plain") else v / 2  # capture runs base and fine-tuned
        print(f"{k:34s} {per_model:8.3f} {per_model / ref:7.3f}")
    print(f"(early stop at layer 8 of 30: ideal ≈ {9 / 30:.2f} of the blocks, plus embeddings)")


def memory(args: argparse.Namespace) -> None:

    mem = {}
    for mult in (1, 10):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--threads",
                str(args.threads),
                "--memory-child",
                str(args.streams * mult),
                str(args.len),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        mem[mult] = json.loads(out.stdout.strip().splitlines()[-1])
    grow = {m: (v["peak_kb"] - v["base_kb"]) / 1024 for m, v in mem.items()}
    peak = {m: v["peak_kb"] / 1024 for m, v in mem.items()}
    print(
        f"peak RSS 1x: {peak[1]:.0f} MiB (+{grow[1]:.0f} over loaded models), "
        f"10x: {peak[10]:.0f} MiB (+{grow[10]:.0f}); ratio of peaks {peak[10] / peak[1]:.3f}, "
        f"ratio of growth {grow[10] / max(grow[1], 1e-9):.2f}"
    )


if __name__ == "__main__":
    main()
