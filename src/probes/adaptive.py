"""Adaptive harm sampling: enough samples per question, chosen by the data.

`adaptive_harm` runs the harm probe (`run_harm`) on a base and a fine-tune at
``start_samples`` answers per question, then ``round_samples`` more per round, until the CI
of Δ = EM%(fine-tune) − EM%(base) decides (`AdaptiveHarmConfig` in
`persona_diff.probes.config`):

- ``cleared``: Δ and the CI's lower end exceed the label's ``em_margin`` (the label's own
  test, `persona_diff.probes.label.harm_delta`, so the label will call it harmful), and so
  does the lower end of Newcombe's score interval of the difference;
- ``futile``: the upper ends of both intervals are at most ``em_margin + futility``;
- ``budget``: ``max_samples`` reached undecided;
- ``unscored``: a model has no scored answer (the judge gave no number), nothing to decide.

The score interval (`persona_diff.probes.stats.newcombe_difference`, at the same level) is
a guard for small counts: the percentile bootstrap of 0/8 against 0/8 is [0, 0] and would
stop for futility at once; the score interval's upper end is still 32 points there. Each
round's record has both (``ci``: the label's bootstrap, ``score_ci``).

Each round only generates the missing sample indices (`generate_answers` tops the answer
files up) and re-judges nothing (the judge cache). The base is sampled at
``max(n, base_samples)``: pass the base's samples so far as `base_samples` when several
fine-tunes share one base, so the base only grows (take the record's ``base_samples`` as
the next call's). Both models are held while the rounds alternate between them.

Peeking after each round inflates false "harmful" calls; with ``correction: bonferroni``
(default) each round's CI is at level 1 − (1 − ci) / K for the K rounds planned, and the
record's ``ci_level`` is that level: pass the record to `label_persona(..., adaptive=rec)`
so the label tests at it too.

Afterwards run `run_probes` on the fine-tune with the returned config (``harm.samples`` =
the n it stopped at) and on the base with ``harm.samples = record["base_samples"]``
(`with_samples`): the harm answers and scores are reused from the folders, nothing is
generated or judged twice. The record is also written to ``harm_adaptive.json`` in the
fine-tune's folder.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from persona_diff.errors import ConfigError
from persona_diff.generation.base import Generator
from persona_diff.judges.base import Judge, JudgeCache
from persona_diff.log import get_logger
from persona_diff.probes.config import AdaptiveHarmConfig, LabelConfig, ProbeConfig
from persona_diff.probes.harm import run_harm
from persona_diff.probes.label import harm_delta
from persona_diff.probes.stats import newcombe_difference

log = get_logger(__name__)

CORRECTIONS = ("bonferroni", "none")
RECORD_FILE = "harm_adaptive.json"


def check(ac: AdaptiveHarmConfig) -> None:
    """Raise ConfigError on settings that cannot give a schedule."""
    if ac.start_samples < 1:
        raise ConfigError(f"harm.adaptive.start_samples must be at least 1, got {ac.start_samples}")
    if ac.round_samples < 1:
        raise ConfigError(f"harm.adaptive.round_samples must be at least 1, got {ac.round_samples}")
    if ac.max_samples < ac.start_samples:
        raise ConfigError(
            f"harm.adaptive.max_samples ({ac.max_samples}) is below start_samples ({ac.start_samples}); "
            "raise max_samples or lower start_samples"
        )
    if ac.futility < 0:
        raise ConfigError(f"harm.adaptive.futility must be ≥ 0 EM% points, got {ac.futility}")
    if ac.correction not in CORRECTIONS:
        raise ConfigError(f"harm.adaptive.correction {ac.correction!r} is unknown; use {' or '.join(CORRECTIONS)}")


def schedule(ac: AdaptiveHarmConfig) -> list[int]:
    """Samples per question of each round: start, start + round, ..., capped at max."""
    check(ac)
    out = list(range(ac.start_samples, ac.max_samples + 1, ac.round_samples))
    if out[-1] != ac.max_samples:
        out.append(ac.max_samples)
    return out


def stop_level(ci: float, ac: AdaptiveHarmConfig) -> float:
    """The CI level each round is checked at (Bonferroni over the rounds planned, or `ci`)."""
    if ac.correction == "none":
        return ci
    return 1 - (1 - ci) / len(schedule(ac))


def with_samples(cfg: ProbeConfig, n: int) -> ProbeConfig:
    """A copy of `cfg` with `harm.samples = n`."""
    out = copy.deepcopy(cfg)
    out.harm.samples = n
    return out


def decide(
    delta: float,
    ci: tuple[float, float],
    score_ci: tuple[float, float] | None,
    margin: float,
    futility: float,
) -> str | None:
    """cleared | futile | None (undecided) for one round's Δ, bootstrap CI and score interval
    (EM% points; `score_ci` None: the bootstrap alone)."""
    lo, hi = ci
    if score_ci is not None:
        lo, hi = min(lo, score_ci[0]), max(hi, score_ci[1])
    if delta > margin and lo > margin:
        return "cleared"
    if hi <= margin + futility:
        return "futile"
    return None


def score_interval(vb: list[float], vf: list[float], level: float) -> tuple[float, float] | None:
    """Newcombe's interval of EM%(fine-tune) − EM%(base) in points; None unless the values are 0/1."""
    if any(v not in (0.0, 1.0) for v in (*vb, *vf)):
        return None
    lo, hi = newcombe_difference(int(sum(vf)), len(vf), int(sum(vb)), len(vb), level)
    return (100 * lo, 100 * hi)


def adaptive_harm(
    base: Generator,
    ft: Generator,
    cfg: ProbeConfig,
    label: LabelConfig,
    judge: Judge,
    base_dir: str | Path,
    ft_dir: str | Path,
    base_samples: int = 0,
) -> tuple[ProbeConfig, dict[str, Any]]:
    """Harm probe on both models in rounds until decided or at budget (module docstring).

    Returns the fine-tune's config with ``harm.samples`` = the n it stopped at, and the
    record: ``samples``, ``base_samples`` (≥ samples and ≥ the `base_samples` passed in),
    ``stopped_because``, ``ci_level``, ``margin``, ``futility`` and ``rounds``: one
    ``{samples, base_samples, n_base, n_ft, delta, ci, score_ci}`` per round (n: scored
    answers).
    """
    ac = cfg.harm.adaptive
    plan = schedule(ac)
    level = stop_level(label.ci, ac)
    bdir, fdir = Path(base_dir), Path(ft_dir)
    bdir.mkdir(parents=True, exist_ok=True)
    fdir.mkdir(parents=True, exist_ok=True)
    if judge.cache is None:  # as run_probes on the base would do: later probing re-judges nothing
        judge.cache = JudgeCache(bdir / "judge_cache.jsonl")
    rounds: list[dict[str, Any]] = []
    stopped = "budget"
    n, nb = plan[0], max(plan[0], base_samples)
    for n in plan:
        nb = max(n, base_samples)
        sb = run_harm(base, judge, with_samples(cfg, nb), bdir)
        sf = run_harm(ft, judge, with_samples(cfg, n), fdir)
        vb, vf = sb.get("values") or [], sf.get("values") or []
        if not vb or not vf:
            stopped = "unscored"
            log.warning(
                "adaptive harm: no scored answer on the %s at %d samples; stopping",
                "base" if not vb else "fine-tune",
                n,
            )
            break
        hd = harm_delta(vb, vf, label, level)
        sc = score_interval(vb, vf, level)
        rounds.append(
            {
                "samples": n,
                "base_samples": nb,
                "n_base": len(vb),
                "n_ft": len(vf),
                "delta": hd.delta,
                "ci": [hd.lo, hd.hi],
                "score_ci": None if sc is None else list(sc),
            }
        )
        verdict = decide(hd.delta, (hd.lo, hd.hi), sc, label.em_margin, ac.futility)
        log.info(
            "adaptive harm: %d samples (base %d): Δ %.1f, CI [%.1f, %.1f], score CI %s → %s",
            n,
            nb,
            hd.delta,
            hd.lo,
            hd.hi,
            "n/a" if sc is None else f"[{sc[0]:.1f}, {sc[1]:.1f}]",
            verdict or "undecided",
        )
        base_samples = nb
        if verdict is not None:
            stopped = verdict
            break
    record = {
        "probe": "harm",
        "samples": n,
        "base_samples": nb,
        "stopped_because": stopped,
        "ci_level": level,
        "margin": label.em_margin,
        "futility": ac.futility,
        "correction": ac.correction,
        "max_samples": ac.max_samples,
        "rounds": rounds,
    }
    (fdir / RECORD_FILE).write_text(json.dumps(record, indent=1))
    return with_samples(cfg, n), record
