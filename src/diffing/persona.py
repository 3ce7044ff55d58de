"""Persona vectors (Chen et al. 2025) from contrastive system prompts, judge-filtered.

Trait files follow the persona-vectors format: ``instruction`` (list of {pos, neg} system
prompts), ``questions`` and ``eval_prompt`` (a judge template with {question} and {answer}).
For each instruction pair and question the model answers under the positive and the negative
system prompt; the judge scores the trait (and coherence). Kept: positive answers with
trait ≥ 50, negative answers with trait < 50, both with coherence ≥ 50.
v_ℓ = mean over kept positive answers of their mean response activation − same for negative.

With a `pair`, the result also reports the fine-tuning shift (mean_ft − mean_base)·v̂ at the
last prompt token of the trait questions.

Not a registered (store-based) diffing method: it samples and judges its own answers, so it
needs a model, a trait file and a judge rather than an activation store. Call
`persona_vector(PersonaInputs(...))`; the `DiffResult` saves and steers like any other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from nnsight import NNsight

from persona_diff.activations.capture import pad_batch, trace_blocks
from persona_diff.activations.tokens import (
    TokenStream,
    position_mask,
    stream_from_chat,
    streams_from_prompts,
)
from persona_diff.diffing.base import DiffResult
from persona_diff.errors import PersonaDiffError
from persona_diff.generation.base import Generator, SamplingParams
from persona_diff.judges.base import Judge, JudgeRequest
from persona_diff.models import CheckpointPair, LoadedModel, blocks_path, resolve_layers


@dataclass
class Trait:
    name: str
    instructions: list[dict[str, str]]
    questions: list[str]
    eval_prompt: str

    @classmethod
    def load(cls, path: str | Path) -> Trait:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
            return cls(path.stem, list(d["instruction"]), list(d["questions"]), str(d["eval_prompt"]))
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise PersonaDiffError(
                f"{path} is not a persona-vectors trait file ({type(e).__name__}: {e}); it needs "
                "'instruction' [{pos, neg}], 'questions' and 'eval_prompt'"
            ) from None


@dataclass
class PersonaInputs:
    model: LoadedModel  # whose activations define the vector (usually the base model)
    trait: Trait | str | Path
    judge: Judge
    generator: Generator | None = None  # default: HF generation from `model`
    layer: int = -1
    n_instructions: int = 2
    n_questions: int = 5
    samples: int = 1
    max_new_tokens: int = 48
    threshold: float = 50.0
    coherence_min: float = 50.0
    pair: CheckpointPair | None = None  # optional: report the fine-tuning shift along v
    seed: int = 0  # sampling seed of the answers (a run passes its own)


@torch.no_grad()
def mean_answer_activation(
    lm: LoadedModel, streams: list[TokenStream], layer: int, positions: str = "answer", batch_size: int = 8
) -> torch.Tensor:
    """[n_streams, d]: per stream, the mean block output over the chosen positions."""
    wrapped, path = NNsight(lm.model), blocks_path(lm.model)
    tok = lm.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    out = []
    for s in range(0, len(streams), batch_size):
        chunk = streams[s : s + batch_size]
        ids, am = pad_batch(chunk, pad)
        dev = next(lm.model.parameters()).device
        (h,) = trace_blocks(wrapped, path, [layer], ids.to(dev), am.to(dev))
        for i, st in enumerate(chunk):
            m = position_mask(st, positions, tok.bos_token_id)
            out.append(h[i, : len(st)][m.to(h.device)].float().mean(0).cpu())
    return torch.stack(out)


def persona_vector(data: PersonaInputs) -> DiffResult:
    """The persona vector of `data.trait` at `data.layer` of `data.model` (module docstring)."""
    trait = data.trait if isinstance(data.trait, Trait) else Trait.load(data.trait)
    lm = data.model
    from persona_diff.models import num_layers

    (layer,) = resolve_layers([data.layer], num_layers(lm.model))
    gen = data.generator
    if gen is None:
        from persona_diff.generation.hf import HFGenerator

        gen = HFGenerator(lm, show_progress=False)
    instr = trait.instructions[: data.n_instructions]
    qs = trait.questions[: data.n_questions]
    cases = [(side, ins[side], q) for ins in instr for q in qs for side in ("pos", "neg")]
    chats = [[{"role": "system", "content": sys}, {"role": "user", "content": q}] for _, sys, q in cases]
    params = SamplingParams(temperature=1.0, max_new_tokens=data.max_new_tokens, n=data.samples, seed=data.seed)
    answers = gen.generate(chats, params)
    flat = [(side, sys, q, a) for (side, sys, q), ans in zip(cases, answers, strict=True) for a in ans]
    trait_s = data.judge.score([JudgeRequest(q, a, metric=trait.name, prompt=trait.eval_prompt) for _, _, q, a in flat])
    coh_s = data.judge.score([JudgeRequest(q, a, metric="coherent") for _, _, q, a in flat])
    keep: dict[str, list[TokenStream]] = {"pos": [], "neg": []}
    for (side, sys, q, a), t, c in zip(flat, trait_s, coh_s, strict=True):
        if t is None or c is None or c < data.coherence_min:
            continue
        if (side == "pos" and t >= data.threshold) or (side == "neg" and t < data.threshold):
            keep[side].append(stream_from_chat(lm.tokenizer, q, a, sys, meta={"trait": t, "side": side}))
    if not keep["pos"] or not keep["neg"]:
        raise PersonaDiffError(
            f"persona vector for {trait.name!r}: the judge kept {len(keep['pos'])} positive and "
            f"{len(keep['neg'])} negative answers; both are needed. Ask more questions/samples or check the judge"
        )
    mp = mean_answer_activation(lm, keep["pos"], layer).mean(0)
    mn = mean_answer_activation(lm, keep["neg"], layer).mean(0)
    v = (mp - mn)[None]
    unit = v[0] / v[0].norm().clamp_min(1e-12)
    stats = {"mean_pos": float(mp @ unit), "mean_neg": float(mn @ unit)}
    info: dict[str, Any] = {
        "trait": trait.name,
        "n_pos": len(keep["pos"]),
        "n_neg": len(keep["neg"]),
        "model": lm.spec,
        "n_answers": len(flat),
    }
    if data.pair is not None:
        prompts = streams_from_prompts(lm.tokenizer, qs)
        hb = mean_answer_activation(data.pair.base, prompts, layer, "last_prompt").mean(0)
        hf = mean_answer_activation(data.pair.finetuned, prompts, layer, "last_prompt").mean(0)
        stats.update(
            {"mean_base": float(hb @ unit), "mean_ft": float(hf @ unit), "finetuning_shift": float((hf - hb) @ unit)}
        )
    return DiffResult("persona", layer, v, v.norm(dim=-1), [-1], [1], [stats], info)
