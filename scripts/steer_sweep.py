"""Dose-response sweep along a diffing direction, from Python (`persona-diff steer` does the same
with every option).

    python scripts/steer_sweep.py smollm2-135m runs/demo/run/diffing/mean runs/sweep --alphas 0,4,8,16

Writes OUT/dose_response.jsonl (resumable), OUT/dose_response.answers.jsonl, OUT/summary.json
and OUT/dose_response.{png,svg}.
"""

from __future__ import annotations

import argparse

from persona_diff import Direction, load_model
from persona_diff.generation import load_questions
from persona_diff.judges import make_judge
from persona_diff.log import setup_logging
from persona_diff.steering import DoseResponseConfig, default_questions_file, sweep_direction


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="model to steer (alias, folder, adapter, .gguf)")
    ap.add_argument("direction", help="diffing output folder (RUN/diffing/METHOD) or a saved Direction")
    ap.add_argument("out", help="output folder")
    ap.add_argument("--alphas", default="0,2,4,8,16", help="comma-separated α values")
    ap.add_argument("--judge", default="default", help="judge spec (default: the shipped calibrated judge)")
    ap.add_argument(
        "--questions", default=None, help="questions file (default: first-plot questions, else the shipped set)"
    )
    args = ap.parse_args(argv)
    setup_logging()

    direction = Direction.load(args.direction)  # the top-ranked direction of a diffing output, sign applied
    questions = load_questions(args.questions or default_questions_file())
    lm = load_model(args.model)
    judge = make_judge(args.judge, cache_dir=args.out)
    cfg = DoseResponseConfig(samples_per_question=2, max_new_tokens=48, coherence_floor=50.0)
    alphas = [float(a) for a in args.alphas.split(",")]
    summary = sweep_direction(lm, judge, questions, direction, args.out, alphas, cfg=cfg)
    for cell in summary["cells"]:
        print(
            f"layer {cell['layer']}: chosen α={cell['chosen_alpha']} EM% persona={cell['em_pct_persona']} "
            f"random={cell['em_pct_random']} baseline={cell['em_pct_baseline']}"
        )


if __name__ == "__main__":
    main()
