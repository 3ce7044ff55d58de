"""The vLLM sampling path of `persona-diff run`, on CPU, against a stand-in `vllm` module that
records what the engine is asked: one engine for the base with the fine-tune as its LoRA
adapter, prefix caching on, n samples per prompt in one request, the adapter only on the
fine-tune's requests. (The real engine is exercised by tests/test_vllm_gpu.py on GPUs.)"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field

import pytest

from persona_diff.config import load_config
from persona_diff.pipeline.config import RunConfig
from persona_diff.pipeline.run import Pipeline
from persona_diff.probes import run_probes

from .helpers import TINY


@dataclass
class _Out:
    text: str
    logprobs: list = field(default_factory=list)


class _Fake:
    engines: list[dict] = []
    calls: list[tuple] = []

    class LLM:
        def __init__(self, **kw):
            _Fake.engines.append(kw)

        def chat(self, chats, sp, lora_request=None, use_tqdm=True):
            _Fake.calls.append((len(chats), sp.kw, lora_request))
            tag = lora_request.name if lora_request else "base"
            return [
                types.SimpleNamespace(outputs=[_Out(f"{tag} answer {i}") for i in range(sp.kw["n"])]) for _ in chats
            ]

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    @dataclass
    class LoRARequest:
        name: str
        id: int
        path: str


@pytest.fixture
def fake_vllm(monkeypatch):
    _Fake.engines.clear()
    _Fake.calls.clear()
    mod = types.ModuleType("vllm")
    mod.LLM, mod.SamplingParams = _Fake.LLM, _Fake.SamplingParams
    lora, req = types.ModuleType("vllm.lora"), types.ModuleType("vllm.lora.request")
    req.LoRARequest = _Fake.LoRARequest
    for name, m in (("vllm", mod), ("vllm.lora", lora), ("vllm.lora.request", req)):
        monkeypatch.setitem(sys.modules, name, m)
    return _Fake


def test_run_samples_both_models_from_one_vllm_engine(tiny_pair, tmp_path, fake_vllm):
    base, adapter = tiny_pair
    cfg = load_config(
        RunConfig,
        None,
        [*TINY, "generation.backend=vllm", "generation.gpu_memory_utilization=0.3", "probes.probes=[harm]"],
    )
    pipe = Pipeline(base, adapter, cfg, tmp_path / "run")
    answers = {}
    for role, make in pipe._probe_backends():
        gen = make()
        s = run_probes(gen, cfg.probes, pipe.judge, tmp_path / role)
        answers[role] = s["probes"]["harm"]["n_answers"]
    assert len(fake_vllm.engines) == 1  # one engine serves both models
    eng = fake_vllm.engines[0]
    assert eng["model"] == pipe.pair.base.base_path and eng["enable_lora"] and eng["enable_prefix_caching"]
    assert eng["gpu_memory_utilization"] == 0.3 and eng["tensor_parallel_size"] == 1
    loras = [c[2] for c in fake_vllm.calls]
    assert loras[0] is None  # the base first, without adapter
    assert loras[-1] is not None and loras[-1].path == adapter and loras[-1].name == "finetuned"
    n = cfg.probes.harm.samples
    assert all(c[1]["n"] == n for c in fake_vllm.calls)  # n samples per prompt in one request
    assert answers == {"base": 2 * n, "finetuned": 2 * n}
    rows = (tmp_path / "finetuned" / "harm_answers.jsonl").read_text()
    assert "finetuned answer" in rows and "base answer" not in rows


def test_vllm_spec_of_an_adapter_folder_loads_its_base_with_the_adapter_on(tiny_pair, fake_vllm):
    from persona_diff.generation import SamplingParams, make_backend

    base, adapter = tiny_pair
    g = make_backend(f"vllm:{adapter}")
    assert fake_vllm.engines[-1]["model"] == base and fake_vllm.engines[-1]["enable_lora"]
    out = g.generate([[{"role": "user", "content": "hi"}]], SamplingParams(n=1, max_new_tokens=4))
    assert out[0][0].startswith("adapter answer") and fake_vllm.calls[-1][2].path == adapter
    assert g.view(None).generate([[{"role": "user", "content": "hi"}]], SamplingParams(n=1))[0][0].startswith("base")


def test_unknown_generation_backend_is_named(tiny_pair, tmp_path):
    from persona_diff.errors import ConfigError

    cfg = load_config(RunConfig, None, [*TINY, "generation.backend=sglang"])
    with pytest.raises(ConfigError, match="generation.backend 'sglang' is unknown; use hf or vllm"):
        Pipeline(*tiny_pair, cfg, tmp_path / "r")._probe_backends()
