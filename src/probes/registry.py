"""The probe registry: a probe is one module with a run function and one `register_probe`.

    @register_probe("myprobe", kind="self-report", order=130, line=signal_line("P(misaligned)"))
    def _run(ctx: ProbeContext) -> dict[str, Any]:
        ...  # rows to ctx.rows (one JSONL row per item), return the probe's summary

`run_probes` runs the probes of `ProbeConfig.probes` through this registry, by `order`
(smaller first; ties in registration order), and the lists the rest of the package used to
spell out come from it: `probe_names()` (every probe, in run order), `probe_names("harm")`
(the label's harm probes), `probe_names("self-report")` (the label's self-report evidence)
and `default_probes()` (what `ProbeConfig` runs by default).

Kinds are those of the run directory's records (`persona_diff.rundir.records.ProbeKind`):
``harm`` (a rate of harmful answers; ``values`` are 0/1 flags), ``self-report`` (``signal``
in [0, 1], ``values``, ``informativeness``), ``moral`` (S and R) and ``other``.

`needs` names the probes whose rows a probe reads (``<name>.jsonl`` in the same folder): one
that is neither chosen nor already there runs first. The built-in probes register in their
own modules, which `_load_builtin` imports on the first lookup.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from persona_diff.errors import ConfigError

if TYPE_CHECKING:
    from persona_diff.generation.base import Generator
    from persona_diff.judges.base import Judge
    from persona_diff.probes.common import ProbeLM
    from persona_diff.probes.config import ProbeConfig

ProbeKind = Literal["harm", "self-report", "moral", "other"]  # the words of `rundir.records.ProbeKind`
KINDS: tuple[ProbeKind, ...] = ("harm", "self-report", "moral", "other")
DEFAULT_ORDER = 1000  # after every built-in probe

# the modules whose import registers the built-in probes
_BUILTIN = ("harm", "wza", "self_report", "words", "describe", "mfq")


@dataclass
class ProbeContext:
    """What a probe runs with: one model (as a backend and through `ProbeLM`), the judge, the
    settings, the prompts file and the folder its files go to."""

    name: str
    backend: Generator
    plm: ProbeLM
    judge: Judge
    cfg: ProbeConfig
    prompts: dict[str, Any]
    out_dir: Path

    @property
    def rows(self) -> Path:
        """``<out_dir>/<name>.jsonl``: the probe's per-item rows (what `needs` looks for)."""
        return self.out_dir / f"{self.name}.jsonl"


RunFn = Callable[[ProbeContext], dict[str, Any]]
LineFn = Callable[[dict[str, Any]], str]
NeedsFn = Callable[["ProbeConfig", Path], Sequence[str]]


@dataclass(frozen=True)
class Probe:
    name: str
    run: RunFn
    kind: ProbeKind
    order: int
    default: bool  # in `ProbeConfig.probes` by default
    line: LineFn | None  # its one-line result in `summary_table`; None: no line
    needs: NeedsFn  # (settings, folder) → the probes whose rows it reads


_REGISTRY: dict[str, Probe] = {}
_loaded = False


def register_probe(
    name: str,
    *,
    kind: ProbeKind,
    order: int = DEFAULT_ORDER,
    default: bool = False,
    line: LineFn | None = None,
    needs: Sequence[str] | NeedsFn = (),
) -> Callable[[RunFn], RunFn]:
    """Register `run(ctx) -> summary` as probe `name` (a decorator; returns `run` unchanged).

    `line` formats the probe's summary for the printed table (self-report probes without one
    get `signal_line(name)`); `needs` is a list of probe names or a function of the settings
    and the output folder (for a probe whose source depends on them)."""
    if kind not in KINDS:
        raise ConfigError(f"probe {name!r}: kind {kind!r} is unknown; use one of {', '.join(KINDS)}")
    names = () if callable(needs) else tuple(needs)
    deps: NeedsFn = needs if callable(needs) else (lambda _cfg, _out: names)

    def deco(run: RunFn) -> RunFn:
        old = _REGISTRY.get(name)
        if old is not None and (old.run.__module__, old.run.__qualname__) != (run.__module__, run.__qualname__):
            raise ConfigError(f"probe {name!r} is already registered by {old.run.__module__}; choose another name")
        if line is None and kind == "self-report":
            from persona_diff.probes.table import signal_line

            shown: LineFn | None = signal_line(name)
        else:
            shown = line
        _REGISTRY[name] = Probe(name, run, kind, order, default, shown, deps)
        return run

    return deco


def _load_builtin() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for mod in _BUILTIN:
            importlib.import_module(f"persona_diff.probes.{mod}")


def registered() -> list[Probe]:
    """Every registered probe, in run order."""
    _load_builtin()
    rank = {name: i for i, name in enumerate(_REGISTRY)}
    return sorted(_REGISTRY.values(), key=lambda p: (p.order, rank[p.name]))


def get_probe(name: str) -> Probe:
    _load_builtin()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown probe {name!r}; choose from {', '.join(probe_names())}")
    return _REGISTRY[name]


def probe_names(kind: ProbeKind | None = None) -> list[str]:
    """Registered probe names in run order, all or those of one kind."""
    return [p.name for p in registered() if kind is None or p.kind == kind]


def default_probes() -> list[str]:
    return [p.name for p in registered() if p.default]


def run_order(cfg: ProbeConfig, out_dir: Path) -> list[str]:
    """The probes to run for `cfg.probes`, in order, with the ones they need first (a needed
    probe runs unless chosen or its rows are already in `out_dir`)."""
    known = probe_names()
    unknown = [p for p in cfg.probes if p not in known]
    if unknown:
        raise ConfigError(f"unknown probe(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    order = [p for p in known if p in cfg.probes]
    wanted = {get_probe(dep).name for name in order for dep in get_probe(name).needs(cfg, out_dir)}
    first = [p for p in known if p in wanted and p not in order and not (out_dir / f"{p}.jsonl").is_file()]
    return first + order
