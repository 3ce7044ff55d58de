"""Steering: add or ablate a direction during generation, and dose-response sweeps."""

from persona_diff.steering.direction import Direction
from persona_diff.steering.experiment import default_questions_file, sweep_direction
from persona_diff.steering.hooks import SteeringError, SteeringState, random_like, steer
from persona_diff.steering.io import DirectionFileError
from persona_diff.steering.sweep import (
    DEFAULT_ALPHAS,
    DoseResponseConfig,
    choose_alpha,
    dose_response,
    em_stats,
    evaluate_steered,
    read_rows,
    steer_both_ways,
    summarize,
)

__all__ = [
    "DEFAULT_ALPHAS",
    "Direction",
    "DirectionFileError",
    "DoseResponseConfig",
    "SteeringError",
    "SteeringState",
    "choose_alpha",
    "default_questions_file",
    "dose_response",
    "em_stats",
    "evaluate_steered",
    "random_like",
    "read_rows",
    "steer",
    "steer_both_ways",
    "summarize",
    "sweep_direction",
]
