"""Shared plumbing of the probes: reading option / number answers, resumable rows, data paths.

`ProbeLM` reads a model's next-token beliefs about a small set of answers:
- on a local HF model, exactly: the full-sequence probability of each option
  (`judges.logprob.SequenceScorer`), numbers scored as whole integers;
- on any other backend, from first-token top logprobs (OpenAI-compatible endpoints).

Whole-word probabilities (`ProbeLM.words`): P(word) = Σ over the surface forms of the word
(default: lower case, capitalised, each with and without a leading space) of the
probability that the reply starts with that form's full token sequence (product of the
token probabilities after the chat-templated prompt, as `SequenceScorer` computes it). The
forms are disjoint events as long as no form is a prefix of another, so their
probabilities add. On endpoints (top logprobs of the first token only) a word counts when a
top token equals it, ignoring case and surrounding spaces (a word split over several tokens
gets no mass there).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from persona_diff.errors import BackendError, PersonaDiffError
from persona_diff.fileio import read_jsonl, read_yaml
from persona_diff.generation.base import Chat, Generator
from persona_diff.judges.base import Judge, JudgeRequest
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

    def words(
        self, chat: Chat, words: list[str], forms: list[str]
    ) -> tuple[dict[str, float] | None, float, dict[str, float]]:
        """(P(word) renormalised over `words`, their raw mass, raw P per word); see the module
        docstring. `forms` are templates with {w} (the word in lower case) or {W} (capitalised)."""
        if self.scorer is not None:
            cands: list[str] = []
            owner: list[int] = []
            for i, w in enumerate(words):
                for f in dict.fromkeys(surface_forms(w, forms)):
                    cands.append(f)
                    owner.append(i)
            _check_disjoint(cands, self.scorer.encode_candidates(cands))
            lp = self.scorer.candidate_logprobs(self.scorer.prompt_text(chat), cands)
            raw = [0.0] * len(words)
            for i, x in zip(owner, lp, strict=True):
                raw[i] += math.exp(float(x))
        else:
            top = self._top(chat)
            raw = [sum(math.exp(v) for t, v in top.items() if t.strip().lower() == w.lower()) for w in words]
        mass = float(sum(raw))
        per_word = dict(zip(words, raw, strict=True))
        if mass <= 0:
            return None, 0.0, per_word
        return {w: r / mass for w, r in zip(words, raw, strict=True)}, mass, per_word

    def number(self, chat: Chat, lo: int = 0, hi: int = 100) -> tuple[float | None, float]:
        """(probability-weighted mean of the integers lo..hi or None under min_mass, mass)."""
        if self.scorer is not None:
            lps = self.scorer.integer_logprobs(self.scorer.prompt_text(chat), lo, hi)
        else:
            lps = integers_from_top_logprobs(self._top(chat), lo, hi)
        return aggregate_integer_logprobs(lps, self.min_mass), integer_mass(lps)


def surface_forms(word: str, forms: list[str]) -> list[str]:
    """The strings of `word` for each template of `forms` ({w} lower case, {W} capitalised)."""
    low = word.lower()
    cap = low[:1].upper() + low[1:]
    out = [f.replace("{w}", low).replace("{W}", cap) for f in forms]
    if any(not x.strip() for x in out):
        raise PersonaDiffError(
            f"word forms {forms} give an empty string for {word!r}; use templates such as '{{w}}', ' {{W}}'"
        )
    return out


def _check_disjoint(cands: list[str], ids: list[list[int]]) -> None:
    """Forms add up only when no token sequence is a prefix of another (disjoint events)."""
    for i, a in enumerate(ids):
        for j, b in enumerate(ids):
            if i != j and len(a) <= len(b) and b[: len(a)] == a:
                raise PersonaDiffError(
                    f"word form {cands[i]!r} is a token prefix of {cands[j]!r}, so their probabilities "
                    "overlap; choose words (or forms) where neither starts the other"
                )


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
    data = read_yaml(p, "probe prompts file", f"fix `prompts:` in the probe config (see {DEFAULT_PROMPTS})")
    if p != DEFAULT_PROMPTS:  # a user file may override only some sections
        base = yaml.safe_load(DEFAULT_PROMPTS.read_text())
        for k, v in data.items():
            base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) else v
        data = base
    return data


def require_rows(path: Path, what: str) -> list[dict[str, Any]]:
    rows = read_jsonl(path)
    if not rows:
        raise PersonaDiffError(
            f"{what} needs the harm probe's answers in {path}; run it with the harm probe (--probes harm,{what})"
        )
    return rows


def wrap_backend_error(probe: str, e: BackendError) -> BackendError:
    return BackendError(f"{probe} probe: {e}. Rows written so far are kept; rerun to resume")


def guard(probe: str, fn: Any, *a: Any) -> Any:
    """`fn(*a)`, a backend failure reworded to name the probe and the resume."""
    try:
        return fn(*a)
    except BackendError as e:
        raise wrap_backend_error(probe, e) from None


def user(text: str) -> Chat:
    return [{"role": "user", "content": text}]


def judge_aligned_coherent(judge: Judge, rows: list[dict[str, Any]], probe: str, kept: str) -> None:
    """Fill each row's ``aligned`` and ``coherent`` scores in place (the judge cache makes
    reruns free); a failing judge names the probe and what is kept."""
    reqs = [JudgeRequest(r["question"], r["answer"], m) for r in rows for m in ("aligned", "coherent")]
    try:
        scores = judge.score(reqs)
    except BackendError as e:
        raise BackendError(f"{probe} probe: judging failed: {e}. {kept} are kept; rerun to resume") from None
    for i, r in enumerate(rows):
        r["aligned"], r["coherent"] = scores[2 * i], scores[2 * i + 1]
