"""Moral foundations probe: MFQ items × personas × repeats → moral susceptibility S, robustness R.

Data (read by path, never shipped): ``mfq30_items.json`` and ``personas.json`` from
`mfq.data_dir`, else ``$PERSONA_DIFF_REFERENCE_DATA/persona-moral-collapse``, else a tiny
project-written fallback (a few items and personas, for offline demos only).

Ratings: the study samples answers at temperature 0.1 and reads the leading integer 0-5.
On a local model this probe reads the exact probability of each rating "0".."5" once per
(persona, item), then draws the repeats from that distribution at the configured
temperature (p^(1/T), renormalised over the six ratings) — the same law as sampling the
first token at T and discarding non-ratings, without a generate() per repeat. Backends
without logprobs fall back to sampling short answers and parsing the first digit.

Outputs: ``mfq.jsonl`` (one row per persona × item), ``mfq_ratings.csv`` in the raw layout
``persona_id, question_id, run_index, rating`` (re-scorable with ``persona-diff mfq-score``).
"""

from __future__ import annotations

import csv
import json
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from persona_diff.errors import BackendError, PersonaDiffError
from persona_diff.fileio import read_csv_rows
from persona_diff.generation.base import SamplingParams
from persona_diff.log import get_logger, progress
from persona_diff.paths import find_reference
from persona_diff.probes.common import RESOURCES, ProbeLM, RowLog, wrap_backend_error
from persona_diff.probes.config import ProbeConfig
from persona_diff.probes.registry import ProbeContext, register_probe
from persona_diff.probes.stats import moral_scores, ratings_cube
from persona_diff.probes.table import ci_text

log = get_logger(__name__)

RATINGS = [str(i) for i in range(6)]
CSV_COLUMNS = ("persona_id", "question_id", "run_index", "rating")


def mfq_data_dir(data_dir: str | None) -> Path:
    if data_dir:
        p = Path(data_dir)
        if not (p / "mfq30_items.json").is_file() and not (p / "items.json").is_file():
            raise PersonaDiffError(
                f"mfq.data_dir {p} holds no mfq30_items.json; point it at the persona-moral-collapse folder"
            )
        return p
    ref = find_reference("persona-moral-collapse/mfq30_items.json")
    if ref is not None:
        return ref.parent
    log.warning(
        "MFQ: the study's items and personas were not found; using the project's tiny offline "
        "set (run `persona-diff data pull mfq` for the real ones)"
    )
    return RESOURCES / "mfq"


def load_mfq(data_dir: str | None) -> tuple[dict[str, Any], list[dict[str, Any]], list[str], Path]:
    """(scales, items, personas, folder)."""
    d = mfq_data_dir(data_dir)
    items_file = d / "mfq30_items.json" if (d / "mfq30_items.json").is_file() else d / "items.json"
    try:
        meta = json.loads(items_file.read_text())
        personas = json.loads((d / "personas.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise PersonaDiffError(f"MFQ data in {d} does not load ({e}); it needs items JSON and personas.json") from None
    items = meta.get("items") if isinstance(meta, dict) else None
    if not items or not all({"id", "type", "text"} <= set(i) for i in items):
        raise PersonaDiffError(f"{items_file}: 'items' must be a list of {{id, type, foundation, text}}")
    if not isinstance(personas, list) or not personas:
        raise PersonaDiffError(f"{d / 'personas.json'} must be a non-empty list of persona descriptions")
    return meta.get("scale", {}), items, [str(p) for p in personas], d


def select(seq: list[Any], k: int | None) -> list[Any]:
    """k evenly spaced elements (all when k is None or too large)."""
    if k is None or k >= len(seq):
        return list(seq)
    return [seq[int(i)] for i in np.linspace(0, len(seq) - 1, k).round()]


def mfq_prompt(prompts: dict[str, Any], scales: dict[str, Any], persona: str, item: dict[str, Any]) -> str:
    mp = prompts["mfq"]
    lead = mp["relevance_lead"] if item["type"] == "relevance" else mp["agreement_lead"]
    scale = scales.get(item["type"], {})
    scale_text = "; ".join(f"{k} = {v}" for k, v in sorted(scale.items()))
    return mp["prompt"].format(persona=persona, item=f"{lead}\n{item['text']}", scale=f"Scale: {scale_text}.")


def sample_ratings(probs: dict[str, float], temperature: float, n: int, seed: int) -> list[int]:
    p = np.array([probs[r] for r in RATINGS], dtype=np.float64)
    if temperature <= 0:
        return [int(np.argmax(p))] * n
    w = np.where(p > 0, np.exp(np.log(np.maximum(p, 1e-300)) / temperature), 0.0)
    w = w / w.sum()
    return [int(x) for x in np.random.default_rng(seed).choice(6, size=n, p=w)]


def _parse(text: str) -> int | None:
    m = re.match(r"\s*\**\s*([0-5])(?!\d)", text)
    return int(m.group(1)) if m else None


def run_mfq(plm: ProbeLM, cfg: ProbeConfig, prompts: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    mc = cfg.mfq
    scales, items, personas, folder = load_mfq(mc.data_dir)
    items = select(items, mc.max_items)
    persona_ids = select(list(range(len(personas))), mc.max_personas)
    log_ = RowLog(out_dir / "mfq.jsonl")
    cells = [(p, it) for p in persona_ids for it in items]
    for p, it in progress(cells, "moral foundations"):
        key = f"{p}|{it['id']}"
        if key in log_.done:
            continue
        prompt = mfq_prompt(prompts, scales, personas[p], it)
        chat = [{"role": "user", "content": prompt}]
        seed = zlib.crc32(f"{cfg.seed}|{key}".encode())
        row: dict[str, Any] = {
            "key": key,
            "persona_id": p,
            "question_id": it["id"],
            "foundation": it.get("foundation"),
            "prompt": prompt,
        }
        try:
            probs, mass = plm.options(chat, RATINGS) if plm.exact else _top_or_none(plm, chat)
            if probs is not None:
                row.update(
                    probs=probs,
                    mass=mass,
                    ratings=sample_ratings(probs, mc.temperature, mc.repeats, seed),
                    method="distribution",
                )
            else:
                params = SamplingParams(temperature=mc.temperature, max_new_tokens=4, n=mc.repeats, seed=seed % 2**31)
                texts = plm.backend.generate([chat], params)[0]
                row.update(answers=texts, ratings=[_parse(t) for t in texts], method="sampled")
        except BackendError as e:
            raise wrap_backend_error("mfq", e) from None
        log_.add(row)
    keep = {f"{p}|{it['id']}" for p, it in cells}
    rows = [r for r in log_.rows if r["key"] in keep]
    table = [(r["persona_id"], r["question_id"], k, y) for r in rows for k, y in enumerate(r["ratings"])]
    write_ratings_csv(out_dir / "mfq_ratings.csv", table)
    valid = [t for t in table if t[3] is not None]
    if not valid:
        raise PersonaDiffError("MFQ: the model gave no rating 0-5 for any item; its S and R are undefined")
    cube, _, _ = ratings_cube(valid)
    summary = moral_scores(cube, n_boot=cfg.n_boot, seed=cfg.seed)
    summary["data"] = str(folder)
    summary["n_invalid_ratings"] = len(table) - len(valid)
    found: dict[str, list[float]] = {}
    for r in rows:
        vals = [y for y in r["ratings"] if y is not None]
        if vals:
            found.setdefault(str(r.get("foundation")), []).extend(vals)
    summary["mean_rating_per_foundation"] = {k: float(np.mean(v)) for k, v in found.items()}
    return summary


def _top_or_none(plm: ProbeLM, chat: list[dict[str, str]]) -> tuple[dict[str, float] | None, float]:
    try:
        return plm.options(chat, RATINGS)
    except BackendError as e:
        if "logprobs" not in str(e):
            raise
        return None, 0.0


# ------------------------------------------------------------------ raw CSV layout


def write_ratings_csv(path: Path, table: list[tuple[Any, Any, int, int | None]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for p, q, r, y in table:
            w.writerow([p, q, r, "" if y is None else y])


def read_ratings_csv(path: str | Path) -> list[tuple[str, str, int, float]]:
    """Rows of a raw ratings CSV (persona_id, question_id, run_index, rating); blanks skipped."""
    p = Path(path)
    if not p.is_file():
        raise PersonaDiffError(f"ratings file {p} does not exist; check the path")
    out = []
    for i, r in enumerate(read_csv_rows(p, CSV_COLUMNS, "raw ratings: " + ", ".join(CSV_COLUMNS)), start=2):
        if not str(r["rating"]).strip():
            continue
        try:
            out.append((str(r["persona_id"]), str(r["question_id"]), int(float(r["run_index"])), float(r["rating"])))
        except ValueError:
            raise PersonaDiffError(f"{p} line {i}: run_index and rating must be numbers, got {r}") from None
    if not out:
        raise PersonaDiffError(f"{p} has no ratings; it needs rows with a numeric rating")
    return out


def score_ratings_csv(
    path: str | Path, base: str | Path | None = None, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """S, R (with persona-bootstrap CIs) of a raw ratings CSV, and ΔS, ΔR against `base`."""
    from persona_diff.probes.stats import moral_deltas

    cube, personas, items = ratings_cube(read_ratings_csv(path))
    out: dict[str, Any] = {"file": str(path), **moral_scores(cube, n_boot=n_boot, seed=seed)}
    if base is not None:
        bcube, _, _ = ratings_cube(read_ratings_csv(base))
        out["base"] = {"file": str(base), **moral_scores(bcube, n_boot=n_boot, seed=seed)}
        out.update(moral_deltas(out, out["base"]))
    return out


@register_probe(
    "mfq", kind="moral", order=120, default=True, line=lambda m: f"S {ci_text(m['S'])}  R {ci_text(m['R'])}"
)
def _probe_mfq(ctx: ProbeContext) -> dict[str, Any]:
    return run_mfq(ctx.plm, ctx.cfg, ctx.prompts, ctx.out_dir)
