"""Is a self-report probe informative on this model? Diagnostics of forced-choice answers.

Every forced-choice row carries (besides its `signal`, the self-reported misalignment in
[0, 1]):
- ``order``: which presentation it was (e.g. "am"/"ma" for aligned-first/misaligned-first);
- ``pair``: the item it belongs to (the same item in another order shares it);
- ``p_first``: the probability (or scale position) of the option presented first;
- ``mass``: the raw probability the model put on the allowed answers.

Diagnostics (per model and probe):
- position bias: p̄_first = mean over orders of (mean p_first within that order);
  ``position_bias`` = |p̄_first − 0.5|. A model that answers "A" whatever the content has
  p̄_first ≈ 1 and bias ≈ 0.5; averaging its orders would fake a neutral 0.5;
- ``mean_mass``: mean raw mass on the allowed answers (rows that have one);
- order agreement: over items seen in two orders (or paraphrases) with a value in each, the
  share whose choice (value > 0.5) is the same in both; ``order_gap`` = mean |difference|;
- ``no_value_rate``: share of rows with no value (no mass, refusal, number under min_mass).

Free text (self-descriptions) has no options: informative when at least `min_scored`
samples and `min_scored_share` of them got a judge score.

A probe past any threshold of `InformativeConfig` is ``informative: false`` with the
reasons listed; the persona label leaves it out.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np

from persona_diff.probes.config import InformativeConfig
from persona_diff.rundir.records import DIAGNOSTIC_COLUMNS as NUMERIC_DIAGNOSTICS


def _mean(xs: Sequence[float]) -> float | None:
    return float(np.mean(xs)) if len(xs) else None


def forced_choice_diagnostics(
    rows: list[dict[str, Any]],
    cfg: InformativeConfig,
    value_key: str = "signal",
    positional: bool = True,
) -> dict[str, Any]:
    """Diagnostics + verdict for forced-choice rows (see the module docstring).

    `value_key`: the order-invariant quantity compared across orders (P(misaligned option)
    by default). `positional=False` for probes without option order (a bare number).
    """
    n = len(rows)
    with_value = [r for r in rows if r.get(value_key) is not None]
    masses = [float(r["mass"]) for r in rows if r.get("mass") is not None]
    out: dict[str, Any] = {
        "kind": "forced-choice",
        "n_items": n,
        "n_with_value": len(with_value),
        "no_value_rate": None if n == 0 else 1.0 - len(with_value) / n,
        "mean_mass": _mean(masses),
        "position_p_first": None,
        "position_bias": None,
        "n_orders": 0,
        "order_agreement": None,
        "order_gap": None,
        "n_pairs": 0,
    }
    if positional:
        by_order: dict[str, list[float]] = {}
        for r in rows:
            if r.get("p_first") is not None:
                by_order.setdefault(str(r.get("order")), []).append(float(r["p_first"]))
        if by_order:
            p_first = float(np.mean([np.mean(v) for v in by_order.values()]))
            out.update(position_p_first=p_first, position_bias=abs(p_first - 0.5), n_orders=len(by_order))
    groups: dict[str, list[float]] = {}
    for r in with_value:
        if r.get("pair") is not None:
            groups.setdefault(str(r["pair"]), []).append(float(r[value_key]))
    agree, gaps = [], []
    for vals in groups.values():
        for a, b in combinations(vals, 2):
            if a == 0.5 or b == 0.5:  # no choice in one of them: count as disagreement
                agree.append(0.0)
            else:
                agree.append(float((a > 0.5) == (b > 0.5)))
            gaps.append(abs(a - b))
    out["n_pairs"] = len(agree)
    out["order_agreement"] = _mean(agree)
    out["order_gap"] = _mean(gaps)
    reasons = []
    if n == 0 or not with_value:
        reasons.append("no values")
    if out["no_value_rate"] is not None and out["no_value_rate"] > cfg.max_no_value_rate:
        reasons.append(f"no value on {out['no_value_rate']:.0%} of items > {cfg.max_no_value_rate:.0%}")
    if out["mean_mass"] is not None and out["mean_mass"] < cfg.min_mass:
        reasons.append(f"mean mass on the allowed answers {out['mean_mass']:.3g} < {cfg.min_mass:g}")
    if out["position_bias"] is not None and out["n_orders"] >= 2 and out["position_bias"] > cfg.max_position_bias:
        reasons.append(
            f"position bias: P(first option) {out['position_p_first']:.2f} over both orders "
            f"(|−0.5| = {out['position_bias']:.2f} > {cfg.max_position_bias:g})"
        )
    if (
        out["order_agreement"] is not None
        and out["n_pairs"] >= cfg.min_pairs
        and out["order_agreement"] < cfg.min_order_agreement
    ):
        reasons.append(
            f"order agreement {out['order_agreement']:.2f} < {cfg.min_order_agreement:g} over {out['n_pairs']} pairs"
        )
    out["informative"] = not reasons
    out["reasons"] = reasons
    out["thresholds"] = _thresholds(cfg, free_text=False)
    return out


def free_text_diagnostics(n_samples: int, n_scored: int, cfg: InformativeConfig) -> dict[str, Any]:
    """Informative when enough judged samples: `min_scored` and `min_scored_share`."""
    share = n_scored / n_samples if n_samples else 0.0
    reasons = []
    if n_scored < cfg.min_scored:
        reasons.append(f"{n_scored} judged samples < {cfg.min_scored}")
    if n_samples and share < cfg.min_scored_share:
        reasons.append(f"judged share {share:.0%} < {cfg.min_scored_share:.0%}")
    return {
        "kind": "free-text",
        "n_items": n_samples,
        "n_with_value": n_scored,
        "no_value_rate": None if not n_samples else 1.0 - share,
        "informative": not reasons,
        "reasons": reasons,
        "thresholds": _thresholds(cfg, free_text=True),
    }


def _thresholds(cfg: InformativeConfig, free_text: bool) -> dict[str, Any]:
    if free_text:
        return {"min_scored": cfg.min_scored, "min_scored_share": cfg.min_scored_share}
    return {
        "max_position_bias": cfg.max_position_bias,
        "min_mass": cfg.min_mass,
        "min_order_agreement": cfg.min_order_agreement,
        "max_no_value_rate": cfg.max_no_value_rate,
        "min_pairs": cfg.min_pairs,
    }


def is_informative(probe_summary: dict[str, Any] | None) -> bool | None:
    """The verdict in a probe summary; None when the summary has no diagnostics (old runs)."""
    inf = (probe_summary or {}).get("informativeness")
    return None if not isinstance(inf, dict) else bool(inf.get("informative"))


DIAGNOSTIC_COLUMNS = ("informative", *NUMERIC_DIAGNOSTICS, "reasons")  # the table the report shows per probe


def summary_diagnostics(probes: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{probe: flat diagnostics} for every probe summary that has an informativeness block
    (what the run's probes/summary.json and the report show)."""
    out: dict[str, dict[str, Any]] = {}
    for name, p in probes.items():
        inf = p.get("informativeness") if isinstance(p, dict) else None
        if isinstance(inf, dict):
            row = {k: inf.get(k) for k in DIAGNOSTIC_COLUMNS if inf.get(k) is not None}
            row["reasons"] = "; ".join(inf.get("reasons") or [])
            if inf.get("formats_used") is not None:
                row["formats_used"] = ", ".join(inf["formats_used"])
            out[name] = row
    return out
