"""The generation interface and its registry.

How to add a backend: subclass `Generator`, implement `generate` (and `next_token_logprobs`
if it can), decorate with `@register("name")`, and import the module in `_load_builtin`.
Specs look like ``hf:MODEL``, ``openai:URL[#model]`` or ``vllm:MODEL``; a bare model spec
means ``hf:``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from persona_diff.errors import BackendError

Chat = list[dict[str, str]]


@dataclass
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    n: int = 1
    seed: int = 0


class Generator(ABC):
    """Turns chats into sampled answers (and, where possible, next-token logprobs)."""

    name: str = "generator"

    @abstractmethod
    def generate(self, chats: list[Chat], params: SamplingParams) -> list[list[str]]:
        """`params.n` answers for each chat, in order."""

    def next_token_logprobs(self, chats: list[Chat], top_k: int = 20) -> list[dict[str, float]]:
        """Top-k next-token log-probabilities (token string → logprob) after each chat's
        assistant prefix. Backends that cannot provide them raise BackendError."""
        raise BackendError(f"backend {self.name} does not provide next-token logprobs")


_REGISTRY: dict[str, Callable[..., Generator]] = {}


def register(name: str) -> Callable[[Callable[..., Generator]], Callable[..., Generator]]:
    def deco(factory: Callable[..., Generator]) -> Callable[..., Generator]:
        _REGISTRY[name] = factory
        return factory

    return deco


def _load_builtin() -> None:
    from persona_diff.generation import hf, openai_http, vllm_backend  # noqa: F401


def parse_backend(spec: str) -> tuple[str, str]:
    """(kind, rest) of a backend spec: ``hf:X``/plain model spec → hf; URL → openai."""
    _load_builtin()
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in _REGISTRY or kind in ("http", "https"):
        return ("openai", spec) if spec.startswith(("http://", "https://")) else ("hf", spec)
    return kind, rest


def make_backend(spec: str, **kw: Any) -> Generator:
    """Build a backend from a spec such as ``hf:smollm2-135m`` or ``openai:http://h:8000/v1#m``."""
    kind, rest = parse_backend(spec)
    return _REGISTRY[kind](rest, **kw)
