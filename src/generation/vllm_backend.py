"""Offline vLLM backend (optional extra `persona-diff[vllm]`, GPU only).

One engine serves a base model and any number of LoRA adapters through `LoRARequest`, so
the six domain fine-tunes of one base are sampled without reloading weights (`view(name)`
gives a handle per adapter). A PEFT adapter folder as the model (``vllm:runs/x/adapter``)
loads its base with that adapter active. Prefix caching is on: the probes send many requests
that share a system prompt and question, and `n` samples per prompt go in one request. Activations
still come from HF + nnsight (vLLM blocks return `(mlp_out, residual)`).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from persona_diff.errors import BackendError
from persona_diff.generation.base import Chat, Generator, SamplingParams, register


class VLLMGenerator(Generator):
    name = "vllm"

    def __init__(
        self,
        model: str,
        adapters: dict[str, str] | None = None,
        max_lora_rank: int = 64,
        tensor_parallel_size: int = 1,
        enable_prefix_caching: bool = True,
        **engine_kw: Any,
    ):
        try:
            import vllm
        except ImportError:
            raise BackendError(
                "the vllm backend needs vLLM: `pip install 'persona-diff[vllm]'` on a GPU machine"
            ) from None
        from persona_diff.models.embedded import ALIASES, materialise_alias

        self.adapters = dict(adapters or {})
        self.active: str | None = None
        adapter = Path(model).expanduser()
        if (adapter / "adapter_config.json").is_file():  # a PEFT adapter: its base + the adapter on
            from persona_diff.models.loading import adapter_base_path

            model = adapter_base_path(adapter)[1]
            self.adapters.setdefault(adapter.name, str(adapter))
            self.active = adapter.name
        path = str(materialise_alias(model)) if model in ALIASES else model
        self.llm = vllm.LLM(
            model=path,
            enable_lora=bool(self.adapters),
            max_lora_rank=max_lora_rank,
            tensor_parallel_size=tensor_parallel_size,
            enable_prefix_caching=enable_prefix_caching,
            **engine_kw,
        )
        self._vllm = vllm
        self.name = f"vllm:{model}"

    def use_adapter(self, name: str | None) -> VLLMGenerator:
        """Select which adapter (by name) later `generate` calls use; None = the base."""
        if name is not None and name not in self.adapters:
            raise BackendError(f"unknown adapter {name!r}; known: {', '.join(self.adapters) or 'none'}")
        self.active = name
        return self

    def view(self, name: str | None) -> VLLMGenerator:
        """Another handle on the same engine with adapter `name` active (None = the base)."""
        other = copy.copy(self)
        other.use_adapter(name)
        other.name = f"{self.name.split('+')[0]}+{name}" if name else self.name.split("+")[0]
        return other

    def _lora(self) -> Any:
        if self.active is None:
            return None
        from vllm.lora.request import LoRARequest

        idx = list(self.adapters).index(self.active) + 1
        return LoRARequest(self.active, idx, self.adapters[self.active])

    def generate(self, chats: list[Chat], params: SamplingParams) -> list[list[str]]:
        sp = self._vllm.SamplingParams(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_new_tokens,
            seed=params.seed,
        )
        outs = self.llm.chat(chats, sp, lora_request=self._lora(), use_tqdm=True)
        return [[o.text for o in r.outputs] for r in outs]

    def next_token_logprobs(self, chats: list[Chat], top_k: int = 20) -> list[dict[str, float]]:
        sp = self._vllm.SamplingParams(n=1, temperature=0, max_tokens=1, logprobs=top_k)
        outs = self.llm.chat(chats, sp, lora_request=self._lora(), use_tqdm=False)
        res = []
        for r in outs:
            first = r.outputs[0].logprobs[0]
            res.append({lp.decoded_token: float(lp.logprob) for lp in first.values()})
        return res


@register("vllm")
def _make(spec: str, **kw: Any) -> Generator:
    kw.pop("batch_size", None)
    kw.pop("show_progress", None)
    return VLLMGenerator(spec, **kw)
