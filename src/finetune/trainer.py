"""LoRA SFT on chat rows: loss on assistant tokens, checkpoints, resume after a kill.

The loop runs through `accelerate.Accelerator`, so the same code runs on one CPU, one GPU,
or several GPUs under ``accelerate launch --config_file configs/accelerate/fsdp.yaml ...``
(see configs/accelerate/README.md). Loss of one optimizer step = summed token cross-entropy
of its micro-batches ÷ the number of trained tokens in them (exact gradient accumulation).

With N processes each takes every N-th micro-batch; the trained-token count of a step is
summed over all ranks and every rank's loss is scaled by N, so the gradient all-reduce (a
mean) gives exactly the one-process gradient of the same micro-batches. Only the main process
writes checkpoints, the adapter and metrics; every rank reads a checkpoint to resume.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from persona_diff.config.base import config_hash, to_dict
from persona_diff.data.errors import DataError
from persona_diff.data.normalise import normalise_row
from persona_diff.finetune.batching import collate, epoch_batches, token_loss_sum
from persona_diff.finetune.checkpoint import (
    base_fingerprint,
    latest_checkpoint,
    load_adapter_weights,
    load_optimizer_tensors,
    optimizer_tensors,
    prune,
    read_state,
    save_checkpoint,
    set_adapter_base,
)
from persona_diff.finetune.config import SFTConfig
from persona_diff.finetune.errors import FinetuneError, ResumeMismatchError
from persona_diff.finetune.masking import Encoded, encode_chat
from persona_diff.log import get_logger, progress
from persona_diff.models.embedded import ALIASES
from persona_diff.models.loading import load_model

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel

log = get_logger(__name__)

StepCallback = Callable[[int, float], None]


def base_spec_for_config(spec: str) -> str:
    """The base as the project records it (trainer_state.json, pairs files): the alias, an
    absolute path, or a hub id. adapter_config.json gets `checkpoint.portable_base` instead."""
    if spec in ALIASES:
        return spec
    p = Path(spec).expanduser()
    return str(p.resolve()) if p.exists() else spec


def encode_rows(tokenizer: Any, rows: list[dict[str, Any]], max_len: int) -> list[Encoded]:
    out, dropped = [], 0
    for i, row in enumerate(rows, 1):
        msgs = normalise_row(row, where=f"training row {i}")["messages"]
        enc = encode_chat(tokenizer, msgs, max_len)
        if enc.n_trained == 0:
            dropped += 1
            continue
        out.append(enc)
    if dropped:
        log.warning("%d rows lost all assistant tokens to max_seq_len=%d and were skipped", dropped, max_len)
    if not out:
        raise DataError(f"no trainable rows (all {len(rows)} were empty after truncation); raise max_seq_len")
    return out


def _no_accelerator_device() -> bool:
    acc = getattr(torch, "accelerator", None)  # torch >= 2.6
    if acc is not None:
        return not acc.is_available()
    return not (torch.cuda.is_available() or torch.backends.mps.is_available())


def _check_launch(acc: Any) -> None:
    """Refuse a launch whose processes would each train alone (and overwrite one adapter)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world > 1 and acc.num_processes != world:
        raise FinetuneError(
            f"launched as {world} processes but accelerate set up {acc.num_processes} "
            f"({acc.distributed_type}); each would train alone and overwrite the same adapter. "
            "Check the accelerate config (distributed_type, num_processes) for this machine"
        )
    if (
        os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true"
        and acc.distributed_type != "FSDP"
        and acc.is_main_process
    ):
        log.warning(
            "FSDP was asked for, but accelerate runs %s here (accelerate enables FSDP only on GPU-like "
            "devices): every process holds the whole model (plain data parallel)",
            acc.distributed_type,
        )


def _lr_lambda(cfg: SFTConfig, total: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / (cfg.warmup_steps + 1)
        if cfg.scheduler == "constant":
            return 1.0
        frac = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
        if cfg.scheduler == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
        return max(0.0, 1.0 - frac)

    return f


class LoraSFTTrainer:
    """Build once, then `train()`; `model` is the in-memory PeftModel afterwards."""

    def __init__(
        self,
        base_spec: str,
        rows: list[dict[str, Any]],
        cfg: SFTConfig,
        out_dir: str | Path,
        callback: StepCallback | None = None,
    ):
        from accelerate import Accelerator

        if cfg.scheduler not in ("linear", "constant", "cosine"):
            raise FinetuneError(f"scheduler {cfg.scheduler!r} unknown; use linear, constant or cosine")
        self.cfg, self.out, self.callback = cfg, Path(out_dir), callback
        self.base_spec = base_spec_for_config(str(base_spec))
        # cpu=True without a GPU/MPS device (the same device either way) so that a multi-process
        # launch on a CPU machine runs as MULTI_CPU (gloo) instead of N unrelated processes.
        self.acc = Accelerator(cpu=_no_accelerator_device())
        _check_launch(self.acc)
        if self.acc.distributed_type == "DEEPSPEED" and cfg.grad_accum > 1:
            # accelerate's DeepSpeed backward() runs engine.step() on every call outside
            # `accelerator.accumulate`, which would step the optimizer once per micro-batch here
            raise FinetuneError("with DeepSpeed use --set grad_accum=1 (more processes or batch_size instead)")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        lm = load_model(base_spec, dtype=cfg.dtype, device=str(self.acc.device))
        self.tokenizer = lm.tokenizer
        self.pad_id = (
            self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        )
        self.items = encode_rows(self.tokenizer, rows, cfg.max_seq_len)
        self.fingerprint = base_fingerprint(lm.model)
        self.model = self._wrap(lm.model)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        n_micro = math.ceil(len(self.items) / cfg.batch_size / self.acc.num_processes)
        self.steps_per_epoch = math.ceil(n_micro / cfg.grad_accum)
        self.total_steps = self.steps_per_epoch * cfg.epochs
        if cfg.max_steps:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, _lr_lambda(cfg, self.total_steps))
        self.model, self.opt = self.acc.prepare(self.model, self.opt)
        # after prepare: FSDP2 replaces the parameters by sharded ones (the names stay)
        unwrapped = self.acc.unwrap_model(self.model)
        self.param_names = {id(p): n for n, p in unwrapped.named_parameters() if p.requires_grad}
        if self.acc.num_processes > 1 and self.acc.is_main_process:
            log.info(
                "%d processes (%s): effective batch %d × %d × %d",
                self.acc.num_processes,
                self.acc.distributed_type,
                cfg.batch_size,
                cfg.grad_accum,
                self.acc.num_processes,
            )

    def _wrap(self, model: PreTrainedModel | PeftModel) -> torch.nn.Module:
        from peft import LoraConfig, PeftModel, get_peft_model

        if self.cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable()
            model.enable_input_require_grads()
        if self.cfg.init_adapter:
            log.info("continuing adapter %s (its LoRA shape wins over cfg.lora)", self.cfg.init_adapter)
            return PeftModel.from_pretrained(model, self.cfg.init_adapter, is_trainable=True)
        lc = self.cfg.lora
        peft_cfg = LoraConfig(
            r=lc.r,
            lora_alpha=lc.alpha,
            lora_dropout=lc.dropout,
            use_rslora=lc.use_rslora,
            target_modules=list(lc.target_modules),
            layers_to_transform=lc.layers,
            bias=lc.bias,
            task_type="CAUSAL_LM",
        )
        try:
            return get_peft_model(model, peft_cfg)
        except ValueError as e:
            raise FinetuneError(f"cannot attach LoRA ({e}); check lora.target_modules / lora.layers") from None

    # ---- checkpoints -------------------------------------------------------------------
    def _critical(self) -> dict[str, Any]:
        return {
            "base": self.base_spec,
            "fingerprint": self.fingerprint,
            "lora": to_dict(self.cfg.lora),
            "init_adapter": self.cfg.init_adapter,
        }

    def _state(self, step: int, history: list[float], done: bool) -> dict[str, Any]:
        return {
            **self._critical(),
            "step": step,
            "total_steps": self.total_steps,
            "steps_per_epoch": self.steps_per_epoch,
            "n_rows": len(self.items),
            "done": done,
            "config": to_dict(self.cfg),
            "config_hash": config_hash(self.cfg),
            "loss_history": history,
        }

    def _save_adapter(self, folder: Path, state_dict: dict[str, torch.Tensor]) -> None:
        unwrapped = self.acc.unwrap_model(self.model)
        unwrapped.save_pretrained(str(folder), state_dict=state_dict, safe_serialization=True)
        set_adapter_base(folder, self.base_spec)

    def _save(self, folder: Path, step: int, history: list[float], done: bool, with_opt: bool) -> None:
        # every rank: gathering sharded weights / optimizer state is a collective under FSDP / DeepSpeed
        state_dict = self.acc.get_state_dict(self.model)
        opt_t = optimizer_tensors(self.opt, self.param_names) if with_opt else None
        if self.acc.is_main_process:
            save_checkpoint(
                folder, lambda d: self._save_adapter(d, state_dict), self._state(step, history, done), opt_t
            )
            if not done:
                prune(folder.parent, self.cfg.keep_checkpoints)
        self.acc.wait_for_everyone()  # no rank reads or prunes a checkpoint before it is complete

    def _resume(self) -> tuple[int, list[float]]:
        ckpt = latest_checkpoint(self.out / "checkpoints")
        if ckpt is None:
            return 0, []
        state, opt_t = read_state(ckpt)
        for key in ("base", "fingerprint"):
            if state.get(key) != self._critical()[key]:
                raise ResumeMismatchError(
                    f"{ckpt} was trained on base {state.get('base')!r} (fingerprint {state.get('fingerprint')}), "
                    f"not on {self.base_spec!r} ({self.fingerprint}); pass the same --base to resume, or "
                    "choose a new --out folder to start over"
                )
        if state.get("lora") != self._critical()["lora"]:
            raise ResumeMismatchError(
                f"{ckpt} has LoRA settings {state.get('lora')} but the config asks for {to_dict(self.cfg.lora)}; "
                "use the same lora.* settings to resume, or a new --out folder"
            )
        from safetensors.torch import load_file

        load_adapter_weights(self.acc.unwrap_model(self.model), load_file(str(ckpt / "adapter_model.safetensors")))
        load_optimizer_tensors(self.opt, self.param_names, opt_t)
        step = int(state["step"])
        self.sched.last_epoch = step
        for g, base_lr in zip(self.opt.param_groups, self.sched.base_lrs, strict=True):
            g["lr"] = base_lr * self.sched.lr_lambdas[0](step)
        log.info("resuming from %s (step %d of %d)", ckpt.name, step, self.total_steps)
        return step, list(state.get("loss_history", []))

    # ---- training ----------------------------------------------------------------------
    def _micro_batches(self, epoch: int) -> list[list[int]]:
        lengths = [len(x.input_ids) for x in self.items]
        batches = epoch_batches(lengths, self.cfg.batch_size, self.cfg.seed, epoch, self.cfg.group_by_length)
        return batches[self.acc.process_index :: self.acc.num_processes]

    def _sum_over_ranks(self, *values: float) -> list[float]:
        if self.acc.num_processes == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.acc.device)
        return self.acc.reduce(t, reduction="sum").tolist()

    def train(self) -> Path:
        final = self.out / "adapter"
        if (final / "trainer_state.json").is_file() and json.loads((final / "trainer_state.json").read_text()).get(
            "done"
        ):
            log.info("%s is already trained; delete it to train again", final)
            return final
        self.out.mkdir(parents=True, exist_ok=True)
        step, history = self._resume()
        main = self.acc.is_main_process
        metrics = (self.out / "metrics.jsonl").open("a") if main else None
        self.model.train()
        device = self.acc.device
        t0, tokens = time.perf_counter(), 0.0
        bar = progress(
            range(step, self.total_steps), "sft", total=self.total_steps - step, disable=None if main else True
        )
        bar_iter = iter(bar)
        while step < self.total_steps:
            epoch, in_epoch = divmod(step, self.steps_per_epoch)
            micro = self._micro_batches(epoch)
            group = micro[in_epoch * self.cfg.grad_accum : (in_epoch + 1) * self.cfg.grad_accum]
            batches = [collate([self.items[i] for i in idx], self.pad_id) for idx in group]
            weight = 1.0
            if not batches:  # uneven split: this rank has no micro-batch left, but must join the all-reduce
                batches, weight = [collate([self.items[0]], self.pad_id)], 0.0
            local_tok = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches) * int(weight)
            (n_tok,) = self._sum_over_ranks(local_tok)
            scale = weight * self.acc.num_processes / max(n_tok, 1)  # the all-reduce averages over ranks
            loss_sum, step_tokens = 0.0, 0
            for j, b in enumerate(batches):
                b = {k: v.to(device) for k, v in b.items()}
                ctx = self.acc.no_sync(self.model) if j < len(batches) - 1 else _nullcontext()
                with ctx:
                    logits = self.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
                    summed = token_loss_sum(logits, b["labels"])
                    self.acc.backward(summed * scale)
                loss_sum += weight * float(summed.detach())
                step_tokens += int(weight) * int(b["attention_mask"].sum())
            loss_sum, n_step_tokens = self._sum_over_ranks(loss_sum, step_tokens)
            step_loss = loss_sum / max(n_tok, 1)
            tokens += n_step_tokens
            if self.cfg.max_grad_norm:
                self.acc.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
            self.opt.step()
            self.sched.step()
            self.opt.zero_grad(set_to_none=True)
            step += 1
            next(bar_iter, None)
            history.append(step_loss)
            tps = tokens / max(time.perf_counter() - t0, 1e-9)
            if metrics is not None and step % self.cfg.log_every == 0:
                metrics.write(
                    json.dumps(
                        {"step": step, "loss": step_loss, "lr": self.sched.get_last_lr()[0], "tokens_per_s": tps}
                    )
                    + "\n"
                )
                metrics.flush()
            if self.cfg.save_every and step % self.cfg.save_every == 0 and step < self.total_steps:
                self._save(self.out / "checkpoints" / f"checkpoint-{step:06d}", step, history, False, True)
            if self.callback is not None:
                self.callback(step, step_loss)
        if metrics is not None:
            metrics.close()
        self.tokens_per_s = tokens / max(time.perf_counter() - t0, 1e-9)
        self._save(final, step, history, True, False)
        log.info("adapter written to %s (%d steps, %.0f tokens/s)", final, step, self.tokens_per_s)
        return final


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: Any) -> None:
        return None


def train_lora(
    base_spec: str,
    rows: list[dict[str, Any]],
    cfg: SFTConfig,
    out_dir: str | Path,
    callback: StepCallback | None = None,
) -> Path:
    """Fine-tune a LoRA adapter on chat rows; returns the adapter folder ``out_dir/adapter``.

    Resumes from the newest ``out_dir/checkpoints/checkpoint-*`` when one exists (same base
    and LoRA settings required); returns at once when the final adapter is already there.
    """
    return LoraSFTTrainer(base_spec, rows, cfg, out_dir, callback).train()
