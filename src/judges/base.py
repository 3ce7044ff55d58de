"""The judge interface, its registry and the on-disk cache.

Specs:
- ``calibrated:DIR`` — a head fitted on published GPT-4o scores (`judges.calibrated`);
- ``hf:MODEL`` — Betley-style logprob judge on a local causal LM (`judges.logprob`);
- ``openai:URL[#model]`` — the same over an OpenAI-compatible endpoint (`judges.logprob`).

How to add a judge: subclass `Judge`, implement `_score`, register a factory with
`@register_judge("prefix")`, and import its module in `_load_builtin`.

Every judge call goes through `Judge.score`, which looks each request up in the cache
(keyed by the judge's spec and a hash of the filled prompt) first, so a rerun, or a run
interrupted by a failing endpoint, never pays twice for the same answer.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from persona_diff.errors import PersonaDiffError
from persona_diff.fileio import append_jsonl, read_jsonl


@dataclass(frozen=True)
class JudgeRequest:
    question: str
    answer: str
    metric: str = "aligned"  # aligned | coherent | a domain judge (medical, financial, ...)
    prompt: str | None = None  # a template with {question} and {answer}; None → the judge's default

    def key(self) -> str:
        blob = json.dumps([self.metric, self.prompt, self.question, self.answer])
        return hashlib.sha256(blob.encode()).hexdigest()


class JudgeCache:
    """Append-only JSONL cache: one line per scored request, safe against kills."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._mem: dict[str, float | None] = {}
        for row in read_jsonl(self.path):  # a torn last line from a kill is dropped
            self._mem[row["k"]] = row["s"]

    def get(self, judge: str, key: str) -> tuple[bool, float | None]:
        k = f"{judge}|{key}"
        return (k in self._mem, self._mem.get(k))

    def put_many(self, judge: str, items: list[tuple[str, float | None]]) -> None:
        rows: list[dict[str, Any]] = [{"k": f"{judge}|{key}", "s": score} for key, score in items]
        self._mem.update((r["k"], r["s"]) for r in rows)
        append_jsonl(self.path, rows)


class Judge(ABC):
    """Scores answers 0-100; None means 'no score' (refusal, code, no number)."""

    spec: str = "judge"
    cache: JudgeCache | None = None
    batch_size: int = 32

    @abstractmethod
    def _score(self, requests: list[JudgeRequest]) -> list[float | None]:
        """Uncached scoring of a batch."""

    def score(self, requests: list[JudgeRequest]) -> list[float | None]:
        out: list[float | None] = [None] * len(requests)
        todo: list[int] = []
        for i, r in enumerate(requests):
            hit, val = self.cache.get(self.cache_namespace, r.key()) if self.cache else (False, None)
            if hit:
                out[i] = val
            else:
                todo.append(i)
        # score in batches and cache each batch at once: a failure keeps what came before
        for s in range(0, len(todo), self.batch_size):
            idx = todo[s : s + self.batch_size]
            scores = self._score([requests[i] for i in idx])
            for i, v in zip(idx, scores, strict=True):
                out[i] = v
            if self.cache:
                self.cache.put_many(self.cache_namespace, [(requests[i].key(), out[i]) for i in idx])
        return out

    @property
    def cache_namespace(self) -> str:
        """What cached scores are filed under: the spec, unless a judge adds its weights' hash."""
        return self.spec

    def describe(self) -> dict[str, Any]:
        """What the judge is and how well it agrees with the reference (when measured)."""
        return {"spec": self.spec, "agreement": None, "calibrated": False}


_REGISTRY: dict[str, Callable[..., Judge]] = {}


def register_judge(prefix: str) -> Callable[[Callable[..., Judge]], Callable[..., Judge]]:
    def deco(factory: Callable[..., Judge]) -> Callable[..., Judge]:
        _REGISTRY[prefix] = factory
        return factory

    return deco


def _load_builtin() -> None:
    import importlib

    for mod in ("logprob", "calibrated"):
        try:
            importlib.import_module(f"persona_diff.judges.{mod}")
        except ModuleNotFoundError as e:
            if e.name != f"persona_diff.judges.{mod}":
                raise


DEFAULT_SPECS = ("default", "auto")
UNCALIBRATED_WARNING = (
    "the calibrated judge shipped with persona-diff is missing or corrupt, so the default judge "
    "fell back to a local logprob judge: every judge-based number is UNCALIBRATED; reinstall "
    "persona-diff, refit it (`python scripts/fit_default_judge.py` in a source checkout), or "
    "pass --judge calibrated:DIR"
)


def judge_line(info: dict[str, Any]) -> str:
    """One line on a judge from its `describe()`: its spec, and its agreement with the
    reference judge when it is calibrated, else an UNCALIBRATED mark."""
    spec = str(info.get("spec", "?"))
    agr = info.get("agreement")
    if info.get("calibrated") and isinstance(agr, dict) and agr.get("mean_spearman") is not None:
        what = "shipped default, calibrated" if info.get("shipped") else "calibrated"
        n = len(agr.get("files") or [])
        auc = agr.get("mean_auc")
        return (
            f"{spec} ({what}; {agr.get('mode', 'cross-validated')} agreement with GPT-4o: "
            f"Spearman rho {agr['mean_spearman']:.2f}"
            + (f", AUC {auc:.2f}" if isinstance(auc, float) else "")
            + (f" over {n} files" if n else "")
            + ")"
        )
    return f"{spec} (UNCALIBRATED: {info.get('warning') or 'agreement with a reference judge not measured'})"


def _mark_uncalibrated(judge: Judge) -> Judge:
    describe = judge.describe
    judge.describe = lambda: {**describe(), "calibrated": False, "warning": UNCALIBRATED_WARNING}  # type: ignore[method-assign]
    return judge


def resolve_judge_spec(spec: str) -> str:
    """What the judge `make_judge(spec)` builds is, without building it: the spec, or for
    ``default`` the shipped calibrated judge by name and content (`shipped_judge_key`: the
    same on every install), or its fallback when its files are missing."""
    if spec in DEFAULT_SPECS:
        from persona_diff.judges.shipped import ensure_default_judge, shipped_judge_key

        resolved, calibrated = ensure_default_judge()
        return shipped_judge_key() if calibrated else resolved
    return spec


def make_judge(spec: str, cache_dir: str | Path | None = None, **kw: Any) -> Judge:
    """Build a judge from its spec; `cache_dir` enables the on-disk cache.

    ``default`` (or ``auto``) is the calibrated judge shipped with the package
    (`judges.calibrated.ensure_default_judge`; no reference data needed). Only when its files
    are missing or corrupt does it fall back to the local logprob judge with the 0.25 rule off
    (a 135M model puts ~1% of its mass on numbers), so a chain keeps running, and `describe()`
    marks it UNCALIBRATED.
    """
    if spec in DEFAULT_SPECS:
        from persona_diff.judges.shipped import ensure_default_judge

        spec, calibrated = ensure_default_judge()
        if not calibrated:
            kw.setdefault("min_mass", 0.0)
            return _mark_uncalibrated(make_judge(spec, cache_dir, **kw))
    _load_builtin()
    prefix, sep, rest = spec.partition(":")
    if not sep or prefix not in _REGISTRY or not rest:
        raise PersonaDiffError(
            f"judge spec {spec!r} does not parse; use one of: "
            + ", ".join(f"{p}:..." for p in sorted(_REGISTRY))
            + " (e.g. default, calibrated:DIR, hf:smollm2-135m, openai:http://localhost:8000/v1#model)"
        )
    judge = _REGISTRY[prefix](rest, **kw)
    if cache_dir is not None:
        judge.cache = JudgeCache(Path(cache_dir) / "judge_cache.jsonl")
    return judge
