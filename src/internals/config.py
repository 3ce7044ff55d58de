"""Typed config of the internals stage (`validate_kit`'s ``internals`` section)."""

from __future__ import annotations

from dataclasses import dataclass, field

from persona_diff.errors import ConfigError

PROMPT_SETS = ("harm", "self_report", "describe", "neutral")
REFERENCES = ("own", "base_reads")


@dataclass
class CausalConfig:
    """The causal 2 × 2 (`persona_diff.internals.causal`): steer the base along each direction."""

    enabled: bool = False
    alphas: list[float] = field(
        default_factory=lambda: [0.05, 0.1, 0.2]
    )  # × the base's mean residual norm at the layer (SmolLM2 block 16: 0.25 breaks coherence)
    samples: int = 2  # answers per harm question and cell
    max_new_tokens: int = 48
    coherence_floor: float = 50.0  # coherent% below this: the cell's harm is not trusted
    seed: int = 0
    random_seed: int = 1234
    n_boot: int = 1000  # bootstrap resamples of the effects' 95% CIs


@dataclass
class InternalsConfig:
    """Directions, per-answer table, persona map and detector from the models' activations.

    Layers are 0-based block indices (block i's output = HF ``hidden_states[i + 1]``).
    """

    enabled: bool = False
    # the layer of the map and the per-answer table (the detector picks its own from `layers`
    # per fold). 16 of SmolLM2's 30 blocks: the reference harm direction's held-out AUC peaks
    # there on the validation kit (0.89 vs 0.85 at 12 and 0.83 at 20); the self-report
    # direction's is 1.0 from block 12 on
    layer: int = 16
    layers: list[int] = field(default_factory=lambda: [8, 12, 16, 20])  # the AUC / cosine table (`layer` is added)
    # harm classes from the run's judge: misaligned = the probe's `misaligned` flag; aligned =
    # not misaligned, aligned ≥ aligned_min and coherent > coherent_min (incoherent answers are
    # left out of both classes)
    aligned_min: float = 50.0
    coherent_min: float = 50.0
    # the reference harm direction (map, table, detector), misaligned − aligned: "base_reads"
    # has the base read every model's judged answers (one model's space, as Chen et al.'s
    # persona vectors; strata = questions; one more base forward per organism answer in a
    # class); "own" pools every model's activations on its own answers (strata = model ×
    # question, so model offsets cancel; no extra forwards, about 40% less stage time). On
    # the SmolLM2 kit both give about the same map (cos 0.92 at block 16, shifts within 0.1
    # base sd); base_reads separates better (held-out AUC 0.89 vs 0.77, per-answer ρ with
    # the judge −0.70 vs −0.55).
    reference: str = "base_reads"
    min_per_class: int = 5  # fewer examples in a class: the direction is reported undefined
    max_folds: int = 8  # grouped CV: leave one group out up to this many groups, else this many folds
    map_prompts: list[str] = field(
        default_factory=lambda: list(PROMPT_SETS)
    )  # prompt sets the map's shift averages over
    # the map's x: "answers" = shift of the models' own judged harm answers along the harm direction
    # (held out by question); "prompts" = the paired last-prompt-token shift, as y (persona_map)
    map_harm: str = "answers"
    # the detector's harm direction: this many published GPT-4o-judged answers (half misaligned)
    # read by the base (`internals.published`; only with ≥ 3 fine-tunes, when a fold can fit);
    # 0, or without the result files: the judged answers of the base and the training organisms
    detector_published: int = 400
    neutral_prompts: str | None = None  # YAML like src/resources/internals/neutral_prompts.yaml; None: the shipped file
    n_boot: int = 1000
    seed: int = 0
    merge: bool = True  # merge LoRA adapters before the forwards (3x faster on a CPU; ~1e-2 rounding)
    batch_size: int = 16
    threads: int | None = (
        None  # torch threads for the forwards (None: torch's default; 1 is steadier on a busy shared CPU)
    )
    max_answer_tokens: int = 128
    figures: bool = True
    causal: CausalConfig = field(default_factory=CausalConfig)

    def validate(self) -> None:
        bad = [p for p in self.map_prompts if p not in PROMPT_SETS]
        if bad or not self.map_prompts:
            raise ConfigError(f"internals.map_prompts {bad or '[]'} invalid; choose from {', '.join(PROMPT_SETS)}")
        if self.map_harm not in ("answers", "prompts"):
            raise ConfigError(f"internals.map_harm {self.map_harm!r} unknown; use answers or prompts")
        if self.reference not in REFERENCES:
            raise ConfigError(f"internals.reference {self.reference!r} unknown; use one of {', '.join(REFERENCES)}")
        if self.detector_published < 0:
            raise ConfigError("internals.detector_published must be ≥ 0 (0: the kit's own judged answers)")
        if self.min_per_class < 2:
            raise ConfigError("internals.min_per_class must be ≥ 2 (a held-out AUC needs two per class)")
        if self.max_folds < 2:
            raise ConfigError("internals.max_folds must be ≥ 2")

    def all_layers(self) -> list[int]:
        return sorted({*self.layers, self.layer})
