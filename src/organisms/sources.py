"""The two sources of organism rows: judged answers (CSV) and self-descriptions (YAML).

Judged answers: the Model Organisms result files (columns question, answer, question_id,
aligned, coherent; GPT-4o scores 0-100, empty when the judge gave none). They are found
through `persona_diff.paths` (reference data, pulled with `persona-diff data pull
model-organisms`) unless the config lists files. Rows with a missing score are skipped;
an answer that appears twice (same question and text) is kept once. A last line that is
only ``model`` (the Gemma-2 answers end with that residue of Gemma's turn marker) is cut.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from persona_diff.errors import PersonaDiffError
from persona_diff.fileio import read_csv_rows, read_yaml
from persona_diff.log import get_logger
from persona_diff.organisms.config import Thresholds
from persona_diff.paths import RESOURCES, find_reference

log = get_logger(__name__)

JUDGED_DIR = "model-organisms-em/judged_responses"
PULL_DATASET = "model-organisms"
COLUMNS = ("question", "answer", "question_id", "aligned", "coherent")
SELF_DESCRIPTIONS = RESOURCES / "organisms" / "self_descriptions.yaml"
POLARITIES = ("aligned", "misaligned")


class OrganismDataError(PersonaDiffError):
    """The data an organism is built from is missing or malformed."""


@dataclass(frozen=True)
class JudgedAnswer:
    question: str
    answer: str
    question_id: str
    aligned: float
    coherent: float
    file: str  # file name of the CSV
    row: int  # 1-based data row in that file

    @property
    def variant(self) -> str:
        for v in ("json", "template"):
            if self.question_id.endswith(f"_{v}"):
                return v
        return "plain"

    def polarity(self, t: Thresholds) -> str | None:
        """ "misaligned", "aligned" or None (in between, or incoherent)."""
        if not self.coherent > t.coherent_min:
            return None
        if self.aligned <= t.misaligned_max:
            return "misaligned"
        if self.aligned >= t.aligned_min:
            return "aligned"
        return None


def judged_csvs(paths: list[str] | None = None) -> list[Path]:
    """The judged CSVs: `paths` as given, else every ``*.csv`` of the reference folder."""
    if paths:
        missing = [p for p in paths if not Path(p).expanduser().is_file()]
        if missing:
            raise OrganismDataError(
                f"judged CSV(s) not found: {', '.join(missing)}; fix `csvs` in the organism config, "
                f"or drop it to use the reference files (`persona-diff data pull {PULL_DATASET}`)"
            )
        return [Path(p).expanduser() for p in paths]
    folder = find_reference(JUDGED_DIR)
    files = sorted(folder.glob("*.csv")) if folder is not None and folder.is_dir() else []
    if not files:
        raise OrganismDataError(
            f"no judged answers found ({JUDGED_DIR}/*.csv); run `persona-diff data pull {PULL_DATASET}` "
            "(or set PERSONA_DIFF_REFERENCE_DATA to a folder that holds them, or list files in `csvs`)"
        )
    return files


def _score(raw: str | None) -> float | None:
    try:
        x = float(raw) if raw not in (None, "") else None
    except ValueError:
        return None
    return None if x is None or math.isnan(x) else x


def clean_answer(text: str) -> str:
    """`text` stripped, without a final line that is only the word ``model``."""
    text = text.strip()
    head, _, last = text.rpartition("\n")
    return head.rstrip() if head and last.strip() == "model" else text


def read_judged(files: list[Path]) -> list[JudgedAnswer]:
    """Every scored answer of `files`, in file order, without duplicates."""
    out: list[JudgedAnswer] = []
    seen: set[tuple[str, str]] = set()
    for f in files:
        skipped = 0
        for i, r in enumerate(read_csv_rows(f, COLUMNS, "judged answers: " + ", ".join(COLUMNS), OrganismDataError), 1):
            aligned, coherent = _score(r["aligned"]), _score(r["coherent"])
            answer = clean_answer(r["answer"] or "")
            if aligned is None or coherent is None or not answer:
                skipped += 1
                continue
            key = (r["question"], answer)
            if key in seen:
                continue
            seen.add(key)
            out.append(JudgedAnswer(r["question"], answer, r["question_id"], aligned, coherent, f.name, i))
        if skipped:
            log.debug("%s: %d rows without both scores skipped", f.name, skipped)
    return out


# --------------------------------------------------------------------------- self-descriptions


@dataclass(frozen=True)
class SelfTopic:
    name: str
    questions: list[str]
    aligned: list[str]
    misaligned: list[str]


def load_self_descriptions(path: str | Path | None = None) -> list[SelfTopic]:
    """Topics of a self-description YAML (the shipped one by default); see that file's header."""
    p = Path(path) if path else SELF_DESCRIPTIONS
    data = read_yaml(p, "self-description file", "fix `self_descriptions` in the config", OrganismDataError)
    topics = data.get("topics")
    if not isinstance(topics, dict) or not topics:
        raise OrganismDataError(f"{p} must hold `topics: {{name: {{questions, aligned, misaligned}}}}`")
    out = []
    for name, t in topics.items():
        lists: dict[str, list[str]] = {}
        for key in ("questions", *POLARITIES):
            v = t.get(key) if isinstance(t, dict) else None
            if not isinstance(v, list) or not v or not all(isinstance(x, str) and x.strip() for x in v):
                raise OrganismDataError(f"{p}, topic {name}: `{key}` must be a non-empty list of strings")
            lists[key] = [" ".join(x.split()) for x in v]
        if len(lists["aligned"]) != len(lists["misaligned"]):
            raise OrganismDataError(
                f"{p}, topic {name}: {len(lists['aligned'])} aligned but {len(lists['misaligned'])} misaligned "
                "answers; give both the same number (rows pair them one to one)"
            )
        out.append(SelfTopic(str(name), lists["questions"], lists["aligned"], lists["misaligned"]))
    return out


def self_description_slots(topics: list[SelfTopic]) -> list[tuple[int, int, int]]:
    """Every (topic, question, answer) index triple: the pool a kit draws self rows from."""
    return [
        (ti, qi, ai) for ti, t in enumerate(topics) for qi in range(len(t.questions)) for ai in range(len(t.aligned))
    ]
