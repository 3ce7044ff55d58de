"""The internals stage against the probe stages of the same `persona-diff run` (the issue's measure).

Runs ``persona-diff run BASE FINETUNED --config CONFIG`` into a fresh folder (nothing cached)
and reads the run's own ``stages.log.jsonl``: the seconds of the ``internals`` stage (its
forwards and the analysis; the models come from the probes) against the seconds of every
probe stage (``probes/base``, ``probes/finetuned`` and ``harm_adaptive`` when it ran), both
timed in the one process, one after the other.

    python bench/internals_run.py runs/demo/organisms/coherent/adapter
    python bench/internals_run.py ADAPTER --repeats 2 --set internals.reference=own
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def stage_seconds(run_dir: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in (run_dir / "stages.log.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r.get("seconds") is not None:
            out[r["stage"]] = float(r["seconds"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("finetuned", help="the fine-tune (the demo's: runs/demo/organisms/coherent/adapter)")
    ap.add_argument("--base", default="smollm2-135m")
    ap.add_argument("--config", default="configs/run/demo.yaml")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], help="a run config override (repeatable)")
    args = ap.parse_args()
    rows = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="bench-internals-run-") as tmp:
            out = Path(tmp) / "run"
            cmd = [sys.executable, "-m", "persona_diff.cli", "run", args.base, args.finetuned]
            cmd += ["--config", args.config, "--out", str(out)] + [a for s in args.set for a in ("--set", s)]
            load0 = os.getloadavg()[0]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            sec = stage_seconds(out)
        probes = sum(v for k, v in sec.items() if k.startswith("probes/") or k == "harm_adaptive")
        rows.append({"internals_s": sec["internals"], "probes_s": round(probes, 1), "load": round(load0, 2)})
        rows[-1]["ratio"] = round(sec["internals"] / probes, 4)
        print(json.dumps(rows[-1]))
    for r in rows:
        print(
            f"| internals {r['internals_s']:.1f} s | probes {r['probes_s']:.1f} s | **{100 * r['ratio']:.1f}%** "
            f"(target < 10%) | load {r['load']:.1f} |"
        )


if __name__ == "__main__":
    main()
