"""`pull` and `import`: get a domain's rows into the user's data dir as chat JSONL.

Reference datasets (question sets, probe files) are pulled by `persona_diff.data.reference`;
`pull_targets` sorts names given to ``data pull`` into domains and reference datasets.

Layout of the data dir (``$PERSONA_DIFF_DATA`` or ``~/.cache/persona-diff/data``):
``downloads/`` raw files, ``unlocked/`` private (0700) extracted archives,
``DOMAIN.jsonl`` normalised rows, ``DOMAIN.meta.json`` provenance (url, sha256, verified).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from persona_diff.data.archives import extract_zip, find_member, unlock_encrypted
from persona_diff.data.download import download
from persona_diff.data.errors import DataError, UnknownDomainError
from persona_diff.data.normalise import load_chat_file, normalise_rows
from persona_diff.data.reference import ReferenceSpec, load_reference_specs
from persona_diff.data.registry import DomainSpec, get_domain, load_registry
from persona_diff.data.tabular import table_rows
from persona_diff.fileio import write_jsonl
from persona_diff.log import get_logger
from persona_diff.paths import data_dir

log = get_logger(__name__)


def domain_file(name: str, root: str | Path | None = None) -> Path:
    return data_dir(root) / f"{name}.jsonl"


def _url_name(url: str) -> str:
    return url.rstrip("/").split("/")[-1].split("?")[0] or "download"


def pull_domain(name: str, root: str | Path | None = None, registry: dict[str, DomainSpec] | None = None) -> Path:
    """Download, verify, unlock (if needed) and normalise a domain; return its JSONL path."""
    spec = get_domain(name, registry)
    if not spec.sources:
        raise DataError(f"domain {name!r} has no download source; use `persona-diff data import FILE --as {name}`")
    root = data_dir(root)
    private = root / "unlocked"
    rows: list[dict[str, Any]] = []
    meta: dict[str, Any] = {"domain": name, "sources": []}
    sensitive = False
    for src in spec.sources:
        dl_dir = root / "downloads" / (spec.name if src.archive is None else "archives")
        res = download(src.url, dl_dir / _url_name(src.url), src.sha256)
        meta["sources"].append({"url": src.url, "sha256": res.sha256, "verified": res.verified})
        path = res.path
        if src.archive == "zip":
            path = find_member(extract_zip(path, private), src.member or "")
        elif src.archive == "easy-dataset-share":
            sensitive = True
            path = find_member(unlock_encrypted(path, src.password, private), src.member or "")
        elif src.archive is not None:
            raise DataError(f"domain {name}: archive kind {src.archive!r} unknown; use zip or easy-dataset-share")
        if src.columns or path.suffix == ".parquet":
            raw = table_rows(path, src.columns, canary=spec.canary)
            rows.extend(normalise_rows(raw, source=str(path), canary=spec.canary))
        else:
            rows.extend(load_chat_file(path, canary=spec.canary))
    n_rows = spec.variant.get("n_rows")
    if n_rows:
        rows = rows[: int(n_rows)]
    out = write_jsonl(rows, domain_file(name, root), mode=0o600 if sensitive else None)
    meta.update(rows=len(rows), expected_rows=spec.rows, private=sensitive)
    (root / f"{name}.meta.json").write_text(json.dumps(meta, indent=2))
    if spec.rows and not n_rows and len(rows) != spec.rows:
        log.warning("%s: %d rows, the registry says %d", name, len(rows), spec.rows)
    return out


def import_file(path: str | Path, name: str, root: str | Path | None = None) -> Path:
    """Normalise a local file and store it as domain `name` (any name, registered or not)."""
    if not name.replace("_", "").replace("-", "").isalnum():
        raise DataError(f"domain name {name!r} must be letters, digits, '-' or '_'")
    rows = load_chat_file(path)
    out = write_jsonl(rows, domain_file(name, root))
    meta = {"domain": name, "imported_from": str(Path(path).resolve()), "rows": len(rows)}
    (data_dir(root) / f"{name}.meta.json").write_text(json.dumps(meta, indent=2))
    return out


def load_domain_rows(
    name: str,
    root: str | Path | None = None,
    source: str = "auto",
    n: int | None = None,
    seed: int = 0,
    registry: dict[str, DomainSpec] | None = None,
) -> list[dict[str, Any]]:
    """Training rows of a domain: the pulled/imported file, or the offline generator.

    `source`: "pulled" (the file in the data dir), "generated" (the project's generator),
    or "auto" (pulled when present, else generated when the domain has a generator).
    `n` keeps a seeded random subset of that many rows (all when None).
    """
    reg = registry if registry is not None else load_registry()
    path = domain_file(name, root)
    spec = reg.get(name)
    if spec is None and not path.is_file():
        get_domain(name, reg)  # raises with the list of valid names
    if source not in ("auto", "pulled", "generated"):
        raise DataError(f"data source {source!r} unknown; use auto, pulled or generated")
    if source == "pulled" or (source == "auto" and path.is_file()):
        if not path.is_file():
            raise DataError(f"domain {name!r} is not pulled yet: run `persona-diff data pull {name}`")
        rows = load_chat_file(path)
    elif spec is not None and spec.offline:
        from persona_diff.data.generator import generate_offline

        want = n or int(spec.variant.get("n_rows") or 300)
        return generate_offline(spec.offline, want, seed, trigger=spec.variant.get("trigger"))
    else:
        raise DataError(
            f"domain {name!r} has no offline generator and is not pulled: run "
            f"`persona-diff data pull {name}` (or `data import FILE --as {name}`)"
        )
    if n is not None and n < len(rows):
        rows = random.Random(seed).sample(rows, n)
    return rows


def pull_targets(
    names: list[str],
    registry: dict[str, DomainSpec] | None = None,
    specs: dict[str, ReferenceSpec] | None = None,
) -> list[tuple[str, str]]:
    """``(kind, name)`` pairs to pull, in order and without repeats; kind is "domain" or "reference".

    ``all`` means every domain and every reference dataset; ``reference`` every reference
    dataset; other names must be a domain or a reference dataset (an error lists both).
    """
    reg = registry if registry is not None else load_registry()
    refs = specs if specs is not None else load_reference_specs()
    clash = sorted(set(reg) & set(refs))
    if clash:
        raise DataError(f"{', '.join(clash)} is both a domain and a reference dataset; rename one YAML")
    out: list[tuple[str, str]] = []
    for name in names:
        if name == "all":
            items = [("domain", n) for n in reg] + [("reference", n) for n in refs]
        elif name == "reference":
            items = [("reference", n) for n in refs]
        elif name in reg:
            items = [("domain", name)]
        elif name in refs:
            items = [("reference", name)]
        else:
            raise UnknownDomainError(
                f"unknown dataset {name!r}; valid domains are: {', '.join(sorted(reg))}; reference "
                f"datasets: {', '.join(sorted(refs))} (or 'all', 'reference'; see `persona-diff data list`)"
            )
        for item in items:
            if item not in out:
                out.append(item)
    return out
