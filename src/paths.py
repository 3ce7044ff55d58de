"""Every place persona-diff reads files from, in one module.

Shipped with the package (a wheel has them too):
- `CONFIGS`: the repository's ``configs/`` folder, installed as ``persona_diff.configs``
  (domain registry, model presets, finetune/probe/run configs);
- `RESOURCES`: ``src/resources`` (default question set, probe prompts, MFQ fallback, the
  shipped calibrated judge).

Reference data (published research files, never shipped), looked up by a path relative to a
reference root such as ``model-organisms-em/judged_responses``:
1. ``$PERSONA_DIFF_REFERENCE_DATA`` when set (then only there: an explicit setting wins);
2. ``../shared/data`` beside a source checkout (developers and CI);
3. what ``persona-diff data pull`` wrote under ``<data dir>/reference``.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
RESOURCES = PACKAGE / "resources"


def _configs_dir() -> Path:
    import persona_diff.configs as configs_pkg

    return Path(configs_pkg.__file__).resolve().parent


CONFIGS = _configs_dir()


def cache_dir() -> Path:
    """$PERSONA_DIFF_CACHE, else ~/.cache/persona-diff."""
    root = os.environ.get("PERSONA_DIFF_CACHE") or Path.home() / ".cache" / "persona-diff"
    return Path(root)


def data_dir(override: str | Path | None = None) -> Path:
    """Where pulled data goes: `override`, else $PERSONA_DIFF_DATA, else CACHE/data."""
    if override is not None:
        return Path(override)
    env = os.environ.get("PERSONA_DIFF_DATA")
    return Path(env) if env else cache_dir() / "data"


def checkout_root() -> Path | None:
    """The source checkout this package runs from (editable install), if any."""
    root = PACKAGE.parent
    return root if (root / "pyproject.toml").is_file() and (root / "configs").is_dir() else None


def reference_roots() -> list[Path]:
    """Existing reference-data roots, in lookup order (see the module docstring)."""
    env = os.environ.get("PERSONA_DIFF_REFERENCE_DATA")
    if env:
        return [Path(env)] if Path(env).is_dir() else []
    roots = []
    checkout = checkout_root()
    if checkout is not None:
        roots.append(checkout.parent / "shared" / "data")
    roots.append(data_dir() / "reference")
    return [r for r in roots if r.is_dir()]


def find_reference(relative: str | Path) -> Path | None:
    """The first existing ``ROOT/relative`` over `reference_roots`, or None."""
    for root in reference_roots():
        if (root / relative).exists():
            return root / relative
    return None


def require_reference(relative: str | Path, dataset: str) -> Path:
    """Like `find_reference`, but a missing file is one clear error naming the pull command."""
    from persona_diff.errors import PersonaDiffError

    hit = find_reference(relative)
    if hit is None:
        raise PersonaDiffError(
            f"reference data {relative} not found; run `persona-diff data pull {dataset}` "
            "(or set PERSONA_DIFF_REFERENCE_DATA to a folder that holds it)"
        )
    return hit
