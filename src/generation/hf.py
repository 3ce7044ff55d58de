"""Hugging Face backend: batched generation with left padding and the chat template."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import torch

from persona_diff.generation.base import Chat, Generator, SamplingParams, register
from persona_diff.log import progress
from persona_diff.models.loading import LoadedModel, load_model

if TYPE_CHECKING:
    from transformers import GenerationMixin


def render_chat(tokenizer: Any, chat: Chat, add_generation_prompt: bool = True) -> str:
    """The chat as text through the tokenizer's template (plain fallback without one)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=add_generation_prompt)
    text = "".join(f"{m['role']}: {m['content']}\n" for m in chat)
    return text + ("assistant: " if add_generation_prompt else "")


class HFGenerator(Generator):
    name = "hf"

    def __init__(self, model: LoadedModel | str, batch_size: int = 16, show_progress: bool = True, **load_kw: Any):
        self.lm = model if isinstance(model, LoadedModel) else load_model(model, **load_kw)
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.name = f"hf:{self.lm.spec}"

    @property
    def device(self) -> torch.device:
        return next(self.lm.model.parameters()).device

    def _encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        tok = self.lm.tokenizer
        tok.padding_side = "left"
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        return {k: v.to(self.device) for k, v in enc.items()}

    @torch.no_grad()
    def generate(self, chats: list[Chat], params: SamplingParams) -> list[list[str]]:
        tok = self.lm.tokenizer
        texts = [render_chat(tok, c) for c in chats]
        # each chat repeated n times, so one batch holds whole groups where possible
        flat = [(i, t) for i, t in enumerate(texts) for _ in range(params.n)]
        out: list[list[str]] = [[] for _ in chats]
        starts = range(0, len(flat), self.batch_size)
        for bi, s in enumerate(progress(starts, "generate", disable=not self.show_progress or None)):
            chunk = flat[s : s + self.batch_size]
            enc = self._encode([t for _, t in chunk])
            torch.manual_seed(params.seed + bi)
            do_sample = params.temperature > 0
            # every causal LM loaded here generates (nn.Module's __getattr__ types `.generate` as a Tensor)
            gen = cast("GenerationMixin", self.lm.model).generate(
                **enc,
                max_new_tokens=params.max_new_tokens,
                do_sample=do_sample,
                temperature=params.temperature if do_sample else None,
                top_p=params.top_p if do_sample else None,
                top_k=None,
                pad_token_id=tok.pad_token_id,
            )
            new = gen[:, enc["input_ids"].shape[1] :]
            for (i, _), ids in zip(chunk, new, strict=True):
                # one sequence decodes to one str (decode is typed str | list[str] for batches)
                out[i].append(cast(str, tok.decode(ids, skip_special_tokens=True)).strip())
        return out

    @torch.no_grad()
    def next_token_logprobs(self, chats: list[Chat], top_k: int = 20) -> list[dict[str, float]]:
        tok = self.lm.tokenizer
        texts = [render_chat(tok, c) for c in chats]
        res: list[dict[str, float]] = []
        for s in range(0, len(texts), self.batch_size):
            enc = self._encode(texts[s : s + self.batch_size])
            logits = self.lm.model(**enc).logits[:, -1, :].float()
            lp = torch.log_softmax(logits, dim=-1)
            vals, idx = lp.topk(top_k, dim=-1)
            for v_row, i_row in zip(vals, idx, strict=True):
                res.append({cast(str, tok.decode([int(i)])): float(v) for v, i in zip(v_row, i_row, strict=True)})
        return res


@register("hf")
def _make(spec: str, **kw: Any) -> Generator:
    return HFGenerator(spec, **kw)
