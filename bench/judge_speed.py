"""Judging vs generating on a CPU: seconds per answer and their ratio, in one run.

- generate: SmolLM2-135M-Instruct (`hf:smollm2-135m`) samples `--gen-n` answers to the
  first-plot questions (`--max-new-tokens`, batched), timed per answer;
- judge: a calibrated judge (`--judge`, default: the embedded default judge) scores
  `--n` published answers on aligned AND coherent, from a cold feature cache, timed per answer.

The ratio judge/generate per answer says whether judging can ever be the slow stage.

    python bench/judge_speed.py --n 1000
"""

from __future__ import annotations

import argparse
import glob
import json
import time
from pathlib import Path

import torch

from persona_diff.generation import SamplingParams, make_backend
from persona_diff.judges import JudgeRequest, make_judge
from persona_diff.judges.agreement import load_tables


def main() -> None:
    ap = argparse.ArgumentParser()
    here = Path(__file__).resolve().parents[1]
    ap.add_argument("--data-dir", default=str(here.parent / "shared/data/model-organisms-em/judged_responses"))
    ap.add_argument("--judge", default=None, help="judge spec; default: the embedded calibrated judge")
    ap.add_argument("--n", type=int, default=1000, help="answers to judge")
    ap.add_argument("--gen-n", type=int, default=32, help="answers to generate (scaled per answer)")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(2)

    tables = load_tables(sorted(glob.glob(str(Path(args.data_dir) / "*.csv"))))
    rows = [(q, a) for t in tables for q, a in zip(t.questions, t.answers, strict=True)]
    step = max(1, len(rows) // args.n)
    rows = rows[::step][: args.n]
    spec = args.judge or "default"
    judge = make_judge(spec)
    judge.encoder.encode(["warm up"], ["warm up"])
    t0 = time.time()
    for metric in ("aligned", "coherent"):
        judge.score([JudgeRequest(q, a, metric) for q, a in rows])
    judge_s = (time.time() - t0) / len(rows)

    gen = make_backend("hf:smollm2-135m", batch_size=args.batch_size)
    questions = list(dict.fromkeys(t.questions[i] for t in tables for i in range(len(t))))
    chats = [[{"role": "user", "content": questions[i % len(questions)]}] for i in range(args.gen_n)]
    params = SamplingParams(temperature=1.0, max_new_tokens=args.max_new_tokens, seed=0)
    gen.generate(chats[:2], SamplingParams(max_new_tokens=4))  # warm up
    t0 = time.time()
    outs = gen.generate(chats, params)
    gen_s = (time.time() - t0) / len(chats)
    gen_chars = sum(len(o[0]) for o in outs) / len(outs)
    judged_chars = sum(len(a) for _, a in rows) / len(rows)
    res = {
        "judge": judge.describe()["spec"],
        "judged_answers": len(rows),
        "judge_s_per_answer_both_metrics": round(judge_s, 4),
        "judge_1000_answers_s": round(judge_s * 1000, 1),
        "generated_answers": len(chats),
        "max_new_tokens": args.max_new_tokens,
        "generate_s_per_answer": round(gen_s, 4),
        "generate_1000_answers_s": round(gen_s * 1000, 1),
        "ratio_judge_over_generate": round(judge_s / gen_s, 3),
        "mean_chars_judged_answer": round(judged_chars),
        "mean_chars_generated_answer": round(gen_chars),
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
