"""Logging and progress helpers; `src/` never prints."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

_CONFIGURED = False


def launch_rank() -> int:
    """This process's global rank under torchrun / `accelerate launch` (0 when not launched)."""
    for key in ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 0


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name if name.startswith("persona_diff") else f"persona_diff.{name}")


def setup_logging(level: str | int | None = None) -> None:
    """Configure the package logger once (stderr, short format).

    Under a multi-process launch only rank 0 logs at INFO; the other ranks log warnings and
    errors (PERSONA_DIFF_LOG, when set, applies to every rank).
    """
    global _CONFIGURED
    if _CONFIGURED:
        return
    level = level or os.environ.get("PERSONA_DIFF_LOG") or ("INFO" if launch_rank() == 0 else "WARNING")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger("persona_diff")
    root.addHandler(handler)
    root.setLevel(level)
    _CONFIGURED = True


def progress(it: Iterable[T], desc: str | None, total: int | None = None, disable: bool | None = None) -> Iterator[T]:
    """A tqdm bar on stderr; quiet when PERSONA_DIFF_NO_PROGRESS is set, and on ranks > 0."""
    if disable is None:
        disable = bool(os.environ.get("PERSONA_DIFF_NO_PROGRESS")) or launch_rank() > 0
    return iter(tqdm(it, desc=desc, total=total, disable=disable, file=sys.stderr, dynamic_ncols=True))
