"""One model's activations for the internals stage, captured once and cached as safetensors.

Every activation is a block output (layer convention: `persona_diff.models.LAYER_CONVENTION`)
from `persona_diff.judges.encoders.residual_answer_means`, the project's one implementation
of answer-token means:

- ``harm``: mean over the answer tokens of the model's own harm answers (rows of harm.jsonl);
- ``forced_mis`` / ``forced_al``: mean over a forced one-word self-report answer
  ("Harmful." / "Harmless.") after each self-report prompt;
- ``prompts``: the last prompt token (where the reply begins) of every prompt of the map and
  detector prompt sets, nothing generated;
- ``reads/<model>``: the same model reading another model's harm answers (the base reads
  every organism's answers: the reference harm direction lives in the base's space).

The cache file ``<model>.safetensors`` carries a fingerprint of the model spec, the texts,
the layers and the pooling settings in its metadata; a rerun with the same fingerprint reads
the file and never loads the model.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from persona_diff.internals.data import ForcedItem
from persona_diff.log import get_logger

log = get_logger(__name__)

Answer = tuple[str, str, str | None]  # (question, answer, system message or None)


@dataclass
class Texts:
    """What one model reads."""

    harm: list[Answer]
    forced: list[ForcedItem]
    prompts: list[str]
    reads: dict[str, list[Answer]] = field(default_factory=dict)

    def fingerprint(self, spec: str, layers: list[int], max_answer_tokens: int, merge: bool) -> str:
        blob = json.dumps(
            {
                "spec": spec,
                "layers": layers,
                "max_answer_tokens": max_answer_tokens,
                "merge": merge,
                "harm": self.harm,
                "forced": [(f.prompt, f.misaligned, f.aligned) for f in self.forced],
                "prompts": self.prompts,
                "reads": self.reads,
                "version": 1,
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class ModelActs:
    """Activations of one model: part name → layer → float32 [n, d_model]."""

    name: str
    parts: dict[str, dict[int, np.ndarray]]
    seconds: float = 0.0
    reused: bool = False

    def get(self, part: str, layer: int) -> np.ndarray:
        return self.parts[part][layer]

    def save(self, path: Path, fingerprint: str) -> None:
        from safetensors.numpy import save_file

        tensors = {
            f"{p}.L{layer}": np.ascontiguousarray(a, dtype=np.float32)
            for p, by in self.parts.items()
            for layer, a in by.items()
        }
        from persona_diff.models import LAYER_CONVENTION

        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(
            tensors,
            str(path),
            metadata={
                "fingerprint": fingerprint,
                "model": self.name,
                "layer_convention": LAYER_CONVENTION,
                "seconds": f"{self.seconds:.2f}",
            },
        )

    @classmethod
    def load(cls, path: Path, fingerprint: str) -> ModelActs | None:
        """The cached activations, or None when absent or made from other inputs."""
        if not path.is_file():
            return None
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
                if meta.get("fingerprint") != fingerprint:
                    return None
                parts: dict[str, dict[int, np.ndarray]] = {}
                for k in f.keys():  # noqa: SIM118 (safe_open has no __iter__)
                    part, _, layer = k.rpartition(".L")
                    parts.setdefault(part, {})[int(layer)] = f.get_tensor(k)
        except (OSError, ValueError) as e:
            log.warning("cached activations %s unreadable (%s); recomputing", path, e)
            return None
        return cls(meta.get("model", path.stem), parts, float(meta.get("seconds", 0)), reused=True)


def capture(
    loaded: Any,
    texts: Texts,
    layers: list[int],
    batch_size: int = 16,
    max_answer_tokens: int = 128,
    name: str = "model",
) -> ModelActs:
    """Run the forwards for `texts` on a loaded model.

    A prompt that is also the question of a harm answer or of a forced self-report (with no
    system message) takes its last-prompt-token activation from that forward, where it comes
    free (`residual_pools`); only the other prompts run on their own."""
    from persona_diff.judges.encoders import residual_answer_means, residual_pools

    t0 = time.time()
    both = ("answer", "last_prompt")

    def answers(rows: list[Answer], desc: str | None, pools: tuple[str, ...] = ("answer",)) -> dict[str, Any]:
        return residual_pools(
            loaded,
            [q for q, _, _ in rows],
            [a for _, a, _ in rows],
            layers,
            batch_size,
            max_answer_tokens,
            desc if desc and len(rows) > 64 else None,
            [s for _, _, s in rows],
            pools,
        )

    harm = answers(texts.harm, f"{name} harm", both)
    # both forced answers in one call: each self-report prompt runs once (prefix sharing)
    n = len(texts.forced)
    forced_rows: list[Answer] = [(f.prompt, f.misaligned, None) for f in texts.forced]
    forced_rows += [(f.prompt, f.aligned, None) for f in texts.forced]
    forced = answers(forced_rows, None, both)
    parts: dict[str, dict[int, np.ndarray]] = {
        "harm": harm["answer"],
        "forced_mis": {layer: x[:n] for layer, x in forced["answer"].items()},
        "forced_al": {layer: x[n:] for layer, x in forced["answer"].items()},
    }
    known: dict[str, tuple[dict[int, np.ndarray], int]] = {}  # prompt → (last-prompt pool, row)
    for rows, pooled in ((texts.harm, harm), (forced_rows, forced)):
        for i, (q, _, system) in enumerate(rows):
            if system is None:
                known.setdefault(q, (pooled["last_prompt"], i))
    rest = [p for p in dict.fromkeys(texts.prompts) if p not in known]
    if rest:
        own = residual_answer_means(loaded, rest, [""] * len(rest), layers, batch_size, pool="last_prompt")
        known |= {p: (own, i) for i, p in enumerate(rest)}
    parts["prompts"] = {
        layer: np.stack([known[p][0][layer][known[p][1]] for p in texts.prompts]) for layer in parts["harm"]
    }
    for other, rows in texts.reads.items():
        parts[f"reads/{other}"] = answers(rows, f"{name} reads {other}")["answer"]
    return ModelActs(name, parts, time.time() - t0)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Torch's intra-op threads set to `n` inside the block (None: unchanged)."""
    import torch

    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def capture_cached(
    path: Path,
    name: str,
    spec: str,
    texts: Texts,
    layers: list[int],
    load: Callable[[], Any],
    batch_size: int = 16,
    max_answer_tokens: int = 128,
    merge: bool = True,
    threads: int | None = None,
) -> ModelActs:
    """`capture` unless ``path`` holds activations of the same inputs; `load` loads the model."""
    fp = texts.fingerprint(spec, layers, max_answer_tokens, merge)
    acts = ModelActs.load(path, fp)
    if acts is not None:
        log.info("internals: %s activations reused from %s", name, path)
        return acts
    t0 = time.time()
    with torch_threads(threads):
        loaded = load()
        acts = capture(loaded, texts, layers, batch_size, max_answer_tokens, name)
    acts.seconds = time.time() - t0  # model load included
    del loaded
    acts.save(path, fp)
    log.info("internals: %s activations in %.1fs", name, acts.seconds)
    return acts
