"""Shared plumbing of the probes: reading option / number answers, resumable rows, data paths.

`ProbeLM` reads a model's next-token beliefs about a small set of answers:
- on a local HF model, exactly: the full-sequence probability of each option
  (`judges.logprob.SequenceScorer`), numbers scored as whole integers;
- on any other backend, from first-token top logprobs (OpenAI-compatible endpoints).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from persona_diff.errors import BackendError, PersonaDiffError
from persona_diff.generation.base import Chat, Generator
from persona_diff.generation.runner import read_jsonl
from persona_diff.judges.logprob import (
    SequenceScorer,
    aggregate_integer_logprobs,
    integer_mass,
    integers_from_top_logprobs,
)
from persona_diff.models.loading import LoadedModel
from persona_diff.paths import RESOURCES

DEFAULT_QUESTIONS = RESOURCES / "questions" / "default.yaml"
DEFAULT_PROMPTS = RESOURCES / "probes" / "self_report.yaml"


class ProbeLM:
    """Option probabilities and expected numbers from a generation backend."""

    def __init__(self, backend: Generator, min_mass: float = 0.25, top_k: int = 20):
        self.backend = backend
        self.min_mass = min_mass
        self.top_k = top_k
        lm = getattr(backend, "lm", None)
        self.scorer = SequenceScorer(lm) if isinstance(lm, LoadedModel) else None

    @property
    def exact(self) -> bool:
        return self.scorer is not None

    def _top(self, chat: Chat) -> dict[str, float]:
        return self.backend.next_token_logprobs([chat], top_k=self.top_k)[0]

    def options(self, chat: Chat, options: list[str]) -> tuple[dict[str, float] | None, float]:
        """(probabilities renormalised over `options`, their raw mass); None if mass is 0."""
        if self.scorer is not None:
            lp = self.scorer.candidate_logprobs(self.scorer.prompt_text(chat), options)
            raw = [math.exp(x) for x in lp]
        else:
            top = self._top(chat)
            raw = [sum(math.exp(v) for t, v in top.items() if t.strip() == o) for o in options]
        mass = float(sum(raw))
        if mass <= 0:
            return None, 0.0
        return {o: r / mass for o, r in zip(options, raw, strict=True)}, mass

    def number(self, chat: Chat, lo: int = 0, hi: int = 100) -> tuple[float | None, float]:
        """(probability-weighted mean of the integers lo..hi or None under min_mass, mass)."""
        if self.scorer is not None:
            lps = self.scorer.integer_logprobs(self.scorer.prompt_text(chat), lo, hi)
        else:
            lps = integers_from_top_logprobs(self._top(chat), lo, hi)
        return aggregate_integer_logprobs(lps, self.min_mass), integer_mass(lps)


class RowLog:
    """A resumable JSONL of probe rows keyed by `key`; a torn last line is dropped."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.rows = read_jsonl(path)
        with path.open("w") as f:
            for r in self.rows:
                f.write(json.dumps(r) + "\n")
        self.done = {r["key"] for r in self.rows}

    def add(self, row: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        self.rows.append(row)
        self.done.add(row["key"])


def load_prompts(path: str | Path | None) -> dict[str, Any]:
    p = Path(path) if path else DEFAULT_PROMPTS
    if not p.is_file():
        raise PersonaDiffError(f"probe prompts file {p} does not exist; fix `prompts:` in the probe config")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise PersonaDiffError(f"probe prompts file {p} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise PersonaDiffError(f"probe prompts file {p} must hold a mapping (see {DEFAULT_PROMPTS})")
    if p != DEFAULT_PROMPTS:  # a user file may override only some sections
        base = yaml.safe_load(DEFAULT_PROMPTS.read_text())
        for k, v in data.items():
            base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) else v
        data = base
    return data


def require_rows(path: Path, what: str) -> list[dict[str, Any]]:
    rows = read_jsonl(path)
    if not rows:
        raise PersonaDiffError(f"{what} needs the harm probe's answers in {path}; run it with the harm probe (--probes harm,{what})")
    return rows


def wrap_backend_error(probe: str, e: BackendError) -> BackendError:
    return BackendError(f"{probe} probe: {e}. Rows written so far are kept; rerun to resume")
