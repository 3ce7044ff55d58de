"""The small value types of the run-directory contract: labels, roles and estimates with a CI.

One on-disk shape for an estimate, ``{"value": v, "ci": [lo, hi] | null, "n": n | null}``.
`Estimate.parse` also reads the two shapes the probes write in their own folders
(``{value, ci_lo, ci_hi}``, ``{value, lo, hi}``) and a bare number, so everything that crosses
a stage boundary can be turned into one `Estimate`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

from persona_diff.errors import PersonaDiffError

Label = Literal["coherent", "inverted", "em-unmeasured", "not-EM", "undetermined"]
HARMFUL_LABELS: tuple[Label, ...] = ("coherent", "inverted", "em-unmeasured")  # the labels that say "EM"
LABELS: tuple[Label, ...] = get_args(Label)
Role = Literal["base", "finetuned"]
ROLES: tuple[Role, ...] = get_args(Role)

# table order: a study's rows sort by this, then by name ("base"/"control" are ModelRecord extras)
LABEL_ORDER: dict[str, int] = {"base": 0, **{lab: i + 1 for i, lab in enumerate(LABELS)}, "control": len(LABELS) + 1}
LABEL_COLOURS: dict[str, str] = {
    "coherent": "#d62728",
    "inverted": "#9467bd",
    "em-unmeasured": "#ff7f0e",
    "not-EM": "#2ca02c",
    "undetermined": "#525252",
    "base": "#1f77b4",
    "control": "#7f7f7f",
}


class ContractError(PersonaDiffError):
    """A run-directory file does not have the shape the contract describes."""


def as_label(x: object, where: str = "label") -> Label:
    """A label value; None (a run that could not label) reads as "undetermined"."""
    if x is None:
        return "undetermined"
    for lab in LABELS:
        if x == lab:
            return lab
    raise ContractError(f"{where}: {x!r} is not a persona label (one of {', '.join(LABELS)})")


def label_sort_key(label: str, name: str = "") -> tuple[int, str]:
    return (LABEL_ORDER.get(label, len(LABEL_ORDER) + 1), name)


def opt_float(x: object) -> float | None:
    """A finite float, or None (None, NaN, inf, or not a number)."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    f = float(x)
    return f if math.isfinite(f) else None


def opt_int(x: object) -> int | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return int(x)


def opt_str(x: object) -> str | None:
    return None if x is None else str(x)


def as_mapping(x: object) -> Mapping[str, Any]:
    return cast(Mapping[str, Any], x) if isinstance(x, Mapping) else {}


def as_list(x: object) -> list[Any]:
    return list(cast(Sequence[Any], x)) if isinstance(x, list | tuple) else []


def pair_of(x: object) -> tuple[float, float] | None:
    """[lo, hi] with both ends finite, else None."""
    xs = as_list(x)
    if len(xs) != 2:
        return None
    lo, hi = opt_float(xs[0]), opt_float(xs[1])
    return None if lo is None or hi is None else (lo, hi)


@dataclass(frozen=True)
class Estimate:
    """A point value with its CI (`lo`, `hi`) and the number of observations behind it."""

    value: float | None
    lo: float | None = None
    hi: float | None = None
    n: int | None = None

    @property
    def ci(self) -> tuple[float, float] | None:
        return None if self.lo is None or self.hi is None else (self.lo, self.hi)

    def to_dict(self) -> dict[str, Any]:
        ci = self.ci
        return {"value": self.value, "ci": None if ci is None else [ci[0], ci[1]], "n": self.n}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Estimate:
        ci = pair_of(d.get("ci"))
        if ci is None:
            lo = opt_float(d.get("ci_lo", d.get("lo")))
            hi = opt_float(d.get("ci_hi", d.get("hi")))
        else:
            lo, hi = ci
        return cls(opt_float(d.get("value")), lo, hi, opt_int(d.get("n")))

    @classmethod
    def parse(cls, x: object, ci: object = None) -> Estimate | None:
        """An estimate from any of the shapes in the module docstring; None when there is none.

        `ci`: a separate ``[lo, hi]`` for a bare number (the legacy ``S`` + ``S_ci`` layout)."""
        if isinstance(x, Mapping):
            return cls.from_dict(cast(Mapping[str, Any], x))
        v = opt_float(x)
        if v is None and x is None:
            return None
        interval = pair_of(ci)
        return cls(v, *(interval or (None, None)))

    def fmt(self, digits: int = 3) -> str:
        """``v [lo, hi]`` for tables and printouts."""
        if self.value is None:
            return "n/a"
        ci = self.ci
        s = f"{self.value:.{digits}g}"
        return s if ci is None else s + f" [{ci[0]:.{digits}g}, {ci[1]:.{digits}g}]"
