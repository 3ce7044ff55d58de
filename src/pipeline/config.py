"""The run config: one YAML with a section per stage (configs/run/*.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field

from persona_diff.diffing.base import DiffParams, method_configs
from persona_diff.internals.config import InternalsConfig
from persona_diff.probes.config import LabelConfig, ProbeConfig
from persona_diff.steering.sweep import DoseResponseConfig


@dataclass
class CaptureSection:
    layers: list[int] = field(default_factory=lambda: [14])  # block i = HF hidden_states[i+1]
    positions: str = "answer"  # all | prompt | answer | last-prompt
    max_tokens: int = 192  # per stream (prompt + answer)
    dtype: str = "float32"
    batch_size: int = 8


@dataclass
class DiffSection:
    # which methods run: mean, contrastive, sae, diff-sae, crosscoder (see `persona-diff diff --help`)
    methods: list[str] = field(default_factory=lambda: ["mean", "sae", "diff-sae", "crosscoder"])
    # flat settings: each key goes to every chosen method whose config has it (persona_diff.diffing.config)
    params: DiffParams = field(default_factory=dict)

    def __post_init__(self) -> None:
        method_configs(self.methods, self.params)  # an unknown method or a key no method has fails at load


@dataclass
class SteeringSection:
    enabled: bool = True
    method: str = "mean"  # whose top direction is tested causally
    alphas: list[float] = field(default_factory=lambda: [0.0, 1.0, 2.0, 4.0])  # base model, add α·v
    ablate_alphas: list[float] = field(default_factory=lambda: [0.0, 1.0])  # fine-tune, fraction removed
    questions: int = 3
    sweep: DoseResponseConfig = field(
        default_factory=lambda: DoseResponseConfig(samples_per_question=2, max_new_tokens=40)
    )


@dataclass
class AnalysisSection:
    n_boot: int = 1000


@dataclass
class GenerationSection:
    """Which engine samples the probes' answers. vLLM (the `vllm` extra, GPUs) serves the base
    with the fine-tune as a LoRA adapter of one engine; activations still come from HF."""

    backend: str = "hf"  # hf | vllm
    gpu_memory_utilization: float = 0.45  # vLLM's share: the HF pair for capture shares the GPU
    tensor_parallel_size: int = 1  # GPUs per vLLM engine (32B in bf16: 2-4)
    max_model_len: int | None = None  # vLLM context cap (None = the model's)


@dataclass
class RunConfig:
    seed: int = 0
    judge: str = (
        "auto"  # auto = the calibrated judge shipped with the package; or calibrated:DIR, hf:MODEL, openai:URL#model
    )
    dtype: str = "float32"  # weights of both models; bfloat16 on GPUs
    device: str = "auto"  # auto (a CUDA GPU when visible, else CPU), cpu, cuda, cuda:N
    device_map: str | None = None  # "auto": spread each model over all visible GPUs (accelerate)
    trust_remote_code: bool = False
    generation: GenerationSection = field(default_factory=GenerationSection)
    probes: ProbeConfig = field(default_factory=ProbeConfig)
    label: LabelConfig = field(default_factory=LabelConfig)
    capture: CaptureSection = field(default_factory=CaptureSection)
    diff: DiffSection = field(default_factory=DiffSection)
    steering: SteeringSection = field(default_factory=SteeringSection)
    analysis: AnalysisSection = field(default_factory=AnalysisSection)
    # harm and self-report directions, per-answer table, persona map (and a study's detector);
    # layers are SmolLM2-135M's (30 blocks): set internals.layer / internals.layers for other models
    internals: InternalsConfig = field(default_factory=lambda: InternalsConfig(enabled=True))
