"""The KV cache under every name transformers has used for it.

transformers ≤ 5.x (before the rename) passes and returns the cache as ``past_key_values``
(decoder layers once took ``past_key_value``); newer releases use ``cache`` and keep the old
keyword only as a deprecated alias (removed in 5.40). Code that reads or passes a cache goes
through these helpers, so it works across the whole allowed version range without warnings.
"""

from __future__ import annotations

import inspect
from functools import cache
from typing import Any

from torch import nn

NAMES = ("cache", "past_key_values", "past_key_value")


@cache
def _forward_takes_cache(cls: type[nn.Module]) -> bool:
    return "cache" in inspect.signature(cls.forward).parameters


def cache_kwarg(model: nn.Module) -> str:
    """The keyword `model.forward` takes its KV cache under ("cache" or "past_key_values")."""
    get_base_model = getattr(model, "get_base_model", None)  # PEFT wrappers have one
    base = get_base_model() if get_base_model is not None else model
    # classes are hashable; mypy checks a class against Hashable through its instances' __hash__
    return "cache" if _forward_takes_cache(type(base)) else "past_key_values"  # type: ignore[arg-type]


def output_cache(out: Any) -> Any:
    """The cache a model output carries (``out.cache`` or ``out.past_key_values``)."""
    for name in NAMES[:2]:
        c = out.get(name) if hasattr(out, "get") else getattr(out, name, None)
        if c is not None:
            return c
    return None


def cache_from_kwargs(kwargs: dict[str, Any]) -> Any:
    """The cache a module (a decoder layer) was called with, under any of its names."""
    for name in NAMES:
        if kwargs.get(name) is not None:
            return kwargs[name]
    return None
