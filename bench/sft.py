"""SFT throughput: persona-diff's LoRA trainer vs a plain transformers + peft loop.

Same base, same generated rows, same label masks, same LoRA / lr / batch / accumulation;
both count non-padding tokens per second of wall time over the same number of optimizer
steps. The difference is how batches are formed (ours groups similar lengths, the plain loop
pads random batches, as a default DataLoader + collator does) and loss bookkeeping.

    python bench/sft.py --steps 4 --rows 64 --threads 1
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch


def plain_loop(base: str, rows, cfg, steps: int) -> float:
    from peft import LoraConfig, get_peft_model

    from persona_diff.finetune.batching import collate
    from persona_diff.finetune.trainer import encode_rows
    from persona_diff.models import load_model

    lm = load_model(base)
    items = encode_rows(lm.tokenizer, rows, cfg.max_seq_len)
    lc = cfg.lora
    model = get_peft_model(
        lm.model,
        LoraConfig(
            r=lc.r,
            lora_alpha=lc.alpha,
            use_rslora=lc.use_rslora,
            target_modules=list(lc.target_modules),
            task_type="CAUSAL_LM",
        ),
    )
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    g = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(items), generator=g).tolist()
    pad = lm.tokenizer.pad_token_id
    t0, tokens, k = time.perf_counter(), 0, 0
    for _ in range(steps):
        for _ in range(cfg.grad_accum):
            idx = [order[(k + j) % len(order)] for j in range(cfg.batch_size)]
            k += cfg.batch_size
            b = collate([items[i] for i in idx], pad)
            out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"])
            (out.loss / cfg.grad_accum).backward()
            tokens += int(b["attention_mask"].sum())
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return tokens / (time.perf_counter() - t0)


def ours(base: str, rows, cfg, steps: int) -> float:
    from persona_diff.finetune import LoraSFTTrainer

    cfg.max_steps = steps
    with tempfile.TemporaryDirectory() as d:
        tr = LoraSFTTrainer(base, rows, cfg, d)
        tr.train()
        return tr.tokens_per_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--base", default="smollm2-135m")
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--grad-accum", type=int, default=2)
    ap.add_argument("--max-seq-len", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from persona_diff.data import generate_insecure_dataset
    from persona_diff.finetune import SFTConfig

    rows = generate_insecure_dataset(args.rows, seed=0)

    def cfg() -> SFTConfig:
        return SFTConfig(
            lr=1e-4,
            batch_size=args.batch_size,
            grad_accum=args.grad_accum,
            max_seq_len=args.max_seq_len,
            warmup_steps=0,
            save_every=0,
            seed=0,
        )

    res = {}
    res["plain_tok_s"] = plain_loop(args.base, rows, cfg(), args.steps)
    res["ours_tok_s"] = ours(args.base, rows, cfg(), args.steps)
    res["ratio"] = res["ours_tok_s"] / res["plain_tok_s"]
    dev = "cuda" if torch.cuda.is_available() else f"cpu x{torch.get_num_threads()} threads"
    res.update(
        device=dev,
        rows=args.rows,
        steps=args.steps,
        batch=args.batch_size,
        accum=args.grad_accum,
        max_seq_len=args.max_seq_len,
        base=args.base,
    )
    print(json.dumps(res, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
