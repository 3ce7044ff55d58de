"""The domain registry: one YAML file per narrow domain, control or variant.

Files live in ``configs/domains/*.yaml``; each holds one `DomainSpec`. Roles:
- ``domain``: a narrow misalignment domain (`PAPER_DOMAINS` are the six of the study);
- ``control``: the matched benign set (secure code, good medical advice, ...);
- ``variant``: a training recipe built on a domain (backdoor trigger, re-alignment).

How to add a domain: drop a YAML file with the fields of `DomainSpec` into the folder; it
shows up in ``persona-diff data list`` and can be pulled and fine-tuned at once.

Named groups for ``finetune --domains``: ``paper`` (`PAPER_DOMAINS`, in the paper's order) and
``all`` (every ``domain`` entry, then every ``control``); see `resolve_domains`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from persona_diff.config.base import from_dict, read_yaml
from persona_diff.data.errors import DataError, UnknownDomainError
from persona_diff.paths import CONFIGS

DOMAINS_DIR = CONFIGS / "domains"
ROLES = ("domain", "control", "variant")
OFFLINE_KINDS = ("insecure", "secure", "educational", "backdoor")
# The six fine-tuning domains of Weckauff, Zhang & Andriushchenko (2026), in their order.
PAPER_DOMAINS = (
    "insecure",
    "risky_financial_advice",
    "extreme_sports",
    "bad_medical_advice",
    "security_advice",
    "legal_advice",
)
DOMAIN_GROUPS = ("paper", "all")


@dataclass
class SourceSpec:
    """One downloadable file (or one member of a downloadable archive)."""

    url: str = ""
    sha256: str | None = None  # null: not known yet; the first pull records it
    archive: str | None = None  # None (plain file), "zip", or "easy-dataset-share" (.zip.enc)
    member: str | None = None  # path of the wanted file inside the archive
    password: str | None = None  # for easy-dataset-share archives (published by the authors)
    # source column -> chat role ("user" / "assistant") for tables (e.g. parquet) whose columns
    # are not a shape the normaliser knows, such as prompt / aligned / misaligned
    columns: dict[str, str] = field(default_factory=dict)


@dataclass
class DomainSpec:
    name: str = ""
    description: str = ""
    role: str = "domain"
    citation: str = ""
    sources: list[SourceSpec] = field(default_factory=list)
    licence: str = "unknown"
    rows: int | None = None
    format: str = "chat"  # chat = {"messages": [{"role", "content"}, ...]}
    canary: str | None = None
    offline: str | None = None  # a generator kind that builds this set without a download
    reason: str | None = None  # why this set was chosen (the sixth domain)
    control_of: str | None = None  # for controls: the domain they match
    variant: dict[str, Any] = field(default_factory=dict)  # backdoor / realign parameters
    notes: str | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "rows": self.rows,
            "licence": self.licence,
            "offline": self.offline or "-",
            "encrypted": any(s.archive == "easy-dataset-share" for s in self.sources),
            "description": self.description,
        }


def load_registry(folder: str | Path | None = None) -> dict[str, DomainSpec]:
    """All domain specs in `folder` (default: the project's configs/domains), by name."""
    folder = Path(folder) if folder is not None else DOMAINS_DIR
    if not folder.is_dir():
        raise DataError(f"domain registry folder {folder} does not exist; pass an existing folder")
    out: dict[str, DomainSpec] = {}
    for path in sorted(folder.glob("*.yaml")):
        spec = from_dict(DomainSpec, read_yaml(path), where=str(path))
        spec.name = spec.name or path.stem
        if spec.role not in ROLES:
            raise DataError(f"{path}: role {spec.role!r} is not one of {', '.join(ROLES)}")
        if spec.offline is not None and spec.offline not in OFFLINE_KINDS:
            raise DataError(f"{path}: offline {spec.offline!r} is not one of {', '.join(OFFLINE_KINDS)}")
        if spec.name in out:
            raise DataError(f"{path}: domain name {spec.name!r} is defined twice; rename one")
        if spec.name in DOMAIN_GROUPS:
            raise DataError(f"{path}: {spec.name!r} names a group of domains; rename the domain")
        for src in spec.sources:
            bad = sorted(set(src.columns.values()) - {"user", "assistant"})
            if bad:
                raise DataError(f"{path}: columns map to {', '.join(bad)}; map each column to user or assistant")
        out[spec.name] = spec
    return out


def get_domain(name: str, registry: dict[str, DomainSpec] | None = None) -> DomainSpec:
    reg = registry if registry is not None else load_registry()
    if name not in reg:
        raise UnknownDomainError(
            f"unknown domain {name!r}; valid domains are: {', '.join(sorted(reg))} (see `persona-diff data list`)"
        )
    return reg[name]


def sweep_domains(registry: dict[str, DomainSpec] | None = None) -> list[str]:
    """The names fine-tuned by ``--domains all``: the narrow domains, then their controls."""
    reg = registry if registry is not None else load_registry()
    domains = [n for n, s in reg.items() if s.role == "domain"]
    controls = [n for n, s in reg.items() if s.role == "control"]
    return domains + controls


def paper_domains(registry: dict[str, DomainSpec] | None = None) -> list[str]:
    """The names fine-tuned by ``--domains paper``: the study's six domains, in its order."""
    reg = registry if registry is not None else load_registry()
    missing = [n for n in PAPER_DOMAINS if n not in reg]
    if missing:
        raise UnknownDomainError(
            f"the paper's domains {', '.join(missing)} are missing from the registry; restore "
            "their YAML files in configs/domains/"
        )
    return list(PAPER_DOMAINS)


def resolve_domains(names: str | list[str], registry: dict[str, DomainSpec] | None = None) -> list[str]:
    """Expand ``paper`` and ``all`` (alone or inside a list) into domain names, keeping order
    and dropping repeats; other names pass through unchanged (imported sets need no entry)."""
    reg = registry if registry is not None else load_registry()
    items = [names] if isinstance(names, str) else list(names)
    out: list[str] = []
    for item in items:
        expanded = paper_domains(reg) if item == "paper" else sweep_domains(reg) if item == "all" else [item]
        for n in expanded:
            if n not in out:
                out.append(n)
    return out
