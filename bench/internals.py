"""Cost of the internals stage against the probe stage it follows, on a finished validation run.

Arm 1, internals: `persona_diff.internals.run_internals` from scratch (fresh output folder, so
no cached activations) on a validation run's probe folders: model loads (LoRA merged), the
forwards (own harm answers, the base reading the organisms' answers, forced self-reports,
last-prompt activations of the map and neutral prompts), both directions per model and
layer with their grouped AUCs, the per-answer table and its correlations, the map, the
detector and the figures. Arm 2, probes: the ``seconds`` that ``validation.json`` recorded
for each organism (its probing with adaptive harm sampling, judging and labelling; the
base's own probing is not in that file, so the ratio below overstates the internals share).
The two arms were not timed side by side: the probe seconds come from the run that wrote
the folder, so the load of that time applies to them; this script prints the load it saw.

    python bench/internals.py --val /tmp/val3 --kit /tmp/org_kit2 --organisms coherent
    python bench/internals.py --val /tmp/val3 --kit /tmp/org_kit2            # the whole kit
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import yaml

from persona_diff.config.base import load_config
from persona_diff.internals import Member, run_internals
from persona_diff.organisms.validate import ValidateConfig
from persona_diff.paths import CONFIGS


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--val", default="/tmp/val3", help="a finished `organisms validate` output folder")
    ap.add_argument("--kit", default="/tmp/org_kit2", help="the kit it validated (organisms.yaml)")
    ap.add_argument("--organisms", default=None, help="comma list (default: every organism of the run)")
    ap.add_argument("--config", default=str(CONFIGS / "organisms" / "validate-smollm2.yaml"))
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    val = Path(args.val)
    run = json.loads((val / "validation.json").read_text())
    pairs = yaml.safe_load((Path(args.kit) / "organisms.yaml").read_text())["pairs"]
    wanted = args.organisms.split(",") if args.organisms else [r["organism"] for r in run["organisms"]]
    probe_s = {r["organism"]: r["seconds"] for r in run["organisms"] if r["organism"] in wanted}
    labels = {r["organism"]: r["label"] for r in run["organisms"]}
    orgs = [
        Member(
            p["name"], p["finetuned"], val / p["name"], p["truth"], bool(p["harmful"]), p["self_report"] == "misaligned"
        )
        for p in pairs
        if p["name"] in wanted
    ]
    cfg = load_config(ValidateConfig, args.config, []).internals
    cfg.enabled = True
    cfg.causal.enabled = False  # the steering check is timed apart (its seconds are in causal.json)
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-internals-") as tmp:
        t0 = time.time()
        s = run_internals(
            Path(tmp) / "internals",
            Member("base", pairs[0]["base"], val / "base"),
            orgs,
            cfg,
            labels=labels,
            device=args.device,
        )
        wall = time.time() - t0
    load1 = os.getloadavg()[0]
    probes = sum(probe_s.values())
    sec = s["seconds"]
    n_answers = s["table"]["n_rows"]
    print(
        json.dumps(
            {
                "organisms": wanted,
                "internals_s": round(wall, 1),
                "activations_s": sec["activations"],
                "per_model_s": sec["per_model"],
                "analysis_s": sec["analysis"],
                "probe_s": probe_s,
                "ratio": round(wall / probes, 4),
                "answers": n_answers,
                "layers": s["layers"],
                "threads": cfg.threads,
                "load_average": [round(load0, 2), round(load1, 2)],
            },
            indent=1,
        )
    )
    print(
        f"| internals ({', '.join(wanted)}; {len(orgs) + 1} models, {n_answers} harm answers, blocks "
        f"{','.join(map(str, s['layers']))}, {cfg.threads or 'default'} thread) | {wall:.0f} s | probes "
        f"(validation.json seconds of the same organisms, base not counted) {probes:.0f} s | "
        f"**{100 * wall / probes:.1f}%** (target < 10%) | load {load0:.1f}→{load1:.1f} |"
    )


if __name__ == "__main__":
    main()
