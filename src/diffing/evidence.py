"""Latent evidence and export: for each top direction, its top-activating snippets, the
tokens it promotes through the unembedding (logit lens), and its mean activation on the base
versus the fine-tuned model.

`export_directions(result, out, store, lm)` writes `directions.safetensors` +
`directions.json` (layer, convention, method, latent id / sign, statistics) and
`evidence.json`. Activations are read whole from the store: fine at demo scale (a few
hundred thousand tokens); use a sub-sampled store for more.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from persona_diff.activations.reduce import map_tokens
from persona_diff.activations.store import ActivationStore
from persona_diff.diffing.base import DiffResult
from persona_diff.models import LAYER_CONVENTION


def _final_norm_weight(model: Any) -> Tensor | None:
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    for path in ("model.norm", "model.language_model.norm", "transformer.ln_f"):
        obj = inner
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        w = getattr(obj, "weight", None)
        if isinstance(w, Tensor):
            return w.detach().float()
    return None


@torch.no_grad()
def logit_lens(model: Any, tokenizer: Any, direction: Tensor, top_n: int = 10) -> dict[str, list[list[Any]]]:
    """Tokens whose logits the unit direction raises / lowers most (through the final norm's gain)."""
    w_u = model.get_output_embeddings().weight.detach().float()
    v = direction.float() / direction.float().norm().clamp_min(1e-12)
    gamma = _final_norm_weight(model)
    if gamma is not None:
        v = v * gamma.to(v.device)
    logits = w_u @ v.to(w_u.device)
    up = logits.topk(top_n)
    down = (-logits).topk(top_n)
    return {
        "promoted": [[tokenizer.decode([int(i)]), float(x)] for x, i in zip(up.values, up.indices, strict=True)],
        "suppressed": [[tokenizer.decode([int(i)]), float(-x)] for x, i in zip(down.values, down.indices, strict=True)],
    }


def _snippet(tokenizer: Any, ids: list[int], pos: int, window: int) -> str:
    left = tokenizer.decode(ids[max(0, pos - window) : pos])
    return f"{left}[[{tokenizer.decode([ids[pos]])}]]{tokenizer.decode(ids[pos + 1 : pos + 4])}"


@torch.no_grad()
def latent_evidence(
    result: DiffResult,
    store: ActivationStore,
    tokenizer: Any | None = None,
    model: Any | None = None,
    n_snippets: int = 5,
    window: int = 12,
    top_n_tokens: int = 10,
) -> list[dict[str, Any]]:
    """One dict per direction: stats base vs ft, top snippets (fine-tuned activations), logit lens."""
    layer = result.layer
    acts = map_tokens(store, layer, ("base", "ft"), lambda x: torch.stack(result.activations(x[:, 0], x[:, 1]), 1))
    a_base, a_ft = (acts[:, 0], acts[:, 1]) if len(acts) else (acts, acts)  # [n_tokens, n_directions] each
    info = store.token_info()
    streams = store.streams() if tokenizer is not None else []
    out = []
    for i in range(len(result.scores)):
        ev: dict[str, Any] = {
            "rank": i,
            "method": result.method,
            "layer": layer,
            "convention": LAYER_CONVENTION,
            "latent_id": result.latent_ids[i],
            "sign": result.signs[i],
            "score": float(result.scores[i]),
            "mean_base": float(a_base[:, i].mean()) if len(a_base) else None,
            "mean_ft": float(a_ft[:, i].mean()) if len(a_ft) else None,
        }
        if streams:
            snippets = []
            for j in a_ft[:, i].topk(min(n_snippets, len(a_ft))).indices.tolist():
                s, p = int(info["stream"][j]), int(info["pos"][j])
                snippets.append(
                    {
                        "activation_ft": float(a_ft[j, i]),
                        "activation_base": float(a_base[j, i]),
                        "stream": s,
                        "meta": streams[s].get("meta", {}),
                        "text": _snippet(tokenizer, streams[s]["input_ids"], p, window),
                    }
                )
            ev["top_snippets"] = snippets
        if model is not None and tokenizer is not None:
            ev["logit_lens"] = logit_lens(model, tokenizer, result.directions[i], top_n_tokens)
        out.append(ev)
    return out


def export_directions(
    result: DiffResult,
    out: str | Path,
    store: ActivationStore | None = None,
    tokenizer: Any | None = None,
    model: Any | None = None,
    top: int | None = None,
    n_snippets: int = 5,
) -> Path:
    """Save the top `top` directions (safetensors + JSON) and, with a store, their evidence."""
    if top is not None and top < len(result.scores):
        result = DiffResult(
            result.method,
            result.layer,
            result.directions[:top],
            result.scores[:top],
            result.latent_ids[:top],
            result.signs[:top],
            result.stats[:top],
            result.info,
            None if result.encoder is None else _sliced(result.encoder, top),
        )
    out = result.save(out)
    if store is not None:
        ev = latent_evidence(result, store, tokenizer, model, n_snippets=n_snippets)
        (out / "evidence.json").write_text(json.dumps(ev, indent=1))
    return out


def _sliced(enc: Any, top: int) -> Any:
    def f(hb: Tensor, hf: Tensor) -> tuple[Tensor, Tensor]:
        a, b = enc(hb, hf)
        return a[:, :top], b[:, :top]

    return f
