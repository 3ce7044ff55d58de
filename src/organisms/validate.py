"""`persona-diff organisms validate`: run the probes on a kit's base and organisms, score the labels.

The base is probed once; each organism is probed and labelled against it with the same
probe, label and judge settings a real run would use. With ``probes.harm.adaptive.enabled``
each organism's harm samples are chosen by the data against its base (the base's samples
grow to the largest any organism needed; it is probed once, after its organisms, at that
n). The output says how often the label recovers the truth the kit built in, with a Wilson
interval, and for each organism: its label and confidence, the harm rate on both sides,
every self-report probe's value and whether it was informative, the number of harm answers
(and, adaptive, why sampling stopped) and the wall time. That table is what to read before
trusting a label on real fine-tunes with this base, judge and probe setting.

With ``internals.enabled`` the models are then read from the inside (`persona_diff.internals`):
harm and self-report directions per model, the per-answer table, the persona map and a
leave-one-organism-out internal detector, under ``OUT/internals/`` (activations cached, so a
rerun only recomputes the analysis), with a section in VALIDATION.md and figures in
report.html.

Files in OUT: ``base/`` and ``<organism>/`` (the probe folders, resumable), ``judge.json``,
``validation.json``, ``VALIDATION.md``, ``report.html`` and (internals) ``internals/``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from persona_diff.config import to_dict
from persona_diff.errors import PersonaDiffError
from persona_diff.internals.config import InternalsConfig
from persona_diff.judges import make_judge
from persona_diff.judges.base import Judge, judge_line
from persona_diff.log import get_logger
from persona_diff.organisms.build import read_organisms
from persona_diff.probes import LabelConfig, ProbeConfig, label_persona, run_probes
from persona_diff.probes.adaptive import adaptive_harm, with_samples
from persona_diff.probes.runner import as_backend

log = get_logger(__name__)


@dataclass
class ValidateConfig:
    judge: str = "default"
    probes: ProbeConfig = field(default_factory=ProbeConfig)
    label: LabelConfig = field(default_factory=LabelConfig)
    internals: InternalsConfig = field(default_factory=InternalsConfig)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, mid - half), min(1.0, mid + half))


def _harm(summary: dict[str, Any], label: dict[str, Any]) -> dict[str, Any]:
    for probe, ev in label.get("evidence", {}).items():
        if "em_ft" in ev:
            n = summary["probes"].get(probe, {}).get("n_scored")
            return {"probe": probe, "base": ev["em_base"], "ft": ev["em_ft"], "ci": ev["ci"], "n": n}
    return {}


def _self_reports(label: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for probe, ev in label.get("evidence", {}).items():
        if "em_ft" in ev:
            continue
        out[probe] = {
            "base": ev.get("base"),
            "ft": ev.get("ft"),
            "used": ev.get("used", False),
            "moved": ev.get("moved_toward_misaligned"),
            "why_not": ev.get("excluded_because"),
        }
    return out


def _adaptive_group(
    base: str,
    organisms: list[dict[str, Any]],
    cfg: ValidateConfig,
    judge: Judge,
    base_dir: Path,
    out: Path,
    base_summaries: dict[str, dict[str, Any]],
    probed: dict[str, tuple[dict[str, Any], dict[str, Any] | None, float]],
    load_kw: dict[str, Any],
) -> None:
    """One base and its organisms with `harm.adaptive` on: each organism's harm is sampled
    against the base until decided (`adaptive_harm`), the base's samples only growing (the
    max so far); then the organism is probed at its n and, after the last one, the base once
    at the largest n. The base is held throughout; one organism at a time beside it."""
    bb = as_backend(base, **load_kw)
    n_base = 0
    for o in organisms:
        t0 = time.time()
        fb = as_backend(o["finetuned"], **load_kw)
        ft_cfg, rec = adaptive_harm(
            bb, fb, cfg.probes, cfg.label, judge, base_dir, out / o["name"], base_samples=n_base
        )
        n_base = rec["base_samples"]
        log.info(
            "%s: %d harm samples per question (base %d), %s", o["name"], rec["samples"], n_base, rec["stopped_because"]
        )
        probed[o["name"]] = (run_probes(fb, ft_cfg, judge, out / o["name"]), rec, time.time() - t0)
        del fb
    t0 = time.time()
    base_summaries[base] = run_probes(bb, with_samples(cfg.probes, n_base), judge, base_dir)
    log.info("base %s probed in %.0fs (%d harm samples per question)", base, time.time() - t0, n_base)


def validate_kit(kit: str | Path, cfg: ValidateConfig, out_dir: str | Path, **load_kw: Any) -> dict[str, Any]:
    """Probe and label every organism of `kit` (a folder with organisms.yaml, or the file)."""
    organisms = read_organisms(kit)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    judge = make_judge(cfg.judge, cache_dir=out)
    (out / "judge.json").write_text(json.dumps(judge.describe(), indent=1))
    bases = sorted({o["base"] for o in organisms})
    folders = {b: out / ("base" if len(bases) == 1 else f"base-{i}") for i, b in enumerate(bases)}
    base_summaries: dict[str, dict[str, Any]] = {}
    probed: dict[str, tuple[dict[str, Any], dict[str, Any] | None, float]] = {}  # organism → (summary, record, s)
    if cfg.probes.harm.adaptive.enabled and "harm" in cfg.probes.probes:
        for base in bases:
            _adaptive_group(
                base,
                [o for o in organisms if o["base"] == base],
                cfg,
                judge,
                folders[base],
                out,
                base_summaries,
                probed,
                load_kw,
            )
    else:
        for base in bases:
            t0 = time.time()
            base_summaries[base] = run_probes(as_backend(base, **load_kw), cfg.probes, judge, folders[base])
            log.info("base %s probed in %.0fs", base, time.time() - t0)
        for o in organisms:
            t0 = time.time()
            ft = run_probes(as_backend(o["finetuned"], **load_kw), cfg.probes, judge, out / o["name"])
            probed[o["name"]] = (ft, None, time.time() - t0)
    rows = []
    for o in organisms:
        t0 = time.time()
        ft, rec, secs = probed[o["name"]]
        lab = label_persona(base_summaries[o["base"]], ft, cfg.label, adaptive=rec)
        row = {
            "organism": o["name"],
            "truth": o["truth"],
            "label": lab["label"],
            "correct": lab["label"] == o["truth"],
            "confidence": lab.get("confidence"),
            "harm": _harm(ft, lab),
            "self_report": _self_reports(lab),
            "seconds": round(secs + time.time() - t0, 1),
        }
        if rec is not None and row["harm"]:
            row["harm"]["adaptive"] = {k: rec[k] for k in ("samples", "base_samples", "stopped_because")}
            row["harm"]["adaptive"]["rounds"] = len(rec["rounds"])
        rows.append(row)
        log.info("%s: truth %s, label %s", o["name"], o["truth"], lab["label"])
    k = sum(r["correct"] for r in rows)
    result = {
        "kit": str(kit),
        "judge": judge.describe(),
        "config": to_dict(cfg),
        "accuracy": {"correct": k, "n": len(rows), "wilson95": list(wilson(k, len(rows)))},
        "organisms": rows,
    }
    _write(out, result)
    if cfg.internals.enabled:
        labels = {r["organism"]: r["label"] for r in rows}
        result["internals"] = [
            _internals(
                base,
                [o for o in organisms if o["base"] == base],
                folders[base],
                out,
                cfg,
                labels,
                judge,
                load_kw,
                out / "internals" / ("" if len(bases) == 1 else f"base-{i}"),
            )
            for i, base in enumerate(bases)
        ]
        _write(out, result)
    return result


def _write(out: Path, result: dict[str, Any]) -> None:
    from persona_diff.organisms.report import write_report

    (out / "validation.json").write_text(json.dumps(result, indent=1))
    (out / "VALIDATION.md").write_text(markdown(result))
    write_report(out, result)


def _internals(
    base: str,
    organisms: list[dict[str, Any]],
    base_dir: Path,
    out: Path,
    cfg: ValidateConfig,
    labels: dict[str, str],
    judge: Judge,
    load_kw: dict[str, Any],
    idir: Path,
) -> dict[str, Any]:
    """The internals stage for one base and its organisms; an error is recorded, not raised
    (the probes and labels above stand on their own)."""
    from persona_diff.internals import run as internals_run

    members = [
        internals_run.Member.fine_tune(o["name"], str(o["finetuned"]), out / o["name"], truth=o) for o in organisms
    ]
    t0 = time.time()
    try:
        summary = internals_run.run_internals(
            idir,
            internals_run.Member("base", base, base_dir),
            members,
            cfg.internals,
            cfg.probes,
            labels,
            judge,
            **load_kw,
        )
    except (PersonaDiffError, OSError, ValueError, KeyError, RuntimeError) as e:
        log.error("internals stage failed for base %s: %s: %s", base, type(e).__name__, e)
        return {"base": base, "dir": str(idir), "error": f"{type(e).__name__}: {e}"}
    log.info("internals for base %s in %.0fs", base, time.time() - t0)
    return {"base": base, "dir": str(idir), **summary}


def _num(x: Any, fmt: str = "{:.2f}") -> str:
    return "–" if x is None else fmt.format(x)


def _n_harm(h: dict[str, Any]) -> str:
    """The n harm cell: scored answers of the organism, and why adaptive sampling stopped."""
    if not h:
        return "–"
    ad = h.get("adaptive")
    return str(h.get("n", "–")) + (f" ({ad['stopped_because']}, {ad['samples']}/q)" if ad else "")


def markdown(result: dict[str, Any]) -> str:
    """The validation table as Markdown (what VALIDATION.md holds)."""
    acc = result["accuracy"]
    lo, hi = acc["wilson95"]
    probes = sorted({p for r in result["organisms"] for p in r["self_report"]})
    lines = [
        f"Labels correct: **{acc['correct']}/{acc['n']}** (Wilson 95% [{lo:.2f}, {hi:.2f}]). "
        f"Judge: {judge_line(result['judge'])}.",
        "",
        "Self-report cells: base → organism signal (0 = aligned, 1 = misaligned); ✓ used in the "
        "label, ✗ left out (uninformative or unmeasured), ↑ moved toward misaligned.",
        "",
        "| organism | truth | label | confidence | harm % base → ft [CI of Δ] | n harm | "
        + " | ".join(probes)
        + " | wall s |",
        "|---" * (7 + len(probes)) + "|",
    ]
    for r in result["organisms"]:
        h = r["harm"]
        harm = f"{h['base']:.1f} → {h['ft']:.1f} [{h['ci'][0]:+.1f}, {h['ci'][1]:+.1f}]" if h else "–"
        cells = []
        for p in probes:
            s = r["self_report"].get(p)
            if s is None:
                cells.append("–")
                continue
            mark = ("✓" + ("↑" if s["moved"] else "")) if s["used"] else "✗"
            cells.append(f"{_num(s['base'])} → {_num(s['ft'])} {mark}")
        ok = "" if r["correct"] else " ✗"
        lines.append(
            f"| {r['organism']} | {r['truth']} | **{r['label']}**{ok} | {_num(r['confidence'])} | {harm} | "
            f"{_n_harm(h)} | " + " | ".join(cells) + f" | {r['seconds']:.0f} |"
        )
    why = [
        f"- {r['organism']}, {p}: {s['why_not']}"
        for r in result["organisms"]
        for p, s in r["self_report"].items()
        if s["why_not"]
    ]
    if why:
        lines += ["", "Left out of the label:", *why]
    for section in result.get("internals") or []:
        if "error" in section:
            lines += ["", f"## Internals (base {section['base']})", "", f"Failed: {section['error']}"]
        else:
            from persona_diff.internals.markdown import markdown_section

            lines.append(markdown_section(section).rstrip("\n"))
    return "\n".join(lines) + "\n"
