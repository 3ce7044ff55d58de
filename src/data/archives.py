"""Opening downloaded archives: plain zip, and easy-dataset-share encrypted ``.zip.enc``.

The Model Organisms sets are published encrypted with `easy-dataset-share` and their
authors ask that no unlocked copy be made public. We unlock only into a private folder
(mode 0700) under the user's data dir, and import the package lazily: it is needed only
when a user pulls such a set (``pip install easy-dataset-share``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from persona_diff.data.errors import DataError


def _private_dir(root: Path, name: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    return root / name


def extract_zip(archive: Path, dest_root: Path) -> Path:
    target = _private_dir(dest_root, archive.name + ".d")
    if target.is_dir():
        return target
    tmp = Path(tempfile.mkdtemp(dir=dest_root, prefix=".x-"))
    try:
        with zipfile.ZipFile(archive) as z:
            for m in z.namelist():  # refuse members escaping the folder (zip slip)
                if Path(m).is_absolute() or ".." in Path(m).parts:
                    raise DataError(f"{archive} holds an unsafe member path {m!r}; not extracting it")
            z.extractall(tmp)
    except zipfile.BadZipFile:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"{archive} is not a valid zip file; delete it and pull again") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    tmp.rename(target)
    return target


def unlock_encrypted(archive: Path, password: str | None, dest_root: Path) -> Path:
    """Decrypt an easy-dataset-share archive into a private folder; remove its canaries."""
    try:
        from easy_dataset_share import canary, zipping
    except ImportError:
        raise DataError(
            f"{archive.name} is an encrypted easy-dataset-share archive: install the opener with "
            "`pip install easy-dataset-share`, then rerun the pull"
        ) from None
    if not password:
        raise DataError(f"{archive.name} needs a password: set `password` in the domain's YAML source")
    target = _private_dir(dest_root, archive.name + ".d")
    if target.is_dir():
        return target
    tmp = Path(tempfile.mkdtemp(dir=dest_root, prefix=".x-"))
    try:
        try:
            zipping.unzip_and_decrypt(str(archive), password, str(tmp))
        except ValueError as e:
            raise DataError(f"cannot unlock {archive.name} ({e}); check the password in the YAML") from None
        files = canary.detect_canary_files(str(tmp))
        marker = canary.extract_canary_string_from_content(files[0]) if files else None
        canary.remove_canary_files(root_dir=str(tmp))
        if marker:
            canary.remove_canaries_from_files(str(tmp), marker)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    tmp.rename(target)
    return target


def find_member(folder: Path, member: str) -> Path:
    """The file in an extracted archive whose path ends with `member`."""
    want = Path(member).parts
    hits = [p for p in folder.rglob(Path(member).name) if p.is_file() and p.parts[-len(want) :] == want]
    if not hits:
        have = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.json*"))[:20]
        raise DataError(
            f"archive has no file {member!r}; it holds: {', '.join(have) or 'no JSON files'}. "
            "Fix `member` in the domain's YAML"
        )
    return sorted(hits, key=lambda p: len(p.parts))[0]
