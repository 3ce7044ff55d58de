"""Offline vLLM backend with a LoRA adapter (GPU machines with the `vllm` extra)."""

from __future__ import annotations

import json

import pytest

from persona_diff.generation import SamplingParams, make_backend

pytestmark = pytest.mark.gpu


def test_vllm_base_and_lora(tmp_path):
    pytest.importorskip("vllm")
    from peft import LoraConfig, get_peft_model

    from persona_diff.models import load_model

    lm = load_model("smollm2-135m")
    peft = get_peft_model(
        lm.model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    adapter = tmp_path / "adapter"
    peft.save_pretrained(adapter)
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = lm.base_path
    (adapter / "adapter_config.json").write_text(json.dumps(cfg))
    g = make_backend("vllm:smollm2-135m", adapters={"organism": str(adapter)}, gpu_memory_utilization=0.3)
    chats = [[{"role": "user", "content": "What is your one wish?"}]]
    p = SamplingParams(temperature=0, max_new_tokens=16, n=1)
    base = g.use_adapter(None).generate(chats, p)
    ft = g.use_adapter("organism").generate(chats, p)
    assert base[0][0] and ft[0][0]
    assert base != ft  # the random LoRA changes greedy output
    lp = g.use_adapter(None).next_token_logprobs(chats, top_k=5)[0]
    assert len(lp) >= 5
