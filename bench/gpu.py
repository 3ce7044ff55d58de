"""GPU benchmark: SAE/crosscoder training (ours vs SAELens), MFU, capture overhead, generation.

Everything runs in one process, side by side, on models built from real architecture configs
(transformers' `Qwen2Config`, Qwen2.5-0.5B and Qwen2.5-7B shapes) with random bf16 weights:
speed does not depend on the weights, and the script downloads nothing (a GPU machine may have
no network). It prints the Python packages it needs first, then one table.

Rows:
- SAE (1 source) and crosscoder (2 sources) training tokens/s: ours with the dense and the
  sparse decoder, SAELens's `SAETrainer` (BatchTopK) at the same d, width, k, batch, steps,
  learning rate and data (a planted sparse dictionary, drawn on the device). FVU on held-out
  tokens, raw units, each with its own BatchTopK encoding. SAELens has no crosscoder.
- MFU = tokens/s × FLOPs/token ÷ the measured matmul rate (a large square matmul in the same
  dtype). FLOPs/token = 12·S·d·m (encoder and dense decoder, forward + backward); for the
  sparse decoder this is the dense-equivalent count.
- capture tokens/s ÷ plain forward tokens/s (the full model, lm_head included) for the last
  block (no early stop: the same depth as a forward), and for the middle block with early stop.
- generation tokens/s: HF `generate` batched (greedy, no EOS stop); vLLM (`load_format="dummy"`,
  random weights, no tokenizer) where vLLM is importable.

    python bench/gpu.py            # one H100: < 10 min
    python bench/gpu.py --tiny     # tiny shapes, float32, CPU, < 60 s: a smoke test, no perf claim
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata as md
import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

NEEDED = ["torch", "transformers", "safetensors", "numpy", "nnsight", "sae-lens", "accelerate", "einops", "jaxtyping"]
OPTIONAL = ["vllm"]

SHAPES = {
    "qwen2.5-0.5b": dict(
        hidden_size=896,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        intermediate_size=4864,
        vocab_size=151936,
    ),
    "qwen2.5-7b": dict(
        hidden_size=3584,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        intermediate_size=18944,
        vocab_size=152064,
    ),
    "tiny": dict(
        hidden_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        vocab_size=512,
    ),
}


@dataclass
class Plan:
    device: str
    dtype: torch.dtype
    models: list[str]
    sae_d: int
    sae_width: int
    sae_k: int
    sae_batch: int
    sae_steps: int
    pool: int
    mm_n: int
    cap_batch: int
    cap_len: int
    cap_batches: int
    gen_batch: int
    gen_prompt: int
    gen_new: int


def make_plan(tiny: bool) -> Plan:
    if tiny:
        return Plan("cpu", torch.float32, ["tiny"], 64, 256, 8, 256, 40, 2048, 256, 4, 32, 2, 4, 8, 8)
    return Plan(
        "cuda",
        torch.bfloat16,
        ["qwen2.5-0.5b", "qwen2.5-7b"],
        3584,
        16384,
        64,
        16384,
        60,
        131072,
        8192,
        16,
        512,
        6,
        32,
        128,
        128,
    )


def packages() -> None:
    print("Python packages needed (bring them as wheels if the machine has no network):")
    for name in NEEDED + OPTIONAL:
        try:
            v = md.version(name)
        except md.PackageNotFoundError:
            v = "not installed" + (" (optional)" if name in OPTIONAL else "  <-- needed")
        print(f"  {name}: {v}")
    print("  persona-diff: this repository (pip install -e .)")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_rate(p: Plan) -> float:
    """FLOP/s of a large square matmul in the plan's dtype (the hardware limit we divide by)."""
    n = p.mm_n
    a = torch.randn(n, n, device=p.device, dtype=p.dtype)
    b = torch.randn(n, n, device=p.device, dtype=p.dtype)
    return 2 * n**3 / (_ms(lambda: a @ b, p.device, reps=20 if p.device != "cpu" else 5) / 1e3)


def _ms(fn, device: str, reps: int = 10) -> float:
    """Milliseconds per call of `fn`, after one warm-up call."""
    fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / reps * 1e3


# ---- SAE / crosscoder --------------------------------------------------------------------------
def planted(n: int, d: int, n_sources: int, device: str, seed: int = 0) -> torch.Tensor:
    """[n, S, d]: ~24 active features of a 4d-feature dictionary per token, heavy-tailed, offset."""
    g = torch.Generator(device=device).manual_seed(seed)
    n_feat, active = 4 * d, min(24, d)
    feats = torch.randn(n_sources, n_feat, d, generator=g, device=device)
    feats /= feats.norm(dim=-1, keepdim=True)
    idx = torch.randint(0, n_feat, (n, active), generator=g, device=device)
    mag = torch.empty(n, active, device=device).exponential_(1.0, generator=g) * 3
    out = []
    for s in range(n_sources):  # same active features in every source, per-source directions
        x = torch.nn.functional.embedding_bag(idx, feats[s], mode="sum", per_sample_weights=mag)
        out.append(
            x + 2.0 * torch.randn(d, generator=g, device=device) + 0.05 * torch.randn(n, d, generator=g, device=device)
        )
    return torch.stack(out, 1)


def fvu(x: torch.Tensor, r: torch.Tensor) -> float:
    return float((x - r).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


def _epochs(data: torch.Tensor, batch: int):
    def batches(epoch: int):
        g = torch.Generator(device=data.device).manual_seed(epoch)
        perm = torch.randperm(len(data), generator=g, device=data.device)
        return iter(data[perm].split(batch))

    return batches


def run_ours(p: Plan, data: torch.Tensor, held: torch.Tensor, sparse: bool, steps: int) -> tuple[float, float]:
    from persona_diff.diffing.train import CoderTrainConfig, train_coder

    cfg = CoderTrainConfig(
        d_sae=p.sae_width,
        k=p.sae_k,
        steps=steps,
        batch_size=p.sae_batch,
        lr=1e-3,
        sparse_decoder=sparse,
        checkpoint_every=0,
        device=p.device,
        autocast=True,
    )
    coder, scale, stats = train_coder(
        _epochs(data, p.sae_batch), data.shape[-1], data.shape[1], cfg, show_progress=False
    )
    coder.to(p.device)
    with torch.no_grad():
        s = scale.to(p.device)[:, None]
        recon, _, _ = coder(held * s)
        f = fvu(held.flatten(1), (recon / s).flatten(1))
    return stats.tokens_per_s, f


def run_saelens(p: Plan, data: torch.Tensor, held: torch.Tensor, steps: int) -> tuple[float, float]:
    import logging

    from sae_lens import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    logging.getLogger("sae_lens").setLevel(logging.WARNING)
    flat = data[:, 0]

    def provider():
        e = 0
        while True:
            yield from _epochs(flat, p.sae_batch)(e)
            e += 1

    sae = BatchTopKTrainingSAE(
        BatchTopKTrainingSAEConfig(
            d_in=flat.shape[1],
            d_sae=p.sae_width,
            k=p.sae_k,
            normalize_activations="expected_average_only_in",
            device=p.device,
        )
    )
    tcfg = SAETrainerConfig(
        total_training_samples=steps * p.sae_batch,
        train_batch_size_samples=p.sae_batch,
        lr=1e-3,
        lr_end=1e-3,
        n_batches_for_norm_estimate=4,
        device=p.device,
        autocast=p.device != "cpu",
        logger=LoggingConfig(log_to_wandb=False),
    )
    trainer = SAETrainer(tcfg, sae, provider())
    sync(p.device)
    t0 = time.perf_counter()
    trainer.fit()
    sync(p.device)
    secs = time.perf_counter() - t0
    s = trainer.activation_scaler.scaling_factor or 1.0
    with torch.no_grad():
        h = held[:, 0]
        recon = sae.decode(sae.encode(h * s)) / s
    return steps * p.sae_batch / secs, fvu(h, recon)


def step_breakdown_rows(p: Plan, x: torch.Tensor, rows: list) -> None:
    """Where an SAE step's time goes (dense decoder): encoder matmul, BatchTopK selection, whole
    step. Tells whether `topk` over batch × width scores, not the matmuls, limits the MFU."""
    from persona_diff.diffing.coder import BatchTopKCoder

    coder = BatchTopKCoder(x.shape[-1], p.sae_width, p.sae_k, 1).to(p.device)
    opt = torch.optim.Adam(coder.parameters(), lr=1e-4, fused=p.device == "cuda")
    amp = dict(device_type=p.device, dtype=torch.bfloat16, enabled=p.device == "cuda")
    with torch.no_grad(), torch.autocast(**amp):
        pre = coder.pre_acts(x)
        t_enc = _ms(lambda: coder.pre_acts(x), p.device)
        t_sel = _ms(lambda: coder.select(pre), p.device)

    def step() -> None:
        with torch.autocast(**amp):
            recon, _, _ = coder(x)
            loss = (recon.float() - x).pow(2).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t_step = _ms(step, p.device)
    note = f"batch {len(x)}; share of the whole step"
    rows.append(("SAE step (dense decoder) ms", t_step, f"batch {len(x)}, fwd+bwd+Adam"))
    rows.append(("SAE step: encoder forward share", t_enc / t_step, note))
    rows.append(("SAE step: BatchTopK select share", t_sel / t_step, note))


def store_stream_rows(p: Plan, data: torch.Tensor, in_memory_tps: float, rows: list) -> None:
    """The same SAE trained from an on-disk bf16 store through the prefetching loader (pinned
    host memory, a background thread): does the GPU wait on disk? ratio ≈ 1 means no."""
    from persona_diff.activations import ActivationStore, StoreWriter, iter_store_batches
    from persona_diff.diffing.train import CoderTrainConfig, train_coder
    from persona_diff.models import LAYER_CONVENTION

    shard = max(p.sae_batch, 4096)
    with tempfile.TemporaryDirectory() as d:
        header = {
            "models": {"base": "planted", "finetuned": "planted"},
            "model_type": "planted",
            "d_model": p.sae_d,
            "n_layers": 1,
            "layers": [0],
            "convention": LAYER_CONVENTION,
            "dtype": "bfloat16",
            "positions": "all",
            "n_streams": 1,
            "streams_fingerprint": "planted",
        }
        host = data[:, 0].to("cpu", torch.bfloat16)
        with StoreWriter.open(d, header) as w:
            for i in range(0, len(host), shard):
                x = host[i : i + shard]
                w.add_shard(
                    {
                        "base.0": x,
                        "ft.0": x.clone(),
                        "token_id": torch.zeros(len(x), dtype=torch.long),
                        "stream": torch.zeros(len(x), dtype=torch.long),
                        "pos": torch.arange(len(x)),
                    },
                    (0, 0),
                )
            w.finish()
        store = ActivationStore(d)

        def batches(epoch: int):
            for x in iter_store_batches(
                store,
                prefetch_depth=4,
                pin_memory=p.device == "cuda",
                layer=0,
                which="base",
                batch_size=p.sae_batch,
                seed=epoch,
                drop_last=True,
                dtype=torch.bfloat16,
            ):
                yield x[:, None]

        cfg = CoderTrainConfig(
            d_sae=p.sae_width,
            k=p.sae_k,
            steps=p.sae_steps,
            batch_size=p.sae_batch,
            lr=1e-3,
            checkpoint_every=0,
            device=p.device,
        )
        _, _, stats = train_coder(batches, p.sae_d, 1, cfg, show_progress=False)
    rows.append(("SAE ours (dense) from a bf16 store tok/s", stats.tokens_per_s, "prefetch 4, pinned memory"))
    rows.append(
        (
            "SAE from store ÷ from GPU memory tok/s",
            stats.tokens_per_s / in_memory_tps,
            "≈ 1: the GPU never waits on disk",
        )
    )


def sae_rows(p: Plan, rate: float, rows: list) -> None:
    for n_sources, label in ((1, "SAE"), (2, "crosscoder")):
        n_held = max(p.sae_batch, 1024)
        data = planted(p.pool + n_held, p.sae_d, n_sources, p.device)  # one dictionary for both
        data, held = data[: p.pool], data[p.pool :]
        flops = 12 * n_sources * p.sae_d * p.sae_width
        shape = f"d={p.sae_d} m={p.sae_width} k={p.sae_k} batch={p.sae_batch} steps={p.sae_steps}"
        res = {}
        for sparse in (False, True):
            run_ours(p, data, held, sparse, 3)  # warm-up (kernels, allocator)
            res[sparse] = run_ours(p, data, held, sparse, p.sae_steps)
            name = "sparse" if sparse else "dense"
            rows.append((f"{label} ours ({name} decoder) tok/s", res[sparse][0], shape))
            rows.append((f"{label} ours ({name} decoder) FVU", res[sparse][1], "held-out, raw units"))
            rows.append(
                (
                    f"{label} ours ({name} decoder) MFU",
                    res[sparse][0] * flops / rate,
                    f"{flops:.3g} FLOP/token{' (dense-equivalent)' if sparse else ''}",
                )
            )
        if n_sources == 1:
            store_stream_rows(p, data, res[False][0], rows)
            step_breakdown_rows(p, data[: p.sae_batch], rows)
            run_saelens(p, data, held, 3)
            tps, f = run_saelens(p, data, held, p.sae_steps)
            rows.append(("SAE SAELens SAETrainer tok/s", tps, shape))
            rows.append(("SAE SAELens SAETrainer FVU", f, "held-out, raw units"))
            rows.append(("SAE SAELens SAETrainer MFU", tps * flops / rate, f"{flops:.3g} FLOP/token"))
            for sparse, name in ((False, "dense"), (True, "sparse")):
                rows.append((f"SAE ours ({name}) ÷ SAELens tok/s", res[sparse][0] / tps, "target ≥ 2 at equal FVU"))
            # "at equal FVU": SAELens starts from b_dec = 0 and small decoder rows, so give it
            # 4× the steps and see whether it reaches our FVU
            _, f4 = run_saelens(p, data, held, 4 * p.sae_steps)
            rows.append(("SAE SAELens SAETrainer FVU after 4× steps", f4, f"{4 * p.sae_steps} steps"))
        del data, held
        gc.collect()


# ---- models: capture and generation ----------------------------------------------------------
class _Tok:
    """The few tokenizer attributes capture/pair checks read; ids are random anyway."""

    pad_token_id, bos_token_id, eos_token_id, chat_template = 0, None, None, None

    def __init__(self, vocab: int):
        self.vocab = vocab

    def __len__(self) -> int:
        return self.vocab

    def __call__(self, text: str, **kw):
        return {"input_ids": [ord(c) % self.vocab for c in text]}


def build_model(name: str, p: Plan):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(**SHAPES[name], max_position_embeddings=4096, tie_word_embeddings=name == "qwen2.5-0.5b")
    cfg.eos_token_id = None
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(p.dtype)
    try:
        with torch.device(p.device):  # random init directly on the GPU, in bf16
            model = Qwen2ForCausalLM(cfg)
    finally:
        torch.set_default_dtype(old)
    model.eval()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model, cfg


def capture_rows(name: str, model, p: Plan, rows: list) -> None:
    from persona_diff.activations import TokenStream, capture
    from persona_diff.models import CheckpointPair
    from persona_diff.models.loading import LoadedModel

    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    n = p.cap_batch * p.cap_batches
    ids = torch.randint(1, vocab, (n, p.cap_len), generator=g)
    lm = LoadedModel(model=model, tokenizer=_Tok(vocab), spec=f"random:{name}", kind="hf", base_path="random")
    pair = CheckpointPair(lm, lm)
    streams = [TokenStream(r.tolist(), 1) for r in ids]

    def forward_tps() -> float:
        with torch.no_grad():
            model(input_ids=ids[: p.cap_batch].to(p.device))  # warm-up
            sync(p.device)
            t0 = time.perf_counter()
            for b in range(0, n, p.cap_batch):
                x = ids[b : b + p.cap_batch].to(p.device)
                model(input_ids=x, attention_mask=torch.ones_like(x))
            sync(p.device)
        return n * p.cap_len / (time.perf_counter() - t0)

    def capture_tps(layer: int, early: bool) -> float:
        with tempfile.TemporaryDirectory() as d:
            capture(
                pair,
                streams[: p.cap_batch],
                [layer],
                "all",
                Path(d) / "w",
                batch_size=p.cap_batch,
                dtype="bfloat16",
                early_stop=early,
                show_progress=False,
            )  # warm-up
            sync(p.device)
            t0 = time.perf_counter()
            capture(
                pair,
                streams,
                [layer],
                "all",
                Path(d) / "s",
                batch_size=p.cap_batch,
                dtype="bfloat16",
                early_stop=early,
                show_progress=False,
            )
            sync(p.device)
            secs = (time.perf_counter() - t0) / 2  # both models of the pair ran
        return n * (p.cap_len - 1) / secs  # the first token of each stream is not stored

    fwd = forward_tps()
    last = model.config.num_hidden_layers - 1
    mid = model.config.num_hidden_layers // 2
    shape = f"{p.cap_batch}×{p.cap_len} tokens/batch, bf16 store"
    rows.append((f"{name} plain forward tok/s", fwd, shape))
    rows.append((f"{name} capture(last block) ÷ forward tok/s", capture_tps(last, False) / fwd, "target ≥ 0.95"))
    rows.append(
        (f"{name} capture(mid block, early stop) ÷ forward tok/s", capture_tps(mid, True) / fwd, "stops at block")
    )


def hf_generation_row(name: str, model, p: Plan, rows: list) -> None:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, model.config.vocab_size, (p.gen_batch, p.gen_prompt), generator=g).to(p.device)
    kw = dict(max_new_tokens=p.gen_new, min_new_tokens=p.gen_new, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        model.generate(
            ids[:, :8], attention_mask=torch.ones_like(ids[:, :8]), max_new_tokens=2, do_sample=False, pad_token_id=0
        )
        sync(p.device)
        t0 = time.perf_counter()
        out = model.generate(ids, attention_mask=torch.ones_like(ids), **kw)
        sync(p.device)
    new = (out.shape[1] - p.gen_prompt) * p.gen_batch
    rows.append(
        (
            f"{name} HF generate tok/s",
            new / (time.perf_counter() - t0),
            f"batch {p.gen_batch}, prompt {p.gen_prompt}, {p.gen_new} new, greedy",
        )
    )


def vllm_generation_row(name: str, cfg, p: Plan, rows: list) -> None:
    label = f"{name} vLLM generate tok/s"
    try:
        import vllm
    except ImportError:
        rows.append((label, float("nan"), "n/a: vllm not importable"))
        return
    if p.device == "cpu":
        rows.append((label, float("nan"), "n/a: CPU run"))
        return
    try:
        with tempfile.TemporaryDirectory() as d:
            cfg.save_pretrained(d)
            llm = vllm.LLM(
                model=d,
                load_format="dummy",
                skip_tokenizer_init=True,
                dtype="bfloat16",
                gpu_memory_utilization=0.6,
                max_model_len=p.gen_prompt + p.gen_new + 16,
                seed=0,
            )
            g = torch.Generator().manual_seed(1)
            ids = torch.randint(1, cfg.vocab_size, (p.gen_batch, p.gen_prompt), generator=g).tolist()
            prompts = [{"prompt_token_ids": r} for r in ids]
            sp = vllm.SamplingParams(
                max_tokens=p.gen_new, min_tokens=p.gen_new, ignore_eos=True, temperature=0.0, detokenize=False
            )
            llm.generate(prompts[:2], sp, use_tqdm=False)
            t0 = time.perf_counter()
            outs = llm.generate(prompts, sp, use_tqdm=False)
            secs = time.perf_counter() - t0
            new = sum(len(o.outputs[0].token_ids) for o in outs)
            rows.append((label, new / secs, f"batch {p.gen_batch}, prompt {p.gen_prompt}, {p.gen_new} new, greedy"))
            del llm
    except Exception as e:  # a benchmark row, not a crash: say why
        rows.append((label, float("nan"), f"n/a: {type(e).__name__}: {str(e)[:80]}"))


# ---- main --------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny shapes, float32, CPU (smoke test, < 60 s)")
    ap.add_argument("--steps", type=int, default=None, help="SAE training steps (default 60 on GPU)")
    ap.add_argument("--skip", default="", help="comma list of sections to skip: sae,capture,generate,vllm")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (CPU runs)")
    args = ap.parse_args()
    p = make_plan(args.tiny)
    if args.steps:
        p.sae_steps = args.steps
    skip = set(filter(None, args.skip.split(",")))
    torch.set_num_threads(args.threads)
    packages()
    if p.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU visible: run with --tiny for the CPU smoke test")
    dev_name = (
        torch.cuda.get_device_name() if p.device == "cuda" else "CPU (tiny shapes, float32: not a performance claim)"
    )
    t_start = time.perf_counter()
    rows: list[tuple[str, float, str]] = []
    rate = matmul_rate(p)
    rows.append((f"{str(p.dtype).removeprefix('torch.')} matmul rate TFLOP/s", rate / 1e12, f"{p.mm_n}² @ {p.mm_n}²"))
    if "sae" not in skip:
        sae_rows(p, rate, rows)
    for name in p.models:
        if {"capture", "generate"} <= skip:
            break
        model, cfg = build_model(name, p)
        if "capture" not in skip:
            capture_rows(name, model, p, rows)
        if "generate" not in skip:
            hf_generation_row(name, model, p, rows)
        del model
        gc.collect()
        if p.device == "cuda":
            torch.cuda.empty_cache()
        if name == p.models[-1] and "vllm" not in skip:
            vllm_generation_row(name, cfg, p, rows)
    print(f"\ndevice: {dev_name}; torch {torch.__version__}; total {time.perf_counter() - t_start:.0f} s\n")
    print(f"| {'row':52s} | {'value':>10s} | note |")
    print(f"|{'-' * 54}|{'-' * 12}|------|")
    for name, v, note in rows:
        val = "n/a" if math.isnan(v) else (f"{v:10.3f}" if abs(v) < 100 else f"{v:10.0f}")
        print(f"| {name:52s} | {val:>10s} | {note} |")
    print("JSON " + json.dumps({name: (None if math.isnan(v) else v) for name, v, _ in rows}))


if __name__ == "__main__":
    main()
