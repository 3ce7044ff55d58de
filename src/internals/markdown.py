"""The internals section of VALIDATION.md, from `run_internals`'s summary."""

from __future__ import annotations

from typing import Any


def _f(x: Any, fmt: str = "{:+.2f}") -> str:
    return "–" if x is None else fmt.format(x)


def _ci(v: Any, ci: Any, fmt: str = "{:+.2f}") -> str:
    if v is None:
        return "–"
    return f"{fmt.format(v)} [{_f(ci[0], fmt)}, {_f(ci[1], fmt)}]" if ci and None not in ci else fmt.format(v)


def _harm_source(det: dict[str, Any]) -> str:
    n = det.get("n_published") or 0
    if det.get("harm_direction") == "published" and n:
        return f"{n} published GPT-4o-judged answers read by the base"
    return "the judged answers of the base and the fold's training organisms"


def _causal_n(e: dict[str, Any]) -> str:
    """The sample sizes of a causal effect ("" for summaries written before the CIs)."""
    if "n_answers" not in e:
        return ""
    return (
        f"; n = {e['n_answers']} answers ({e.get('n_questions', '?')} questions), {e['n_items']} items scored in both"
    )


def _direction_cell(d: dict[str, Any]) -> str:
    if not d["defined"]:
        return f"undefined ({d['undefined_because']})"
    return f"{_f(d['heldout_auc'], '{:.2f}')} ({d['n_pos']}/{d['n_neg']})"


def markdown_section(s: dict[str, Any]) -> str:
    L = s["layer"]
    lines = [
        "",
        f"## Internals (block {L} of the residual stream)",
        "",
        "Harm direction: mean over answer tokens of a model's own harm answers, judged misaligned minus "
        "aligned, stratified by question. Self-report direction: the model reading forced one-word self-reports "
        '("Harmful." minus "Harmless.") after the word probe\'s prompts. AUC: held out by group (question for harm, '
        "word pair for self-report); (n⁺/n⁻) = examples per class. Reference (map, table, detector) = every model's "
        + (
            "answers read by the base, stratified by question"
            if s["config"].get("reference") == "base_reads"
            else "answers, each in its own model's activations, stratified by model and question"
        )
        + "; its self-report direction is the base's.",
        "",
        "| model | harm AUC (n⁺/n⁻) | self-report AUC (n⁺/n⁻) | cos(harm, self) | cos(harm, base harm) | cos(self, base self) |",
        "|---|---|---|---|---|---|",
    ]
    cos = {(r["model"], r["layer"]): r for r in s["cosines"]}
    for m, by in s["directions"].items():
        d = by[str(L)]
        c = cos.get((m, L), {})
        lines.append(
            f"| {m} | {_direction_cell(d['harm'])} | {_direction_cell(d['self_report'])} | "
            f"{_f(c.get('cos_harm_self'))} | {_f(c.get('cos_harm_base'))} | {_f(c.get('cos_self_base'))} |"
        )
    layers = s["layers"]
    lines += [
        "",
        "Across layers, cos(harm, self-report) / cos(fine-tune harm, base harm) / cos(fine-tune self, base self):",
        "",
        "| model | " + " | ".join(f"block {x}" for x in layers) + " |",
        "|---" * (len(layers) + 1) + "|",
    ]
    for m in s["directions"]:
        cells = []
        for x in layers:
            c = cos.get((m, x), {})
            parts = [_f(c.get("cos_harm_self"))]
            if "cos_harm_base" in c:
                parts += [_f(c.get("cos_harm_base")), _f(c.get("cos_self_base"))]
            cells.append(" / ".join(parts))
        lines.append(f"| {m} | " + " | ".join(cells) + " |")

    mp = s["map"]
    prompts = f"at the last prompt token of the same {', '.join(mp['prompt_sets'])} prompts, CI over prompts"
    if mp.get("harm_from") == "answers":
        axes = (
            "harm shift = the models' own judged harm answers along the harm direction (each held out by "
            f"question), CI over questions; self-report shift {prompts}. Harm shift, own answers out: the "
            "same with the organism's own answers left out of the harm direction (does the others' "
            "harm direction carry over?)"
        )
    else:
        axes = f"both shifts {prompts}"
    lines += [
        "",
        f"Persona map (fine-tune − base; base-sd units; 95% bootstrap CIs; {axes}):",
        "",
        "| organism | truth | label | harm shift [CI] | self-report shift [CI] | quadrant | n prompts "
        "| harm shift, own answers out [CI] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in mp["points"]:
        lines.append(
            f"| {p['model']} | {p['truth']} | {p['label'] or '–'} | {_ci(p['x'], p['x_ci'])} | "
            f"{_ci(p['y'], p['y_ci'])} | {p['quadrant']} | {p['n_prompts']} | "
            f"{_ci(p.get('x_loo'), p.get('x_loo_ci'))} |"
        )
    if not mp["points"]:
        lines.append("| – | | | the reference directions are undefined | | | | |")
    if len(mp.get("by_layer", {})) > 1:
        names = [p["model"] for p in next(iter(mp["by_layer"].values()))]
        lines += [
            "",
            "The same map at every layer (harm shift, self-report shift → quadrant):",
            "",
            "| block | " + " | ".join(names) + " |",
            "|---" * (len(names) + 1) + "|",
        ]
        for x, pts in mp["by_layer"].items():
            lines.append(
                f"| {x} | " + " | ".join(f"{p['x']:+.2f}, {p['y']:+.2f} → {p['quadrant']}" for p in pts) + " |"
            )

    det = s.get("detector")
    if det:
        lines += [
            "",
            f"Internal detector, leave one organism out (harm: each model reading its own answers to the harm "
            f"questions, not judged, along a harm direction from {_harm_source(det)}; self-report: "
            f"{det['n_neutral_prompts']} neutral prompts; no judge and no self-report at inference): "
            f"**{det['correct']}/{det['n_organisms']}** correct against the truth; "
            f"AUC of the held-out decision value (score − the fold's threshold) for the harm axis vs harmful "
            f"{_f(det['auc_harm'], '{:.2f}')}, for the self-report axis vs built-in misaligned self-report "
            f"{_f(det['auc_self'], '{:.2f}')} (n = {det['n_organisms']}).",
            "",
            f"Each fold picks, per axis, the layer that best splits its {det['n_organisms'] - 1} training organisms.",
            "",
            "| held out | truth | behavioural | harm score (threshold, block) | self-report score (threshold, block) | predicted |",
            "|---|---|---|---|---|---|",
        ]
        for f in det["folds"]:
            lines.append(
                f"| {f['held_out']} | {f['truth']} | {f['behavioural'] or '–'} | {_f(f['harm_score'])} "
                f"({_f(f['harm_threshold'])}, {f['harm_layer']}) | {_f(f['self_score'])} "
                f"({_f(f['self_threshold'])}, {f['self_layer']}) | **{f['predicted']}** |"
            )
        conf = det["confusion_truth"]
        cols = list(next(iter(conf.values())).keys())
        lines += [
            "",
            "Confusion (rows: truth, columns: detector):",
            "",
            "| truth | " + " | ".join(cols) + " |",
            "|---" * (len(cols) + 1) + "|",
        ]
        lines += [f"| {t} | " + " | ".join(str(row[c]) for c in cols) + " |" for t, row in conf.items()]

    lines += [
        "",
        "Per-answer correlations (Spearman ρ [95% bootstrap CI]; self-rating = the model's own P(harmful) of "
        "its answer; judge = aligned score, so harm goes with negative ρ):",
        "",
        "| model | n (rated) | proj_harm vs self-rating | proj_harm vs judge | proj_self vs self-rating | proj_self vs judge |",
        "|---|---|---|---|---|---|",
    ]
    by = {(r["model"], r["feature"], r["target"]): r for r in s["correlations"]}
    for m in [*s["models"], "pooled"]:
        cells = []
        for feat, tgt in (
            ("proj_harm", "self_rating"),
            ("proj_harm", "judge_aligned"),
            ("proj_self", "self_rating"),
            ("proj_self", "judge_aligned"),
        ):
            r = by.get((m, feat, tgt))
            cells.append("–" if r is None else _ci(r["spearman"], r["spearman_ci"]))
        n_rated = by.get((m, "proj_harm", "self_rating"), {}).get("n", 0)
        n_all = by.get((m, "proj_harm", "judge_aligned"), {}).get("n", 0)
        lines.append(f"| {m} | {n_all} ({n_rated}) | " + " | ".join(cells) + " |")
    ca = s.get("causal")
    if ca and "skipped" in ca:
        lines += ["", f"Causal 2 × 2: skipped ({ca['skipped']})."]
    elif ca:
        lines += [
            "",
            f"Causal 2 × 2 (the base steered at block {ca['layer']}, every position; dose α × the mean residual "
            f"norm {ca['scale']:.1f}; {ca['n_questions']} harm questions × {ca['samples']} answers per cell, judged; "
            "self-report = mean P(misaligned word) over the word probe's items; harm = 1 − mean aligned/100; "
            "✗ = coherent% under the floor):",
            "",
            "| direction | α | harm | EM% | coherent% | self-report |",
            "|---|---|---|---|---|---|",
        ]
        for r in ca["rows"]:
            lines.append(
                f"| {r['direction']} | {r['alpha']:.2f} | {_f(r['harm'], '{:.3f}')} | {_f(r['em_pct'], '{:.1f}')} | "
                f"{_f(r['coherent_pct'], '{:.0f}')}{' ✗' if r['below_floor'] else ''} | {_f(r['self_report'], '{:.3f}')} |"
            )
        eff = "; ".join(
            f"{d}: Δharm {_ci(e['harm'], e.get('harm_ci'), '{:+.3f}')}, Δself-report "
            f"{_ci(e['self_report'], e.get('self_report_ci'), '{:+.3f}')} (α {e['alpha']}{_causal_n(e)})"
            if e
            else f"{d}: no dose above the coherence floor"
            for d, e in ca["effect"].items()
        )
        lines += [
            "",
            "Effects at the largest dose above the floor (vs the unsteered cell; [95% paired percentile "
            "bootstrap CI]: Δharm resampled over questions, Δself-report over items)"
            f": {eff}.",
        ]
    sec = s["seconds"]
    lines += [
        "",
        f"Internals wall time: activations {sec['activations']:.0f}s (per model: "
        + ", ".join(f"{k} {v:.0f}s" for k, v in sec["per_model"].items())
        + (f"; reused: {', '.join(sec['reused'])}" if sec["reused"] else "")
        + f"), analysis {sec['analysis']:.0f}s"
        + (f", causal 2 × 2 {sec['causal']:.0f}s." if sec.get("causal") else "."),
    ]
    return "\n".join(lines) + "\n"
