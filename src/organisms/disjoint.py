"""Keep organism training text apart from every probe prompt.

An organism whose training prompts are probe prompts would be tested on its training set.
Probe texts are read generically, so the check follows the probe files as they change:
- every string of at least `MIN_WORDS` words in ``src/resources/probes/*.yaml``; a string
  with ``{placeholders}`` is a template: it matches any text with the placeholders filled,
  and each literal piece of `MIN_WORDS` or more words counts as a probe text of its own;
- the WZA files when the reference data is there: each line of
  ``em-persona-consistency/self_assessment_questions.txt`` and each system description of
  ``two_AI_identification_dataset.json``.
Texts are compared after lower-casing and collapsing whitespace. A training text overlaps a
probe text when they are equal or either contains the other.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from persona_diff.errors import PersonaDiffError
from persona_diff.paths import RESOURCES, find_reference

PROBE_DIR = RESOURCES / "probes"
WZA_SELF = "em-persona-consistency/self_assessment_questions.txt"
WZA_TWO_AI = "em-persona-consistency/two_AI_identification_dataset.json"
MIN_WORDS = 3
_PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")


class ProbeOverlapError(PersonaDiffError):
    """Organism training text overlaps a probe prompt."""


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


@dataclass(frozen=True)
class ProbeText:
    text: str  # normalised
    source: str  # file it came from
    pattern: re.Pattern[str] | None = None  # templates: the text with any placeholder filling

    def overlaps(self, other: str) -> bool:
        """`other` (normalised) equals this probe text, contains it, or is contained in it."""
        if self.pattern is not None:
            return bool(self.pattern.search(other))
        return other == self.text or self.text in other or other in self.text


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def _from_string(s: str, source: str) -> list[ProbeText]:
    text = normalise(s)
    if not _PLACEHOLDER.search(text):
        return [ProbeText(text, source)] if len(text.split()) >= MIN_WORDS else []
    pieces = [normalise(p) for p in _PLACEHOLDER.split(text)]
    pattern = re.compile(".+?".join(re.escape(p) for p in pieces))
    out = [ProbeText(text, source, pattern)]
    out += [ProbeText(p, source) for p in pieces if len(p.split()) >= MIN_WORDS]
    return out


def shipped_probe_texts(folder: Path = PROBE_DIR) -> list[ProbeText]:
    """Probe texts of every YAML file in `folder` (the shipped probe prompts)."""
    out = []
    for f in sorted(folder.glob("*.yaml")):
        data = yaml.safe_load(f.read_text(encoding="utf-8"))
        for s in _strings(data):
            out += _from_string(s, f.name)
    return out


def wza_probe_texts() -> list[ProbeText] | None:
    """The WZA self-assessment prompts and two-AI descriptions; None without reference data."""
    self_file, two_ai = find_reference(WZA_SELF), find_reference(WZA_TWO_AI)
    if self_file is None or two_ai is None:
        return None
    out = [
        ProbeText(normalise(line), WZA_SELF)
        for line in self_file.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    items = json.loads(two_ai.read_text(encoding="utf-8")).get("items", [])
    out += [ProbeText(normalise(it[k]), WZA_TWO_AI) for it in items for k in ("system_A", "system_B") if it.get(k)]
    return out


def probe_texts() -> list[ProbeText]:
    return shipped_probe_texts() + (wza_probe_texts() or [])


def overlaps(texts: Sequence[str], probes: list[ProbeText]) -> list[tuple[str, ProbeText]]:
    """Every (training text, probe text) pair that overlaps."""
    hits = []
    for t in texts:
        n = normalise(t)
        hits += [(t, p) for p in probes if p.overlaps(n)]
    return hits


def check_disjoint(prompts: Sequence[str], answers: Sequence[str] = (), probes: list[ProbeText] | None = None) -> None:
    """Raise `ProbeOverlapError` when a training prompt or self-description answer overlaps a probe."""
    probes = probe_texts() if probes is None else probes
    hits = overlaps(list(prompts) + list(answers), probes)
    if hits:
        shown = "; ".join(f"{t!r} ~ {p.source}: {p.text[:80]!r}" for t, p in hits[:5])
        raise ProbeOverlapError(
            f"{len(hits)} organism training text(s) overlap probe prompts ({shown}); reword them in the "
            "self-description file, or set check_probe_overlap=false if the overlap is intended"
        )
