"""Token-wise maps and reductions over a store, one chunk at a time.

At research scale a layer does not fit in memory (2M tokens × d=3584 in float32 is 29 GB per
model, and SAE codes of them are [n, 16k]), so everything that reads every token — projections,
SAE encodings, their means and firing rates — goes through `chunks`, which reads the store in
order (aligned with `ActivationStore.token_info()`), one shard buffer at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from persona_diff.activations.store import ActivationStore

CHUNK = 16384


def chunks(store: ActivationStore, layer: int, which: str | tuple[str, ...], chunk: int = CHUNK) -> Iterator[Tensor]:
    """[b, d] (or [b, len(which), d]) tensors of every token, in store order."""
    return store.iter_batches(layer, which, batch_size=chunk, shuffle=False, buffer_shards=1)


def map_tokens(
    store: ActivationStore, layer: int, which: str | tuple[str, ...], fn: Callable[[Tensor], Tensor], chunk: int = CHUNK
) -> Tensor:
    """torch.cat of fn(chunk) over every token: for small per-token outputs ([n, k] projections)."""
    with torch.no_grad():
        parts = [fn(x) for x in chunks(store, layer, which, chunk)]
    return torch.cat(parts) if parts else torch.zeros(0)


class ColumnStats:
    """Streaming mean and firing rate (> 0) per column, in float64."""

    def __init__(self) -> None:
        self.n = 0
        self.total: Tensor | None = None
        self.positive: Tensor | None = None

    def add(self, x: Tensor) -> None:
        s, p = x.double().sum(0), (x > 0).sum(0).double()
        self.total = s if self.total is None else self.total + s
        self.positive = p if self.positive is None else self.positive + p
        self.n += len(x)

    @property
    def mean(self) -> Tensor:
        return self.total / max(self.n, 1) if self.total is not None else torch.zeros(0)

    @property
    def freq(self) -> Tensor:
        return self.positive / max(self.n, 1) if self.positive is not None else torch.zeros(0)


def column_stats(
    store: ActivationStore, layer: int, which: str | tuple[str, ...], fn: Callable[[Tensor], Tensor], chunk: int = CHUNK
) -> ColumnStats:
    """Mean and firing rate of every column of fn(tokens), without holding fn's output."""
    st = ColumnStats()
    with torch.no_grad():
        for x in chunks(store, layer, which, chunk):
            st.add(fn(x))
    return st
