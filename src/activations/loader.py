"""Feeding a GPU from an `ActivationStore`: pinned host memory and a background prefetch thread.

`prefetch(it, depth=2, pin_memory=True)` runs any batch iterator in a daemon thread that stays
`depth` batches ahead (shard reads, sha256 checks, shuffling and the copy into page-locked
memory all happen there), so the training loop's `x.to("cuda", non_blocking=True)` does not
wait on disk. Batches come out in exactly the order the iterator makes them; an exception in
the thread is re-raised in the consumer. `iter_store_batches` is `ActivationStore.iter_batches`
with these two options.

Pinning needs a CUDA build with a visible GPU; elsewhere `pin_memory=True` is a no-op (logged
once), so the same code runs on CPU.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import torch

from persona_diff.activations.store import ActivationStore
from persona_diff.log import get_logger

log = get_logger(__name__)

_END = object()


class _Raised:
    def __init__(self, exc: BaseException):
        self.exc = exc


def can_pin() -> bool:
    return torch.cuda.is_available()


def prefetch(it: Iterator[torch.Tensor], depth: int = 2, pin_memory: bool = False) -> Iterator[torch.Tensor]:
    """Yield the items of `it`, produced `depth` ahead in a background thread."""
    pin = pin_memory and can_pin()
    if pin_memory and not pin:
        log.info("pin_memory asked for but no CUDA device is visible; batches stay in pageable memory")
    if depth <= 0:
        for x in it:
            yield x.pin_memory() if pin else x
        return
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for x in it:
                if not put(x.pin_memory() if pin else x):
                    return
            put(_END)
        except BaseException as e:  # handed to the consumer, which re-raises it
            put(_Raised(e))

    t = threading.Thread(target=work, name="activation-prefetch", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item
    finally:  # consumer stopped early (break / exception / garbage collection): end the thread
        stop.set()
        t.join(timeout=5)


def iter_store_batches(
    store: ActivationStore,
    *,
    prefetch_depth: int = 2,
    pin_memory: bool = False,
    **kw: Any,
) -> Iterator[torch.Tensor]:
    """`store.iter_batches(**kw)` through `prefetch` (same batches, same order)."""
    return prefetch(store.iter_batches(**kw), depth=prefetch_depth, pin_memory=pin_memory)
