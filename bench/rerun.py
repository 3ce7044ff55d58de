"""Rerunning a finished `persona-diff run` vs the run that made it.

    python bench/rerun.py RUN_DIR [--repeats 3]

RUN_DIR is a finished run (e.g. ``runs/demo/run`` after ``make demo``). The first run's time is
the sum of its stages' seconds in ``stages.log.jsonl`` (its ``finish`` events: model loading
and the report come on top, so the ratio is, if anything, flattering to the first run). The
rerun is the same command (``persona-diff run BASE FT --config CONFIG --out RUN_DIR``, CONFIG
being the resolved config of ``config.json``) as a fresh CLI process timed from outside, best of ``--repeats``: imports, spec
checks, fingerprints, every stage skipped, the report rebuilt. The script checks that the
rerun started no stage and that neither model was loaded (no ``pair.json`` rewrite).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

CLI = str(Path(sys.executable).parent / "persona-diff")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    d = a.run_dir
    cfg = json.loads((d / "config.json").read_text())
    log = d / "stages.log.jsonl"
    events = [json.loads(x) for x in log.read_text().splitlines()]
    first = sum(e.get("seconds", 0.0) for e in events if e["event"] == "finish")
    pair_mtime = (d / "pair.json").stat().st_mtime_ns
    resolved = Path(tempfile.mkdtemp()) / "config.yaml"  # the run's resolved config (config.json), as a --config file
    resolved.write_text(yaml.safe_dump(cfg["config"]))
    cmd = [CLI, "run", cfg["base"], cfg["finetuned"], "--config", str(resolved), "--out", str(d)]
    times = []
    for _ in range(a.repeats):
        n = len(log.read_text().splitlines())
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
        new = [json.loads(x) for x in log.read_text().splitlines()[n:]]
        started = [e["stage"] for e in new if e["event"] != "skip"]
        if started:
            raise SystemExit(f"the rerun ran stages {started}: {d} was not finished")
    if (d / "pair.json").stat().st_mtime_ns != pair_mtime:
        raise SystemExit("the rerun loaded the models (pair.json rewritten)")
    best = min(times)
    print(f"| arm | seconds |\n|---|---|\n| first run (sum of its stages) | {first:.0f} |")
    print(f"| rerun, finished (best of {a.repeats}: {', '.join(f'{t:.1f}' for t in times)}) | {best:.1f} |")
    print(f"| **ratio** | **{best / first:.4f}** |")


if __name__ == "__main__":
    main()
