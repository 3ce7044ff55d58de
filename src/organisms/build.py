"""Train the organisms of a kit and write ``organisms.yaml``.

Layout of ``OUT``:
- ``OUT/<kind>/rows.jsonl``: the training rows (with ``meta``: where each turn came from);
- ``OUT/<kind>/organism.json``: kind, truth, row counts and hashes, training seconds;
- ``OUT/<kind>/adapter``, ``checkpoints/``, ``metrics.jsonl``: as `train_lora` writes them;
- ``OUT/organisms.yaml``: ``{kit, version, base, pairs: [...], config}``. Each pair has
  ``name``, ``base``, ``finetuned`` (the adapter), so the file is a pairs file for
  ``persona-diff run --pairs``, plus the known truth: ``truth`` (coherent | inverted | not-EM),
  ``harmful`` (bool) and ``self_report`` (misaligned | aligned).

Training goes through `persona_diff.finetune.train_lora`: a rerun skips finished organisms
and resumes a killed one. A kind folder built from other rows or SFT settings is refused
instead of being silently reused.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from persona_diff.config.base import config_hash, to_dict
from persona_diff.errors import ConfigError, PersonaDiffError
from persona_diff.fileio import atomic_write, read_yaml, write_jsonl
from persona_diff.finetune.config import SFTConfig
from persona_diff.finetune.trainer import base_spec_for_config, train_lora
from persona_diff.log import get_logger, launch_rank
from persona_diff.organisms.config import KINDS, OrganismConfig
from persona_diff.organisms.rows import Row, kit_rows, row_counts

log = get_logger(__name__)

MANIFEST = "organisms.yaml"
KIT = "persona-diff-organisms"
VERSION = 1
TRUTHS = ("coherent", "inverted", "not-EM")
SELF_REPORTS = ("misaligned", "aligned")


class OrganismBuildError(PersonaDiffError):
    """An organism cannot be built into the given folder."""


# settings that change how fast or how often things are written, never what is learnt
_NOT_RESULT = ("data", "threads", "log_every", "save_every", "keep_checkpoints")


def sft_fingerprint(sft: SFTConfig) -> str:
    return config_hash({k: v for k, v in to_dict(sft).items() if k not in _NOT_RESULT})


def rows_sha256(rows: list[Row]) -> str:
    blob = json.dumps([r["messages"] for r in rows], ensure_ascii=False, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def _adapter_done(adapter: Path) -> bool:
    state = adapter / "trainer_state.json"
    return state.is_file() and bool(json.loads(state.read_text()).get("done"))


def _check_folder(sub: Path, record: dict[str, Any]) -> dict[str, Any]:
    """The organism.json already in `sub` ({} if none); refuses one built from other data."""
    f = sub / "organism.json"
    if not f.is_file():
        return {}
    old = json.loads(f.read_text())
    for key in ("base", "rows_sha256", "sft_hash"):
        if old.get(key) != record[key]:
            raise OrganismBuildError(
                f"{sub} holds a {record['kind']} organism built with another {key.replace('_', ' ')} "
                f"({old.get(key)!r}, now {record[key]!r}); delete that folder to rebuild it, or choose a new --out"
            )
    return old


def _pair(record: dict[str, Any], adapter: Path) -> dict[str, Any]:
    return {
        "name": record["kind"],
        "base": record["base"],
        "finetuned": str(adapter.resolve()),
        "truth": record["truth"],
        "harmful": record["harmful"],
        "self_report": record["self_report"],
        "rows": record["rows"],
        "train_seconds": record.get("train_seconds"),
    }


def _write_manifest(out: Path, base: str, pairs: list[dict[str, Any]], cfg: OrganismConfig) -> Path:
    path = out / MANIFEST
    old = read_organisms(path) if path.is_file() else []
    if old and old[0]["base"] != base:
        raise OrganismBuildError(
            f"{path} lists organisms of base {old[0]['base']!r}, not {base!r}; use a new --out for another base"
        )
    names = {p["name"] for p in pairs}
    merged = [p for p in old if p["name"] not in names] + pairs
    merged.sort(key=lambda p: list(KINDS).index(p["name"]) if p["name"] in KINDS else len(KINDS))
    doc = {
        "kit": KIT,
        "version": VERSION,
        "base": base,
        "pairs": merged,
        "config": to_dict(cfg),
        "config_hash": config_hash(cfg),
    }
    head = (
        "# Validation organisms (persona-diff organisms build): LoRA fine-tunes whose persona label is\n"
        "# known by construction. A pairs file: persona-diff run --pairs THIS_FILE\n"
    )
    atomic_write(path, head + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return path


def build_organisms(base: str, cfg: OrganismConfig, out_dir: str | Path, rows_only: bool = False) -> Path:
    """Build every kind in ``cfg.kinds`` under `out_dir`; returns ``organisms.yaml``.

    `rows_only`: write each kind's rows.jsonl and organism.json, train nothing, and return
    the output folder (a dry run to inspect the data).
    """
    cfg.validate()
    kits = kit_rows(cfg)
    out = Path(out_dir)
    base_spec = base_spec_for_config(base)
    sft = replace(cfg.sft, seed=cfg.seed)
    main = launch_rank() == 0
    pairs: list[dict[str, Any]] = []
    manifest = out / MANIFEST
    for kind, rows in kits.items():
        spec = KINDS[kind]
        sub = out / kind
        record: dict[str, Any] = {
            "kind": kind,
            "truth": spec.truth,
            "harmful": spec.harmful,
            "self_report": spec.self_report,
            "base": base_spec,
            "rows": {"total": len(rows), **row_counts(rows)},
            "rows_sha256": rows_sha256(rows),
            "sft_hash": sft_fingerprint(sft),
            "seed": cfg.seed,
        }
        previous = _check_folder(sub, record)
        done_before = _adapter_done(sub / "adapter")
        if main:
            sub.mkdir(parents=True, exist_ok=True)
            write_jsonl(rows, sub / "rows.jsonl")
            (sub / "organism.json").write_text(json.dumps(record, indent=2))
        if rows_only:
            continue
        log.info("training organism %s (%s) on %s: %d rows", kind, spec.truth, base_spec, len(rows))
        t0 = time.perf_counter()
        adapter = train_lora(base, [{"messages": r["messages"]} for r in rows], sft, sub)
        # wall time of this call; an organism finished earlier keeps the time it was built in
        record["train_seconds"] = previous.get("train_seconds") if done_before else round(time.perf_counter() - t0, 1)
        if main:
            (sub / "organism.json").write_text(json.dumps(record, indent=2))
            log.info("organism %s: %s (%s s)", kind, adapter, record["train_seconds"])
            pairs.append(_pair(record, adapter))
            _write_manifest(out, base_spec, pairs, cfg)  # after each organism: never lost
    return out if rows_only else manifest


def read_organisms(path: str | Path) -> list[dict[str, Any]]:
    """The organisms of an ``organisms.yaml`` (validated: a pairs file plus known truth)."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST
    doc = read_yaml(
        path, "organisms file", f"`persona-diff organisms build --out DIR` writes DIR/{MANIFEST}", ConfigError
    )
    if doc.get("kit") != KIT:
        raise ConfigError(
            f"{path} is not an organisms file (no `kit: {KIT}`); build one with `persona-diff organisms build`"
        )
    pairs = doc.get("pairs")
    if not isinstance(pairs, list) or not pairs:
        raise ConfigError(f"{path} lists no organisms; build some with `persona-diff organisms build`")
    for i, p in enumerate(pairs):
        need = {"name", "base", "finetuned", "truth", "harmful", "self_report"}
        if not isinstance(p, dict) or not need <= set(p):
            raise ConfigError(f"{path}, organism {i}: needs {', '.join(sorted(need))} (got {p!r})")
        if p["truth"] not in TRUTHS or p["self_report"] not in SELF_REPORTS or not isinstance(p["harmful"], bool):
            raise ConfigError(
                f"{path}, organism {p['name']}: truth must be one of {', '.join(TRUTHS)}, self_report one of "
                f"{', '.join(SELF_REPORTS)} and harmful true/false (got {p['truth']!r}, {p['self_report']!r}, {p['harmful']!r})"
            )
    return pairs
