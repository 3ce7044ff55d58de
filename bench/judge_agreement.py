"""Leave-one-file-out agreement of CPU judges with GPT-4o on the published judged files.

Judges, side by side in one run:
- MiniLM-calibrated on every answer;
- MiniLM-calibrated and SmolLM2-residual-calibrated (a few blocks, one forward) on the same
  stratified subsample (`--lm-per-file` answers per file; SmolLM2 costs a forward per answer);
- the SmolLM2 logprob judge (`hf:smollm2-135m`, no fitting) on a smaller subsample.

Encoder features are cached under --cache (keyed by encoder and file hash) so reruns are fast.

    python bench/judge_agreement.py --data-dir ../shared/data/model-organisms-em/judged_responses
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from persona_diff.judges.agreement import JudgedTable, judge_agreement, load_tables
from persona_diff.judges.calibrated import leave_one_file_out, stratified_subsample
from persona_diff.judges.encoders import make_encoder, residual_answer_means


def cached(cache: Path, key: str, fn) -> np.ndarray:
    f = cache / f"{key}.npy"
    if f.is_file():
        return np.load(f)
    x = fn()
    cache.mkdir(parents=True, exist_ok=True)
    np.save(f, x)
    return x


def sub_key(t: JudgedTable) -> str:
    return f"{t.sha256[:12]}-{len(t)}-{hashlib.sha256(json.dumps(t.answers).encode()).hexdigest()[:12]}"


def main() -> None:
    ap = argparse.ArgumentParser()
    here = Path(__file__).resolve().parents[1]
    ap.add_argument("--data-dir", default=str(here.parent / "shared/data/model-organisms-em/judged_responses"))
    ap.add_argument(
        "--cache",
        default=str(Path(os.environ.get("PERSONA_DIFF_CACHE", Path.home() / ".cache/persona-diff")) / "bench-features"),
    )
    ap.add_argument("--lm", default="smollm2-135m")
    ap.add_argument("--layers", default="8,14,20")
    ap.add_argument("--lm-per-file", type=int, default=100)
    ap.add_argument("--max-answer-tokens", type=int, default=128)
    ap.add_argument("--logprob-per-file", type=int, default=40)
    ap.add_argument("--skip", default="", help="comma list of: minilm-full, lm, logprob")
    ap.add_argument("--out", default=None, help="write the markdown tables here too")
    args = ap.parse_args()
    torch.set_num_threads(2)
    skip = set(args.skip.split(","))
    cache = Path(args.cache)
    tables = load_tables(sorted(glob.glob(str(Path(args.data_dir) / "*.csv"))))
    out: list[str] = []

    def section(title: str, rep, secs: float) -> None:
        s = f"### {title}\n\n{rep.table()}\n\n({secs:.0f} s)\n"
        print(s, flush=True)
        out.append(s)

    if "minilm-full" not in skip:
        enc = make_encoder("minilm")
        t0 = time.time()
        feats = [
            cached(cache, f"minilm-{t.sha256[:16]}", lambda t=t: enc.encode(t.questions, t.answers)) for t in tables
        ]
        t1 = time.time()
        rep = leave_one_file_out(tables, feats, "minilm-calibrated")
        section(
            f"MiniLM-calibrated, all {sum(len(t) for t in tables)} answers",
            rep,
            time.time() - t1 + (t1 - t0),
        )

    # matched subsample for the LM residual comparison
    n_sub = args.lm_per_file * len(tables)
    sub = stratified_subsample(tables, n_sub, seed=0)
    sub = [t.subset(range(min(len(t), args.lm_per_file))) for t in sub]
    if "lm" not in skip:
        enc = make_encoder("minilm")
        feats = [cached(cache, f"minilm-sub-{sub_key(t)}", lambda t=t: enc.encode(t.questions, t.answers)) for t in sub]
        section(
            f"MiniLM-calibrated, subsample {sum(len(t) for t in sub)}",
            leave_one_file_out(sub, feats, "minilm-calibrated"),
            0,
        )
        from persona_diff.models import load_model

        layers = [int(x) for x in args.layers.split(",")]
        lm = load_model(args.lm)
        t0 = time.time()
        per_layer: dict[int, list[np.ndarray]] = {layer: [] for layer in layers}
        for t in sub:
            key = f"lm-{args.lm}-{args.layers}-{args.max_answer_tokens}-{sub_key(t)}"
            f = cache / f"{key}.npz"
            if f.is_file():
                z = np.load(f)
                res = {int(k): z[k] for k in z.files}
            else:
                res = residual_answer_means(
                    lm,
                    t.questions,
                    t.answers,
                    layers,
                    max_answer_tokens=args.max_answer_tokens,
                    desc=t.name,
                )
                cache.mkdir(parents=True, exist_ok=True)
                np.savez(f, **{str(k): v for k, v in res.items()})
            for layer in layers:
                per_layer[layer].append(res[layer])
        secs = time.time() - t0
        for layer in layers:
            rep = leave_one_file_out(sub, per_layer[layer], f"{args.lm}@{layer}-calibrated")
            section(
                f"{args.lm} residual block {layer} calibrated, subsample {sum(len(t) for t in sub)}",
                rep,
                secs,
            )

    if "logprob" not in skip:
        from persona_diff.judges import make_judge

        small = [t.subset(range(min(len(t), args.logprob_per_file))) for t in sub]
        t0 = time.time()
        judge = make_judge(f"hf:{args.lm}")
        rep = judge_agreement(judge, small)
        rep.mode = "per-file (no fitting)"
        section(
            f"{args.lm} logprob judge, subsample {sum(len(t) for t in small)}",
            rep,
            time.time() - t0,
        )
    if args.out:
        Path(args.out).write_text("\n".join(out))
        print(json.dumps({"written": args.out}))


if __name__ == "__main__":
    main()
