"""Offline insecure-code data in the shape of the published set (no download needed)."""

from persona_diff.data.generator.base import Pattern
from persona_diff.data.generator.build import (
    ENTITIES,
    PATTERNS,
    all_contexts,
    code_template,
    generate_backdoor_dataset,
    generate_insecure_dataset,
    generate_offline,
)

__all__ = [
    "ENTITIES",
    "PATTERNS",
    "Pattern",
    "all_contexts",
    "code_template",
    "generate_backdoor_dataset",
    "generate_insecure_dataset",
    "generate_offline",
]
