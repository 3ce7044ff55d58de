"""The short printed table of a `run_probes` summary: one line per probe, in run order.

Each probe's line comes from its registration (`persona_diff.probes.registry`); the helpers
here are what those lines are made of.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def ci_text(e: dict[str, Any] | None, scale: float = 1.0, unit: str = "") -> str:
    """``value [lo, hi]`` of a bootstrap estimate (`probes.stats.Estimate.to_dict`), or n/a."""
    if not e or e.get("value") is None:
        return "n/a"
    lo, hi = e.get("ci_lo"), e.get("ci_hi")
    s = f"{e['value'] * scale:.3g}{unit}"
    return s + (f" [{lo * scale:.3g}, {hi * scale:.3g}]" if lo is not None and hi is not None else "")


def diagnostics_line(probe: dict[str, Any]) -> str:
    """One line of a self-report probe's informativeness (see `persona_diff.probes.informative`)."""
    inf = probe.get("informativeness")
    if not isinstance(inf, dict):
        return ""
    parts = []
    if inf.get("position_bias") is not None:
        parts.append(f"P(first) {inf['position_p_first']:.2f}")
    if inf.get("mean_mass") is not None:
        parts.append(f"mass {inf['mean_mass']:.3g}")
    if inf.get("order_agreement") is not None:
        parts.append(f"order agreement {inf['order_agreement']:.2f}")
    if inf.get("no_value_rate") is not None:
        parts.append(f"no value {inf['no_value_rate']:.0%}")
    verdict = "informative" if inf.get("informative") else "UNINFORMATIVE (" + "; ".join(inf.get("reasons") or []) + ")"
    return "[" + ", ".join(parts) + (", " if parts else "") + verdict + "]"


def signal_line(label: str, extra: Callable[[dict[str, Any]], str] | None = None) -> Callable[[dict[str, Any]], str]:
    """The line of a self-report probe: `label`, its signal with CI, items with a value,
    `extra(summary)` and the informativeness diagnostics."""

    def line(s: dict[str, Any]) -> str:
        more = extra(s) if extra is not None else ""
        return f"{label} {ci_text(s['signal'])}  n={s['n_with_value']}/{s['n_items']}{more}  {diagnostics_line(s)}"

    return line


def summary_table(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(probe, one-line result) pairs for a short printed table."""
    from persona_diff.probes.registry import registered

    p = summary.get("probes", {})
    return [
        (probe.name, probe.line(p[probe.name])) for probe in registered() if probe.name in p and probe.line is not None
    ]
