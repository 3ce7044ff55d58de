"""Cost of steering hooks during generation on SmolLM2-135M, side by side in one run.

    python bench/steering_overhead.py [--tokens 32] [--batch 4] [--repeats 3]

Measures greedy generation time (KV cache on) with no hooks, with `steer` adding α·v at one
layer (all positions), at one layer on answer positions only, ablating one direction at 3
layers, and with an α = 0 hook; reports each as a ratio to the unhooked time (median of
repeats, interleaved so machine load hits every variant alike).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from persona_diff.models import load_model
from persona_diff.steering import steer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=32, help="new tokens per answer")
    ap.add_argument("--batch", type=int, default=4, help="prompts per batch")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per variant")
    args = ap.parse_args()
    torch.set_num_threads(2)
    lm = load_model("smollm2-135m")
    tok = lm.tokenizer
    chats = [
        [{"role": "user", "content": f"Tell me something interesting about topic number {i}."}]
        for i in range(args.batch)
    ]
    texts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    v = torch.randn(lm.model.config.hidden_size)
    variants = {
        "none": None,
        "add L14 all": dict(direction=v, layers=14, alpha=4.0),
        "add L14 answer": dict(direction=v, layers=14, alpha=4.0, positions="answer"),
        "ablate L8,14,20": dict(direction=v, layers=[8, 14, 20], mode="ablate"),
        "add alpha=0": dict(direction=v, layers=14, alpha=0.0),
    }

    def run(kw):
        t = time.perf_counter()
        with torch.no_grad():
            if kw is None:
                lm.model.generate(
                    **enc,
                    max_new_tokens=args.tokens,
                    min_new_tokens=args.tokens,
                    do_sample=False,
                    pad_token_id=tok.pad_token_id,
                )
            else:
                with steer(lm.model, **kw):
                    lm.model.generate(
                        **enc,
                        max_new_tokens=args.tokens,
                        min_new_tokens=args.tokens,
                        do_sample=False,
                        pad_token_id=tok.pad_token_id,
                    )
        return time.perf_counter() - t

    run(None)  # warm-up
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.repeats):
        for name, kw in variants.items():
            times[name].append(run(kw))
    base = statistics.median(times["none"])
    print(f"| variant | median s ({args.batch}×{args.tokens} tokens) | ratio to no hooks |")
    print("|---|---|---|")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"| {name} | {m:.2f} | {m / base:.3f} |")


if __name__ == "__main__":
    main()
