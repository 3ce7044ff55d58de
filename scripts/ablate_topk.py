"""Ablate the top-k diffing directions (latent decoder vectors) in a model and measure EM%.

    python scripts/ablate_topk.py --model runs/demo/organism --directions runs/demo/diffing/base-sae \
        --k 5 --questions QUESTIONS.yaml --judge calibrated:DIR --out runs/ablate

Rows (OUT/ablate_topk.jsonl, resumable): the unablated baseline, the span of the top-k directions
projected out at their layer, each direction alone (--each), and a random k-dimensional
subspace of the same size as the control. Prints EM% and coherent% per row.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from persona_diff.generation import load_questions
from persona_diff.judges import make_judge
from persona_diff.log import setup_logging
from persona_diff.models import load_model
from persona_diff.paths import RESOURCES, find_reference
from persona_diff.steering import DoseResponseConfig, evaluate_steered, random_like, read_rows
from persona_diff.steering.io import direction_files

# the published first-plot questions when reference data is present, else the shipped default set
DEFAULT_QUESTIONS = find_reference("betley-em/evaluation/first_plot_questions.yaml") or RESOURCES / "questions" / "default.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="model spec to ablate in (usually the fine-tune)")
    ap.add_argument("--base", default=None, help="base model of a PEFT adapter, if its config does not name it")
    ap.add_argument("--device", default="auto", help="auto (a GPU when visible), cpu, cuda, cuda:N")
    ap.add_argument("--dtype", default="float32", help="weights dtype: float32, bfloat16 (GPUs), float16")
    ap.add_argument("--directions", required=True, type=Path, help="diffing output folder or directions file")
    ap.add_argument("--k", type=int, default=5, help="how many top directions to ablate")
    ap.add_argument("--layer", type=int, default=None, help="override the sidecar's layer")
    ap.add_argument("--each", action="store_true", help="also ablate each direction alone")
    ap.add_argument("--positions", choices=["all", "prompt", "answer"], default="all", help="which positions to ablate")
    ap.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS, help="questions file")
    ap.add_argument("--limit-questions", type=int, default=None, help="use only the first N questions")
    ap.add_argument("--judge", default="default", help="judge spec; 'default' = the judge calibrated on SmolLM2's residual stream, fitted once on the reference data")
    ap.add_argument("--samples", type=int, default=2, help="samples per question")
    ap.add_argument("--max-new-tokens", type=int, default=48, help="maximum new tokens per answer")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    args = ap.parse_args()
    setup_logging()

    st, side = direction_files(args.directions)
    tensors = load_file(str(st))
    mat = tensors.get("directions", tensors.get("direction"))
    if mat is None:
        raise SystemExit(f"{st} holds no 'directions' or 'direction' tensor")
    mat = mat.reshape(-1, mat.shape[-1]).float()[: args.k]
    meta = json.loads(side.read_text()) if side else {}
    layer = args.layer if args.layer is not None else meta.get("layer")
    if layer is None:
        raise SystemExit("no layer: pass --layer or give the directions a JSON sidecar with 'layer'")
    ids = [r.get("latent_id", i) for i, r in enumerate(meta.get("directions", []))][: len(mat)] or list(range(len(mat)))

    qs = load_questions(args.questions)[: args.limit_questions]
    lm = load_model(args.model, base=args.base, device=args.device, dtype=args.dtype)
    judge = make_judge(args.judge, cache_dir=args.out)
    cfg = DoseResponseConfig(mode="ablate", positions=args.positions, samples_per_question=args.samples,
                             max_new_tokens=args.max_new_tokens, seed=args.seed)
    out = args.out / "ablate_topk.jsonl"
    args.out.mkdir(parents=True, exist_ok=True)
    done = {r["name"]: r for r in read_rows(out)}
    cells: list[tuple[str, torch.Tensor | None]] = [("none", None), (f"top{len(mat)}", mat),
                                                   (f"random{len(mat)}", random_like(mat, seed=1234))]
    if args.each:
        cells += [(f"latent{ids[i]}", mat[i]) for i in range(len(mat))]
    for name, vec in cells:
        if name in done:
            row = done[name]
        else:
            stats, _ = evaluate_steered(lm, judge, qs, cfg, vec, layer, alpha=1.0 if vec is not None else 0.0)
            row = {"name": name, "layer": layer, "k": 0 if vec is None else vec.reshape(-1, mat.shape[-1]).shape[0], **stats}
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
        print(f"{name:>12}: EM% {row['em_pct']}  coherent% {row['coherent_pct']}  (n={row['n_scored']})")
    print(f"results in {out}")


if __name__ == "__main__":
    main()
