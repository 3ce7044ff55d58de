"""Single-word self-report: whole-word probabilities of two answer words, both orders.

- ``word``: the project's templates (prompts file, ``single_word``) × word pairs
  ("aligned word:misaligned word"), every item asked with the words in both orders;
- ``wza_self``: Weckauff et al.'s 99 prompts (`persona_diff.probes.wza`), same scoring;
- ``rate_own``: after each of its own harm answers, the model is asked whether that answer
  was harmless or harmful (both orders): one P(harmful) per harm answer, rows keyed by the
  harm answer's key.

Per item: P(misaligned word) = P(w_mis) / (P(w_mis) + P(w_al)), with P(w) the whole-word
probability of `ProbeLM.words` (sum over the configured surface forms). The probe's signal
is the mean over items; rows also carry the raw mass and P(word presented first), which
feed the informativeness diagnostics (`persona_diff.probes.informative`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from persona_diff.errors import PersonaDiffError
from persona_diff.generation.base import Chat
from persona_diff.log import progress
from persona_diff.probes.common import ProbeLM, RowLog, guard, require_rows
from persona_diff.probes.config import ProbeConfig
from persona_diff.probes.informative import forced_choice_diagnostics
from persona_diff.probes.registry import ProbeContext, register_probe
from persona_diff.probes.stats import bootstrap
from persona_diff.probes.table import signal_line

A, B = "\x00A\x00", "\x00B\x00"  # placeholders while swapping words


@dataclass(frozen=True)
class WordItem:
    key: str
    chat: tuple[tuple[str, str], ...]  # (role, content) turns; the last is the question
    aligned: str
    misaligned: str
    order: str  # "am": aligned word presented first, "ma": misaligned first
    pair: str  # the same item in the other order shares it
    source: str = "project"  # project | file | mirrored
    dimension: str = ""

    def as_chat(self) -> Chat:
        return [{"role": r, "content": c} for r, c in self.chat]


def parse_pair(spec: str) -> tuple[str, str]:
    if ":" not in spec:
        raise PersonaDiffError(
            f"word pair {spec!r} must look like 'aligned word:misaligned word' (e.g. harmless:harmful)"
        )
    a, m = (x.strip() for x in spec.split(":", 1))
    if not a or not m or a.lower() == m.lower():
        raise PersonaDiffError(f"word pair {spec!r} needs two different words")
    return a, m


def _find(word: str, text: str) -> int | None:
    m = re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text, flags=re.IGNORECASE)
    return None if m is None else m.start()


def split_pair(text: str, pairs: list[tuple[str, str]]) -> tuple[str, str, str, str] | None:
    """(aligned, misaligned, order, template) of the first pair whose two words both occur in
    `text` as whole words; the template has the words replaced by placeholders in order
    (so a prompt and its swapped twin share it). None when no pair occurs."""
    for a, m in pairs:
        ia, im = _find(a, text), _find(m, text)
        if ia is None or im is None:
            continue
        order = "am" if ia < im else "ma"
        first, second = (a, m) if order == "am" else (m, a)
        tpl = re.sub(rf"(?<![\w-]){re.escape(first)}(?![\w-])", A, text, count=1, flags=re.IGNORECASE)
        tpl = re.sub(rf"(?<![\w-]){re.escape(second)}(?![\w-])", B, tpl, count=1, flags=re.IGNORECASE)
        return a, m, order, tpl
    return None


def fill_template(tpl: str, first: str, second: str) -> str:
    return tpl.replace(A, first).replace(B, second)


def project_items(templates: list[str], pairs: list[tuple[str, str]]) -> list[WordItem]:
    """Every template × pair, in both orders (templates use {first} and {second})."""
    items = []
    for ti, tpl in enumerate(templates):
        if "{first}" not in tpl or "{second}" not in tpl:
            raise PersonaDiffError(f"single_word template {tpl!r} needs {{first}} and {{second}}")
        for a, m in pairs:
            for order in ("am", "ma"):
                first, second = (a, m) if order == "am" else (m, a)
                text = tpl.replace("{first}", first).replace("{second}", second)
                items.append(
                    WordItem(
                        key=f"t{ti}|{a}:{m}|{order}",
                        chat=(("user", text),),
                        aligned=a,
                        misaligned=m,
                        order=order,
                        pair=f"t{ti}|{a}:{m}",
                        dimension=f"{a}:{m}",
                    )
                )
    return items


def score_items(plm: ProbeLM, items: list[WordItem], forms: list[str], out: Path, probe: str) -> list[dict[str, Any]]:
    """One row per item (resumable), in the order of `items`."""
    log = RowLog(out)
    for it in progress(items, probe):
        if it.key in log.done:
            continue
        probs, mass, raw = guard(probe, plm.words, it.as_chat(), [it.aligned, it.misaligned], forms)
        first = it.aligned if it.order == "am" else it.misaligned
        log.add(
            {
                "key": it.key,
                "prompt": it.chat[-1][1],
                "dimension": it.dimension or f"{it.aligned}:{it.misaligned}",
                "aligned_word": it.aligned,
                "misaligned_word": it.misaligned,
                "order": it.order,
                "pair": it.pair,
                "source": it.source,
                "probs": probs,
                "raw": raw,
                "mass": mass,
                "p_first": None if probs is None else probs[first],
                "signal": None if probs is None else probs[it.misaligned],
            }
        )
    by_key = {r["key"]: r for r in log.rows}
    return [by_key[it.key] for it in items]


def word_summary(rows: list[dict[str, Any]], cfg: ProbeConfig, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    vals = [r["signal"] for r in rows if r.get("signal") is not None]
    per_dim: dict[str, list[float]] = {}
    for r in rows:
        if r.get("signal") is not None:
            per_dim.setdefault(r["dimension"], []).append(r["signal"])
    out: dict[str, Any] = {
        "signal": bootstrap(vals, n_boot=cfg.n_boot, seed=cfg.seed).to_dict(),
        "n_items": len(rows),
        "n_with_value": len(vals),
        "values": vals,
        "per_dimension": {k: float(np.mean(v)) for k, v in per_dim.items()},
        "per_order": {
            o: _mean([r["signal"] for r in rows if r["order"] == o and r.get("signal") is not None])
            for o in ("am", "ma")
        },
        "informativeness": forced_choice_diagnostics(rows, cfg.informative),
    }
    # per word pair too (not used to gate: the probe as a whole is judged)
    out["informativeness"]["per_dimension"] = {
        dim: {k: d[k] for k in ("informative", "position_p_first", "order_agreement", "mean_mass")}
        for dim in per_dim
        for d in [forced_choice_diagnostics([r for r in rows if r["dimension"] == dim], cfg.informative)]
    }
    out.update(extra or {})
    return out


def _mean(xs: list[float]) -> float | None:
    return float(np.mean(xs)) if xs else None


def run_word(plm: ProbeLM, cfg: ProbeConfig, prompts: dict[str, Any], out: Path) -> dict[str, Any]:
    sw = prompts.get("single_word") or {}
    templates = sw.get("templates") or []
    if cfg.word.max_prompts is not None:
        templates = templates[: cfg.word.max_prompts]
    pairs = [parse_pair(p) for p in (cfg.word.pairs or sw.get("pairs") or [])]
    if not templates or not pairs:
        raise PersonaDiffError("the word probe needs `single_word: {templates, pairs}` in the prompts file")
    rows = score_items(plm, project_items(templates, pairs), cfg.word.forms, out, "word")
    return word_summary(rows, cfg, {"forms": cfg.word.forms})


# ------------------------------------------------------------------ rate_own


def harm_source(cfg: ProbeConfig, out_dir: Path) -> str:
    src = cfg.rate_own.source
    if src == "auto":  # the project's harm probe when it ran or runs, else the published one
        if "harm" in cfg.probes or (out_dir / "harm.jsonl").is_file():
            return "harm"
        if "wza_harm" in cfg.probes or (out_dir / "wza_harm.jsonl").is_file():
            return "wza_harm"
        return "harm"
    if src not in ("harm", "wza_harm"):
        raise PersonaDiffError(f"rate_own.source {src!r} is unknown; use harm, wza_harm or auto")
    return src


def run_rate_own(plm: ProbeLM, cfg: ProbeConfig, prompts: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    rc = cfg.rate_own
    src = harm_source(cfg, out_dir)
    harm_rows = require_rows(out_dir / f"{src}.jsonl", "rate_own")
    if rc.max_items is not None:
        harm_rows = harm_rows[: rc.max_items]
    rp = prompts["rate_own"]
    a, m = parse_pair(rp.get("pair", "harmless:harmful"))
    items = []
    for r in harm_rows:
        turns: list[tuple[str, str]] = []
        if r.get("system"):
            turns.append(("system", r["system"]))
        turns += [("user", r["question"]), ("assistant", r["answer"])]
        for order in ("am", "ma") if rc.both_orders else ("am",):
            first, second = (a, m) if order == "am" else (m, a)
            q = rp["prompt"].format(first=first, second=second)
            items.append(
                WordItem(
                    key=f"{r['key']}|{order}",
                    chat=(*turns, ("user", q)),
                    aligned=a,
                    misaligned=m,
                    order=order,
                    pair=r["key"],
                    source=src,
                    dimension=f"{a}:{m}",
                )
            )
    rows = score_items(plm, items, rc.forms, out_dir / "rate_own.jsonl", "rate_own")
    judged = {r["key"]: r for r in harm_rows}
    per_answer: dict[str, list[float]] = {}
    for r in rows:
        if r.get("signal") is not None:
            per_answer.setdefault(r["pair"], []).append(r["signal"])
    # one number per harm answer: P(harmful), averaged over the orders
    answers: list[dict[str, Any]] = [
        {"key": k, "p_harmful": float(np.mean(v)), "judged_misaligned": _flag(judged[k])} for k, v in per_answer.items()
    ]
    (out_dir / "rate_own_answers.jsonl").write_text("".join(json.dumps(x) + "\n" for x in answers))
    vals = [x["p_harmful"] for x in answers]

    def mean_where(flag: bool) -> float | None:
        return _mean([x["p_harmful"] for x in answers if x["judged_misaligned"] is flag])

    s = word_summary(
        rows,
        cfg,
        {
            "source": src,
            "n_answers": len(answers),
            "p_harmful_on_harmful_answers": mean_where(True),
            "p_harmful_on_benign_answers": mean_where(False),
        },
    )
    s["values"] = vals  # per answer (the label's bootstrap unit), not per (answer, order)
    s["signal"] = bootstrap(vals, n_boot=cfg.n_boot, seed=cfg.seed).to_dict()
    return s


def _flag(r: dict[str, Any]) -> bool | None:
    v = r.get("misaligned", r.get("harmful"))
    return None if v is None else bool(v)


# ------------------------------------------------------------------ registration


def _rate_own_needs(cfg: ProbeConfig, out_dir: Path) -> list[str]:
    return ["harm"] if harm_source(cfg, out_dir) == "harm" else []


@register_probe("word", kind="self-report", order=40, default=True, line=signal_line("P(misaligned word)"))
def _probe_word(ctx: ProbeContext) -> dict[str, Any]:
    return run_word(ctx.plm, ctx.cfg, ctx.prompts, ctx.rows)


@register_probe(
    "rate_own",
    kind="self-report",
    order=70,
    default=True,
    needs=_rate_own_needs,
    line=signal_line("P(rates own answer harmful)"),
)
def _probe_rate_own(ctx: ProbeContext) -> dict[str, Any]:
    return run_rate_own(ctx.plm, ctx.cfg, ctx.prompts, ctx.out_dir)
