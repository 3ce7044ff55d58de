"""Activations at one or more blocks for (prompt, answer) pairs, via forward hooks.

For each pair the prompt (a chat rendered with the tokenizer's template and the generation
prompt, or plain text) and the answer are tokenized *separately* and concatenated, so the
prompt/answer boundary is exact. Returns, per layer, the block output (layer convention of
`persona_diff.models.layers`) at the last prompt token and averaged over the answer tokens.
Batches are right-padded; padding never enters the averages.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from persona_diff.generation.base import Chat
from persona_diff.generation.hf import render_chat
from persona_diff.models.layers import LAYER_CONVENTION, block_output, get_blocks, resolve_layers
from persona_diff.models.loading import LoadedModel


@dataclass
class PromptAnswerActivations:
    layers: list[int]
    last_prompt: dict[int, torch.Tensor]  # layer -> [n, d_model] float32
    mean_answer: dict[int, torch.Tensor]  # layer -> [n, d_model]; NaN rows where the answer is empty
    n_answer_tokens: list[int]
    convention: str = LAYER_CONVENTION


def _prompt_ids(lm: LoadedModel, prompt: str | Chat) -> list[int]:
    text = prompt if isinstance(prompt, str) else render_chat(lm.tokenizer, prompt)
    return lm.tokenizer(text, add_special_tokens=False)["input_ids"]


@torch.no_grad()
def prompt_answer_activations(
    lm: LoadedModel,
    prompts: list[str | Chat],
    answers: list[str],
    layers: int | list[int],
    batch_size: int = 8,
) -> PromptAnswerActivations:
    """Last-prompt-token and mean answer-token activations at `layers` for each pair.

    A prompt given as a string is one user message (rendered with the chat template and the
    generation prompt); a list of messages is rendered as it is. For prompts already
    rendered to text use `prompt_answer_activations_raw`.
    """
    chats = [[{"role": "user", "content": p}] if isinstance(p, str) else p for p in prompts]
    return _run(lm, [_prompt_ids(lm, c) for c in chats], answers, layers, batch_size)


@torch.no_grad()
def prompt_answer_activations_raw(
    lm: LoadedModel, prompt_texts: list[str], answers: list[str], layers: int | list[int], batch_size: int = 8
) -> PromptAnswerActivations:
    """As `prompt_answer_activations`, with prompts already rendered to text."""
    return _run(lm, [_prompt_ids(lm, t) for t in prompt_texts], answers, layers, batch_size)


def _run(
    lm: LoadedModel, prompt_ids: list[list[int]], answers: list[str], layers: int | list[int], batch_size: int
) -> PromptAnswerActivations:
    if len(prompt_ids) != len(answers):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(answers)} answers; pass one answer per prompt")
    model, tok = lm.model, lm.tokenizer
    blocks = get_blocks(model)
    layer_ids = resolve_layers(layers, len(blocks))
    device = next(model.parameters()).device
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ans_ids = [tok(a, add_special_tokens=False)["input_ids"] if a else [] for a in answers]
    last: dict[int, list[torch.Tensor]] = {ly: [] for ly in layer_ids}
    mean: dict[int, list[torch.Tensor]] = {ly: [] for ly in layer_ids}
    store: dict[int, torch.Tensor] = {}

    def make_hook(ly: int):
        def hook(_m, _a, out):
            store[ly] = block_output(out).detach()

        return hook

    handles = [blocks[ly].register_forward_hook(make_hook(ly)) for ly in layer_ids]
    try:
        for s in range(0, len(prompt_ids), batch_size):
            seqs = [p + a for p, a in zip(prompt_ids[s : s + batch_size], ans_ids[s : s + batch_size], strict=True)]
            p_lens = [len(p) for p in prompt_ids[s : s + batch_size]]
            width = max(len(x) for x in seqs)
            ids = torch.full((len(seqs), width), pad, dtype=torch.long)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            for i, x in enumerate(seqs):
                ids[i, : len(x)] = torch.tensor(x)
                mask[i, : len(x)] = 1
            model(input_ids=ids.to(device), attention_mask=mask.to(device))
            for ly in layer_ids:
                h = store[ly].float().cpu()
                for i, (x, pl) in enumerate(zip(seqs, p_lens, strict=True)):
                    last[ly].append(h[i, pl - 1])
                    ans = h[i, pl : len(x)]
                    mean[ly].append(ans.mean(0) if len(ans) else torch.full_like(h[i, 0], float("nan")))
    finally:
        for handle in handles:
            handle.remove()
    return PromptAnswerActivations(
        layer_ids,
        {ly: torch.stack(v) for ly, v in last.items()},
        {ly: torch.stack(v) for ly, v in mean.items()},
        [len(a) for a in ans_ids],
    )
