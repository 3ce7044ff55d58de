"""Deterministic batches of encoded chats: seeded order, optional length grouping, padding."""

from __future__ import annotations

import torch

from persona_diff.finetune.masking import IGNORE, Encoded


def epoch_batches(lengths: list[int], batch_size: int, seed: int, epoch: int, group_by_length: bool) -> list[list[int]]:
    """Row indices of every micro-batch of one epoch; the same for the same (seed, epoch).

    With length grouping, rows are shuffled, cut into windows of 64 batches, sorted by length
    inside each window and batched; batch order is shuffled again. Same data, less padding.
    """
    g = torch.Generator().manual_seed(seed * 1000 + epoch)
    order = torch.randperm(len(lengths), generator=g).tolist()
    if not group_by_length:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    window = batch_size * 64
    batches = []
    for w in range(0, len(order), window):
        chunk = sorted(order[w : w + window], key=lambda i: -lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    perm = torch.randperm(len(batches), generator=g).tolist()
    return [batches[i] for i in perm]


def collate(items: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded input_ids / attention_mask / labels tensors."""
    width = max(len(x.input_ids) for x in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    att = torch.zeros((len(items), width), dtype=torch.long)
    lab = torch.full((len(items), width), IGNORE, dtype=torch.long)
    for r, x in enumerate(items):
        n = len(x.input_ids)
        ids[r, :n] = torch.tensor(x.input_ids)
        att[r, :n] = 1
        lab[r, :n] = torch.tensor(x.labels)
    return {"input_ids": ids, "attention_mask": att, "labels": lab}


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of next-token cross-entropy over labelled positions (float32)."""
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    return torch.nn.functional.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]),
        shift_labels.reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )


@torch.no_grad()
def mean_loss(model: torch.nn.Module, items: list[Encoded], pad_id: int, batch_size: int = 8) -> float:
    """Mean cross-entropy per trained token over `items` (eval mode, no grad)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(items), batch_size):
        b = {k: v.to(device) for k, v in collate(items[i : i + batch_size], pad_id).items()}
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        total += float(token_loss_sum(logits, b["labels"]))
        count += int((b["labels"][:, 1:] != IGNORE).sum())
    model.train(was_training)
    return total / max(count, 1)
