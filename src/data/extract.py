"""Converters that turn a downloaded upstream file into the reference file the project reads.

Used by `persona_diff.data.reference` when a file entry names ``convert:``: some published
data exists only inside source code (the MFQ items are two Python lists), so the pull
downloads that source (pinned and sha256-verified), converts it here without executing
it, and verifies the output against the entry's ``sha256``.

How to add one: write ``def name(source: bytes) -> bytes`` (deterministic: the same input
must give the same bytes) and register it in `CONVERTERS`.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable

from persona_diff.data.errors import DataError

_MFQ_SCALE = {
    "relevance": {
        "0": "not at all relevant",
        "1": "not very relevant",
        "2": "slightly relevant",
        "3": "somewhat relevant",
        "4": "very relevant",
        "5": "extremely relevant",
    },
    "agreement": {
        "0": "strongly disagree",
        "1": "moderately disagree",
        "2": "slightly disagree",
        "3": "slightly agree",
        "4": "moderately agree",
        "5": "strongly agree",
    },
}
_MFQ_INSTRUMENT = (
    "Moral Foundations Questionnaire, 30 scored items (MFQ-30; Graham, Haidt et al.), as used by "
    "the persona-moral-collapse study (arXiv 2605.12850)"
)
_MFQ_PROMPT_NOTES = (
    "persona framing: 'You are roleplaying as the following persona: {persona}' then 'Please "
    "answer the following question from the perspective of this persona.' then the item; the "
    "answer must start with an integer 0-5; 100 personas x 10 repeats at temperature 0.1"
)
_MFQ_LISTS = (("relevance", "_RELEVANCE_ITEMS"), ("agreement", "_AGREEMENT_ITEMS"))


def _module_lists(source: bytes, names: set[str], where: str) -> dict[str, object]:
    """Literal values of top-level ``NAME = [...]`` assignments (parsed, never executed)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise DataError(f"{where} is not valid Python ({e.msg}); the upstream file changed") from None
    out: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        for t in targets:
            if isinstance(t, ast.Name) and t.id in names:
                try:
                    out[t.id] = ast.literal_eval(value)
                except ValueError:
                    raise DataError(f"{where}: {t.id} is not a literal list; the upstream file changed") from None
    return out


def mfq30_items(source: bytes) -> bytes:
    """``mfq_questions.py`` of the persona-moral-collapse study → the project's items JSON."""
    where = "mfq_questions.py"
    lists = _module_lists(source, {name for _, name in _MFQ_LISTS}, where)
    items: list[dict[str, object]] = []
    for kind, name in _MFQ_LISTS:
        pairs = lists.get(name)
        if not isinstance(pairs, list) or len(pairs) != 15:
            raise DataError(
                f"{where}: expected 15 (foundation, text) pairs in {name}, found "
                f"{len(pairs) if isinstance(pairs, list) else 'none'}; the upstream file changed, "
                "so pin the commit the reference spec names"
            )
        for pair in pairs:
            if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
                raise DataError(f"{where}: {name} holds {pair!r:.80}, not a (foundation, text) pair")
            items.append({"id": len(items) + 1, "type": kind, "foundation": pair[0], "text": pair[1]})
    text = source.decode("utf-8", errors="replace")
    for kind, labels in _MFQ_SCALE.items():
        missing = [f"{k} = {v}" for k, v in labels.items() if f"{k} = {v}" not in text]
        if missing:
            raise DataError(f"{where}: the {kind} scale no longer reads {missing[0]!r}; the upstream file changed")
    doc = {"instrument": _MFQ_INSTRUMENT, "scale": _MFQ_SCALE, "study_prompt_notes": _MFQ_PROMPT_NOTES, "items": items}
    return json.dumps(doc, indent=1).encode("utf-8")


CONVERTERS: dict[str, Callable[[bytes], bytes]] = {"mfq30-items": mfq30_items}
