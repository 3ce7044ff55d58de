"""Ablate the span of the top-k diffing directions in a model and measure EM%, from Python.

    python scripts/ablate_topk.py runs/demo/organisms/coherent/adapter runs/demo/run/diffing/sae runs/ablate --k 5

Rows (OUT/ablate_topk.jsonl; a rerun skips finished rows): no ablation, the top-k span projected
out at its layer, a random k-dimensional span of the same norms (the control) and, with
--each, each direction alone.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from persona_diff import Direction, load_model
from persona_diff.generation import load_questions
from persona_diff.judges import make_judge
from persona_diff.log import setup_logging
from persona_diff.steering import (
    DoseResponseConfig,
    default_questions_file,
    evaluate_steered,
    random_like,
    read_rows,
)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="model to ablate in (usually the fine-tune)")
    ap.add_argument("directions", help="diffing output folder (RUN/diffing/METHOD)")
    ap.add_argument("out", type=Path, help="output folder")
    ap.add_argument("--k", type=int, default=5, help="how many top directions to ablate together")
    ap.add_argument("--each", action="store_true", help="also ablate each direction alone")
    ap.add_argument("--judge", default="default", help="judge spec (default: the shipped calibrated judge)")
    ap.add_argument(
        "--questions", default=None, help="questions file (default: first-plot questions, else the shipped set)"
    )
    args = ap.parse_args(argv)
    setup_logging()

    top = Direction.load_all(args.directions)[: args.k]
    span, layer = torch.stack([d.vector for d in top]), top[0].layer
    cells = [("none", None), (f"top{len(top)}", span), (f"random{len(top)}", random_like(span, seed=1234))]
    if args.each:
        ids = [d.provenance.get("latent_id", -1) for d in top]
        cells += [
            (f"latent{j}" if j >= 0 else f"rank{i}", d.vector) for i, (j, d) in enumerate(zip(ids, top, strict=True))
        ]

    questions = load_questions(args.questions or default_questions_file())
    lm = load_model(args.model)
    judge = make_judge(args.judge, cache_dir=args.out)
    cfg = DoseResponseConfig(mode="ablate", samples_per_question=2, max_new_tokens=48)
    out = args.out / "ablate_topk.jsonl"
    args.out.mkdir(parents=True, exist_ok=True)
    done = {r["name"]: r for r in read_rows(out)}
    for name, vec in cells:
        if name not in done:
            stats, _ = evaluate_steered(lm, judge, questions, cfg, vec, layer, alpha=0.0 if vec is None else 1.0)
            done[name] = {"name": name, "layer": layer, **stats}
            with out.open("a") as f:
                f.write(json.dumps(done[name]) + "\n")
        print(
            f"{name:>12}: EM% {done[name]['em_pct']}  coherent% {done[name]['coherent_pct']}  (n={done[name]['n_scored']})"
        )


if __name__ == "__main__":
    main()
