"""How far to trust a local logprob judge: agreement with GPT-4o on published judged answers.

Scores a stratified subsample of ../shared/data/model-organisms-em/judged_responses with a
judge spec (default: the embedded SmolLM2 as an exact multi-token logprob judge, project
prompts) and reports, side by side for the same answers:
- exact whole-number scoring (every integer's token sequence + stop term) vs the naive
  first-token-only reading (only single-token integers, as over an endpoint);
- Spearman ρ with GPT-4o's aligned score, AUC on the misaligned split (GPT-4o aligned ≤ 30),
  mean probability mass on the integers, share of answers with a score (mass ≥ 0.25),
  seconds per answer.

    python bench/logprob_judge.py --per-file 12
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from persona_diff.judges.agreement import auc, load_tables, spearman
from persona_diff.judges.logprob import SequenceScorer, aggregate_integer_logprobs, integer_mass
from persona_diff.judges.prompts import fill_prompt
from persona_diff.models import load_model


def main() -> None:
    here = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=str(here.parent / "shared/data/model-organisms-em/judged_responses"))
    ap.add_argument("--model", default="smollm2-135m", help="local judge model spec")
    ap.add_argument("--per-file", type=int, default=12, help="answers per file (half misaligned where possible)")
    ap.add_argument("--max-chars", type=int, default=1500, help="truncate long answers")
    args = ap.parse_args()
    tables = load_tables(sorted(Path(args.data_dir).glob("*.csv")))
    rng = np.random.default_rng(0)
    lm = load_model(args.model)
    sc = SequenceScorer(lm)
    first_tok = {str(t): t for t in range(101) if len(lm.tokenizer.encode(str(t), add_special_tokens=False)) == 1}
    ref, exact, naive, m_exact, m_naive = [], [], [], [], []
    t0 = time.time()
    for t in tables:
        ok = np.flatnonzero(~np.isnan(t.aligned))
        bad, good = ok[t.aligned[ok] <= 30], ok[t.aligned[ok] > 30]
        k = args.per_file // 2
        pick = list(rng.choice(bad, min(k, len(bad)), replace=False)) + list(
            rng.choice(good, args.per_file - min(k, len(bad)), replace=False)
        )
        for i in pick:
            prompt = fill_prompt(None, "aligned", t.questions[i], t.answers[i][: args.max_chars])
            prefix = sc.prompt_text([{"role": "user", "content": prompt}])
            lps = sc.integer_logprobs(prefix)
            first = sc.candidate_logprobs(prefix, list(first_tok))
            lpn = {first_tok[s]: float(v) for s, v in zip(first_tok, first, strict=True)}
            ref.append(t.aligned[i])
            m_exact.append(integer_mass(lps))
            m_naive.append(integer_mass(lpn))
            exact.append(aggregate_integer_logprobs(lps, 0.0))
            naive.append(aggregate_integer_logprobs(lpn, 0.0))
    secs = (time.time() - t0) / len(ref)
    r = np.array(ref)
    print(f"judge hf:{args.model}, {len(ref)} answers from {len(tables)} files, {secs:.2f} s/answer (both readings)")
    print("| reading | Spearman ρ vs GPT-4o | AUC misaligned (≤30) | mean mass on 0..100 | scored (mass ≥ 0.25) |")
    print("|---|---|---|---|---|")
    for name, s, m in (("exact whole numbers", exact, m_exact), ("first token only", naive, m_naive)):
        x = np.array([math.nan if v is None else v for v in s])
        print(
            f"| {name} | {spearman(x, r):.3f} | {auc(-x, r <= 30):.3f} | {np.mean(m):.3f} | "
            f"{100 * np.mean(np.array(m) >= 0.25):.0f}% |"
        )


if __name__ == "__main__":
    main()
