"""Activation capture (nnsight) into a sharded on-disk store, and its reader."""

from persona_diff.activations.capture import capture, trace_blocks
from persona_diff.activations.loader import iter_store_batches, prefetch
from persona_diff.activations.store import (
    ActivationStore,
    StoreCorruptError,
    StoreError,
    StoreMismatchError,
    StoreWriteError,
    StoreWriter,
)
from persona_diff.activations.tokens import (
    POSITIONS,
    TokenStream,
    position_mask,
    stream_from_chat,
    streams_from_answers,
    streams_from_file,
    streams_from_prompts,
    streams_from_texts,
)

__all__ = [
    "POSITIONS",
    "ActivationStore",
    "StoreCorruptError",
    "StoreError",
    "StoreMismatchError",
    "StoreWriteError",
    "StoreWriter",
    "TokenStream",
    "capture",
    "iter_store_batches",
    "position_mask",
    "prefetch",
    "stream_from_chat",
    "streams_from_answers",
    "streams_from_file",
    "streams_from_prompts",
    "streams_from_texts",
    "trace_blocks",
]
