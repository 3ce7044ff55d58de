"""Reference datasets: published research files pulled into ``<data dir>/reference``.

One YAML file per dataset in ``configs/reference/*.yaml``, each a `ReferenceSpec`: a list of
files, each with a URL pinned to an upstream commit and the sha256 of the file as it lands.
A pulled file goes to ``<data dir>/reference/<path>``, the same relative layout as the
developers' ``../shared/data``, so `persona_diff.paths.find_reference` finds pulled data
exactly as it finds the shared copies.

Every file is written to a ``.part`` file (or a temp file, for converted ones), verified, and
only then renamed into place: a checksum mismatch leaves neither the file nor a part file.

How to add a dataset: drop a YAML file with the fields of `ReferenceSpec` into the folder; it
shows up in ``persona-diff data list`` and ``persona-diff data pull NAME`` gets it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from persona_diff.config.base import from_dict, read_yaml
from persona_diff.data.download import download
from persona_diff.data.errors import ChecksumError, DataError, UnknownDomainError
from persona_diff.data.extract import CONVERTERS
from persona_diff.fileio import atomic_write, sha256_file
from persona_diff.log import get_logger
from persona_diff.paths import CONFIGS, data_dir

log = get_logger(__name__)

REFERENCE_DIR = CONFIGS / "reference"
_SHA256 = re.compile(r"[0-9a-f]{64}")
PINNED_URL = re.compile(r"https://raw\.githubusercontent\.com/[^/]+/[^/]+/([0-9a-f]{40})/.+")


@dataclass
class ReferenceFile:
    """One file of a reference dataset."""

    path: str = ""  # where it lands, relative to a reference root (e.g. betley-em/LICENSE)
    url: str = ""  # pinned upstream URL; "" when no public source is confirmed (then not pulled)
    sha256: str = ""  # of the file as written at `path`
    convert: str | None = None  # a converter of persona_diff.data.extract, applied to the download
    source_sha256: str | None = None  # of the download itself, when `convert` is set
    shared_copy_differs: str | None = None  # why ../shared/data holds another version, if it does
    notes: str | None = None


@dataclass
class ReferenceSpec:
    name: str = ""
    description: str = ""
    citation: str = ""
    licence: str = "unknown"
    repo: str = ""  # main upstream repository, owner/name
    commit: str = ""  # its pinned commit (each file's URL names its own)
    files: list[ReferenceFile] = field(default_factory=list)
    notes: str | None = None

    def pullable(self) -> list[ReferenceFile]:
        return [f for f in self.files if f.url]


@dataclass
class ReferencePull:
    name: str
    root: Path  # <data dir>/reference
    written: list[Path]
    skipped: list[str]  # relative paths with no confirmed public source


def _check(spec: ReferenceSpec, where: str) -> None:
    if not spec.files:
        raise DataError(f"{where}: reference dataset {spec.name!r} lists no files; add a files: list")
    for i, f in enumerate(spec.files):
        at = f"{where} files[{i}]"
        rel = PurePosixPath(f.path)
        if not f.path or rel.is_absolute() or ".." in rel.parts:
            raise DataError(f"{at}: path {f.path!r} must be relative to the reference root, without '..'")
        if not _SHA256.fullmatch(f.sha256 or ""):
            raise DataError(f"{at}: sha256 {f.sha256!r} is not 64 lowercase hex digits; give the file's sha256sum")
        if f.convert is not None and f.convert not in CONVERTERS:
            raise DataError(f"{at}: convert {f.convert!r} is unknown; use one of {', '.join(sorted(CONVERTERS))}")
        if f.source_sha256 is not None and not _SHA256.fullmatch(f.source_sha256):
            raise DataError(f"{at}: source_sha256 {f.source_sha256!r} is not 64 lowercase hex digits")
        if not f.url and not f.notes:
            raise DataError(f"{at}: a file without url needs notes saying why no public source is known")


def load_reference_specs(folder: str | Path | None = None) -> dict[str, ReferenceSpec]:
    """All reference specs in `folder` (default: the project's configs/reference), by name."""
    folder = Path(folder) if folder is not None else REFERENCE_DIR
    if not folder.is_dir():
        raise DataError(f"reference registry folder {folder} does not exist; pass an existing folder")
    out: dict[str, ReferenceSpec] = {}
    for path in sorted(folder.glob("*.yaml")):
        spec = from_dict(ReferenceSpec, read_yaml(path), where=str(path))
        spec.name = spec.name or path.stem
        if spec.name in out:
            raise DataError(f"{path}: reference dataset {spec.name!r} is defined twice; rename one")
        _check(spec, str(path))
        out[spec.name] = spec
    return out


def get_reference(name: str, specs: dict[str, ReferenceSpec] | None = None) -> ReferenceSpec:
    specs = specs if specs is not None else load_reference_specs()
    if name not in specs:
        raise UnknownDomainError(
            f"unknown reference dataset {name!r}; valid ones are: {', '.join(sorted(specs))} "
            "(see `persona-diff data list`)"
        )
    return specs[name]


def reference_root(root: str | Path | None = None) -> Path:
    """Where pulled reference data lives: ``<data dir>/reference``."""
    return data_dir(root) / "reference"


def pull_status(spec: ReferenceSpec, root: str | Path | None = None) -> str:
    """ "yes" (every pullable file present), "partial" or "no"."""
    files = spec.pullable()
    have = sum((reference_root(root) / f.path).is_file() for f in files)
    return "yes" if files and have == len(files) else "partial" if have else "no"


def _pull_converted(spec: ReferenceSpec, f: ReferenceFile, dest: Path, root: Path) -> None:
    if dest.is_file() and sha256_file(dest) == f.sha256:
        return
    src_dir = root / "downloads" / "reference" / spec.name
    src = download(f.url, src_dir / f.url.rstrip("/").split("/")[-1], f.source_sha256)
    data = CONVERTERS[f.convert or ""](src.path.read_bytes())
    got = hashlib.sha256(data).hexdigest()
    if got != f.sha256:
        raise ChecksumError(
            f"{f.path} converted from {f.url} has sha256 {got}, expected {f.sha256}; nothing was "
            f"written. The converter {f.convert!r} or its source changed: fix the converter or "
            f"update sha256 in configs/reference/{spec.name}.yaml"
        )
    atomic_write(dest, data)


def pull_reference(
    name: str, root: str | Path | None = None, specs: dict[str, ReferenceSpec] | None = None
) -> ReferencePull:
    """Download and verify every file of a reference dataset into ``<data dir>/reference``."""
    spec = get_reference(name, specs)
    base = data_dir(root)
    ref_root = reference_root(root)
    written: list[Path] = []
    skipped: list[str] = []
    for f in spec.files:
        if not f.url:
            log.warning("%s: %s has no confirmed public source, not pulled (%s)", name, f.path, f.notes)
            skipped.append(f.path)
            continue
        dest = ref_root / f.path
        if f.convert is None:
            download(f.url, dest, f.sha256)
        else:
            _pull_converted(spec, f, dest, base)
        written.append(dest)
    record: dict[str, Any] = {
        "dataset": name,
        "repo": spec.repo,
        "commit": spec.commit,
        "files": [{"path": f.path, "url": f.url, "sha256": f.sha256} for f in spec.pullable()],
        "skipped": skipped,
    }
    meta = ref_root / ".pulled" / f"{name}.json"
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps(record, indent=2))
    return ReferencePull(name, ref_root, written, skipped)
