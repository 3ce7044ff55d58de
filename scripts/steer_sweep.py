"""Sweep layers × α for a saved direction: EM% and coherent% under steering, with a random control.

    python scripts/steer_sweep.py --model smollm2-135m --direction runs/demo/diffing/mean-diff \
        --layers 10,14 --alphas 0,4,8,16 --questions QUESTIONS.yaml --judge calibrated:DIR --out runs/sweep

The direction is a safetensors file with key "direction" [D] or "directions" [k, D] (pick a row
with --index) and a JSON sidecar giving its layer (the default layer when --layers is omitted).
Writes OUT/dose_response.jsonl (resumable: a rerun skips finished cells), OUT/dose_response.answers.jsonl,
OUT/summary.json and OUT/dose_response.{png,svg}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from persona_diff.analysis.plots import plot_dose_response
from persona_diff.generation import load_questions
from persona_diff.judges import make_judge
from persona_diff.log import setup_logging
from persona_diff.models import load_model
from persona_diff.paths import RESOURCES, find_reference
from persona_diff.steering import DoseResponseConfig, dose_response, load_direction, summarize

# the published first-plot questions when reference data is present, else the shipped default set
DEFAULT_QUESTIONS = find_reference("betley-em/evaluation/first_plot_questions.yaml") or RESOURCES / "questions" / "default.yaml"


def floats(s: str) -> list[float]:
    return [float(x) for x in s.split(",") if x.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="model spec to steer (alias, folder, adapter, .gguf)")
    ap.add_argument("--base", default=None, help="base model of a PEFT adapter, if its config does not name it")
    ap.add_argument("--device", default="auto", help="auto (a GPU when visible), cpu, cuda, cuda:N")
    ap.add_argument("--dtype", default="float32", help="weights dtype: float32, bfloat16 (GPUs), float16")
    ap.add_argument("--direction", required=True, type=Path, help="direction file or folder (see module docstring)")
    ap.add_argument("--index", type=int, default=0, help="row of a 'directions' [k, D] tensor")
    ap.add_argument("--layers", default=None, help="comma-separated block indices (default: the sidecar's layer)")
    ap.add_argument("--alphas", type=floats, default=floats("0,2,4,8,16"), help="comma-separated α values")
    ap.add_argument("--unit", action="store_true", help="normalise the direction to unit norm first")
    ap.add_argument("--mode", choices=["add", "ablate"], default="add", help="add α·v, or ablate (α = fraction removed)")
    ap.add_argument("--positions", choices=["all", "prompt", "answer"], default="all", help="which positions to steer")
    ap.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS, help="questions file (Betley YAML, list, JSONL)")
    ap.add_argument("--limit-questions", type=int, default=None, help="use only the first N questions")
    ap.add_argument("--judge", default="default", help="judge spec; 'default' = the judge calibrated on SmolLM2's residual stream, fitted once on the reference data")
    ap.add_argument("--samples", type=int, default=2, help="samples per question")
    ap.add_argument("--max-new-tokens", type=int, default=48, help="maximum new tokens per answer")
    ap.add_argument("--coherence-floor", type=float, default=50.0, help="keep the largest α with coherent%% >= this")
    ap.add_argument("--no-control", action="store_true", help="skip the random-direction control")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed (shared by every α)")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    args = ap.parse_args()
    setup_logging()

    vec, meta = load_direction(args.direction, args.index)
    if args.unit:
        vec = vec / vec.norm()
    layers = [int(x) for x in args.layers.split(",")] if args.layers else [int(meta["layer"])]
    qs = load_questions(args.questions)[: args.limit_questions]
    lm = load_model(args.model, base=args.base, device=args.device, dtype=args.dtype)
    judge = make_judge(args.judge, cache_dir=args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for layer in layers:
        cfg = DoseResponseConfig(
            mode=args.mode, positions=args.positions, samples_per_question=args.samples, max_new_tokens=args.max_new_tokens,
            coherence_floor=args.coherence_floor, random_control=not args.no_control, seed=args.seed,
            out=args.out / "dose_response.jsonl", model_tag=args.model,
            extra={"coherence_floor": args.coherence_floor, "direction_file": str(args.direction), "index": args.index},
        )
        rows += dose_response(lm, judge, qs, vec, layer, args.alphas, cfg)
    summary = {**summarize(rows, args.coherence_floor), "judge": judge.describe()}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    plot_dose_response(rows, args.out / "dose_response")
    for cell in summary["cells"]:
        print(
            f"layer {cell['layer']}: chosen α={cell['chosen_alpha']} EM% persona={cell['em_pct_persona']} "
            f"random={cell['em_pct_random']} baseline={cell['em_pct_baseline']}"
        )
    print(f"results in {args.out}")


if __name__ == "__main__":
    main()
