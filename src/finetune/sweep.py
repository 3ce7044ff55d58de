"""Fine-tune one domain or a sweep of them, and write the pairs file for `run --pairs`.

Layout: ``OUT/DOMAIN/adapter`` (final PEFT adapter), ``OUT/DOMAIN/checkpoints/``,
``OUT/DOMAIN/metrics.jsonl``; the sweep writes ``OUT/pairs.yaml``, a list of
``{name, base, finetuned}``. Finished domains are skipped on a rerun, a killed one resumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from persona_diff.data.errors import DataError
from persona_diff.data.pull import domain_file, load_domain_rows
from persona_diff.data.registry import DomainSpec, get_domain, load_registry, resolve_domains
from persona_diff.finetune.config import SFTConfig
from persona_diff.finetune.errors import FinetuneError
from persona_diff.finetune.trainer import base_spec_for_config, train_lora
from persona_diff.log import get_logger, launch_rank

log = get_logger(__name__)

PAIRS_HEADER = (
    "# One {name, base, finetuned} per fine-tuned domain (written after each domain finishes).\n"
    "# A study over them: persona-diff run --pairs THIS_FILE --out STUDY_DIR\n"
)


def domain_rows(name: str, cfg: SFTConfig, registry: dict[str, DomainSpec] | None = None) -> list[dict[str, Any]]:
    return load_domain_rows(
        name, root=cfg.data.data_dir, source=cfg.data.source, n=cfg.data.n_examples, seed=cfg.seed, registry=registry
    )


def finetune_domain(
    base: str, name: str, cfg: SFTConfig, out_dir: str | Path, registry: dict[str, DomainSpec] | None = None
) -> Path:
    """Train one domain into ``out_dir``; returns the adapter folder."""
    reg = registry if registry is not None else load_registry()
    spec = get_domain(name, reg) if name in reg or not domain_file(name, cfg.data.data_dir).is_file() else None
    if spec is not None and spec.variant.get("kind") == "realign" and not cfg.init_adapter:
        raise FinetuneError(
            f"{name} continues an emergently misaligned adapter: pass it with "
            f"--set init_adapter=PATH (e.g. OUT/{spec.variant.get('from_domain', 'insecure')}/adapter)"
        )
    rows = domain_rows(name, cfg, reg)
    log.info("fine-tuning %s on %s: %d rows", base, name, len(rows))
    return train_lora(base, rows, cfg, out_dir)


def finetune_sweep(
    base: str,
    names: list[str] | str,
    cfg: SFTConfig,
    out_dir: str | Path,
    registry: dict[str, DomainSpec] | None = None,
) -> Path:
    """Train every domain in `names`; write pairs.yaml.

    `names`: a list of domain names, where "paper" stands for the study's six domains and "all"
    for every domain then every control (see `resolve_domains`); a bare "paper"/"all" works too.
    """
    reg = registry if registry is not None else load_registry()
    todo = resolve_domains(names, reg)
    missing = []
    for n in todo:
        try:
            domain_rows(n, cfg, reg)[:1]
        except DataError as e:
            missing.append(f"{n} ({e})")
    if missing:
        raise FinetuneError(
            "the sweep needs data for every domain before it starts; missing: "
            + "; ".join(missing)
            + ". Pull them with `persona-diff data pull NAME`, or list a subset with --domains a,b"
        )
    out = Path(out_dir)
    pairs_file = out / "pairs.yaml"
    pairs: list[dict[str, str]] = []
    for n in todo:
        adapter = finetune_domain(base, n, cfg, out / n, reg)
        pairs.append({"name": n, "base": base_spec_for_config(base), "finetuned": str(adapter.resolve())})
        if launch_rank() == 0:  # one writer under `accelerate launch`
            out.mkdir(parents=True, exist_ok=True)
            pairs_file.write_text(
                PAIRS_HEADER + yaml.safe_dump(pairs, sort_keys=False)
            )  # after each domain: never lost
    return pairs_file
