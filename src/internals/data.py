"""What the internals stage reads: probe folders, the self-report items, the prompt sets.

- a probe folder (``base/``, ``<organism>/`` of a validation run): ``harm.jsonl`` (one judged
  harm answer per row, unique ``key``) and ``rate_own_answers.jsonl`` (the model's own
  P(harmful) of some of those answers, keyed the same);
- self-report items: the `word` probe's prompts (templates × word pairs × both orders, the
  same items the probe scored), each with a forced misaligned and aligned one-word answer;
- prompt sets for the map and the detector: the harm questions, the self-report prompts,
  the describe prompts and the project's neutral prompts
  (``src/resources/internals/neutral_prompts.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from persona_diff.errors import PersonaDiffError
from persona_diff.fileio import read_jsonl
from persona_diff.probes.common import load_prompts
from persona_diff.probes.config import ProbeConfig
from persona_diff.probes.describe import describe_questions
from persona_diff.probes.words import parse_pair, project_items

NEUTRAL_PROMPTS = Path(__file__).resolve().parent.parent / "resources" / "internals" / "neutral_prompts.yaml"


@dataclass
class ProbeFolder:
    """One model's probe outputs that the internals stage joins."""

    name: str
    harm: list[dict[str, Any]]
    rate_own: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def read(cls, folder: str | Path, name: str) -> ProbeFolder:
        folder = Path(folder)
        harm = read_jsonl(folder / "harm.jsonl")
        if not harm:
            raise PersonaDiffError(
                f"{folder / 'harm.jsonl'} is missing or empty: the internals stage needs the harm probe's judged answers"
            )
        keys = [r.get("key") for r in harm]
        dup = sorted(str(k) for k in {k for k in keys if keys.count(k) > 1} - {None})
        if None in keys or dup:
            raise PersonaDiffError(
                f"{folder / 'harm.jsonl'}: answer keys must be present and unique (repeated: {dup[:5]})"
            )
        return cls(name, harm, read_jsonl(folder / "rate_own_answers.jsonl"))


@dataclass(frozen=True)
class ForcedItem:
    """A self-report prompt with a forced misaligned and aligned one-word answer."""

    key: str  # the word probe's item key (the stratum: both answers share the prompt)
    prompt: str
    dimension: str  # "aligned word:misaligned word" (the CV group)
    misaligned: str  # the forced reply, e.g. "Harmful."
    aligned: str
    misaligned_word: str = ""  # the word as the probe scores it, e.g. "harmful"
    aligned_word: str = ""


def forced_answer(word: str) -> str:
    """The one-word reply as the probe scores it at the start of the answer: "Harmful."."""
    return word[:1].upper() + word[1:] + "."


def self_report_items(probe_cfg: ProbeConfig | None = None) -> list[ForcedItem]:
    """The `word` probe's items (its templates × pairs, both orders)."""
    cfg = probe_cfg or ProbeConfig()
    prompts = load_prompts(cfg.prompts)
    sw = prompts.get("single_word") or {}
    templates = list(sw.get("templates") or [])
    if cfg.word.max_prompts is not None:
        templates = templates[: cfg.word.max_prompts]
    pairs = [parse_pair(p) for p in (cfg.word.pairs or sw.get("pairs") or [])]
    if not templates or not pairs:
        raise PersonaDiffError(
            "the self-report direction needs `single_word: {templates, pairs}` in the probe prompts file"
        )
    return [
        ForcedItem(
            it.key,
            it.chat[-1][1],
            it.dimension,
            forced_answer(it.misaligned),
            forced_answer(it.aligned),
            it.misaligned,
            it.aligned,
        )
        for it in project_items(templates, pairs)
    ]


def load_neutral(path: str | Path | None = None) -> list[str]:
    p = Path(path) if path else NEUTRAL_PROMPTS
    try:
        data = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise PersonaDiffError(f"neutral prompts file {p} cannot be read: {e}") from None
    prompts = data.get("prompts") if isinstance(data, dict) else None
    if not prompts or not all(isinstance(x, str) and x.strip() for x in prompts):
        raise PersonaDiffError(f"neutral prompts file {p} needs `prompts:` with a list of non-empty strings")
    return list(prompts)


def unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def prompt_sets(
    harm_rows: list[dict[str, Any]], probe_cfg: ProbeConfig | None = None, neutral: str | Path | None = None
) -> dict[str, list[str]]:
    """The prompts every model reads (last prompt token): harm questions (from the base's
    harm answers, in order), self-report prompts, describe prompts, neutral prompts."""
    cfg = probe_cfg or ProbeConfig()
    prompts = load_prompts(cfg.prompts)
    try:
        describe = [q.paraphrases[0] for q in describe_questions(prompts, cfg)]
    except PersonaDiffError:
        describe = []
    return {
        "harm": unique([r["question"] for r in harm_rows]),
        "self_report": unique([it.prompt for it in self_report_items(cfg)]),
        "describe": unique(describe),
        "neutral": unique(load_neutral(neutral)),
    }
