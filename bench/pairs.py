"""A study over N fine-tunes of one base vs N standalone runs: wall time and equal results.

    python bench/pairs.py [--kit /tmp/org_kit2/organisms.yaml] [--names coherent,inverted,control]
                          [--out /tmp/bench_pairs] [--repeats 2] [--set key=value ...]

Arm 1: ``persona-diff run --pairs PAIRS --out OUT/study`` (one process: the base is probed
once, the judge and the base model are loaded once). Arm 2: ``persona-diff run BASE FT``
once per pair, each into its own folder (what a user without ``--pairs`` does). Both arms use
the same config (``configs/run/demo.yaml`` shrunk by `SMALL`, plus ``--set``), start from
empty folders, and are CLI processes timed from outside. The script then checks that every
pair's results are the same in both arms, and prints the stage seconds of the standalone
runs (what the base probes cost, i.e. what the study saves per extra pair) and the ratio of
each arm's best time over `--repeats` alternating rounds (on a shared machine other jobs only
ever add time, so the minimum is the least noisy estimate).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).parent / "persona-diff")
# one torch thread in both arms: on a shared 2-core box two spinning threads per process made a
# stage up to 10x slower whenever another job ran (the base probes: 21 s idle, 252 s loaded)
THREADS = 1
SMALL = [  # every stage of configs/run/demo.yaml, scaled down about evenly (the probes stay ~3/4 of the stage time)
    "probes.harm.max_questions=4",
    "probes.harm.samples=2",
    "probes.harm.max_new_tokens=32",
    "probes.self.formats=[likert, binary]",
    "probes.word.max_prompts=2",
    "probes.describe.samples=2",
    "probes.recog.max_items=2",
    "probes.predict.max_items=2",
    "probes.mfq.max_items=3",
    "probes.mfq.max_personas=2",
    "probes.mfq.repeats=2",
    "probes.n_boot=200",
    "label.n_boot=200",
    "capture.max_tokens=128",
    "diff.methods=[mean, sae]",
    "diff.params.d_sae=576",
    "diff.params.steps=40",
    "steering.alphas=[0.0, 4.0]",
    "steering.ablate_alphas=[1.0]",
    "steering.questions=1",
    "steering.sweep.samples_per_question=1",
    "steering.sweep.max_new_tokens=16",
    "analysis.n_boot=200",
]


def _run(args: list[str], log: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system of the child) of one CLI call."""
    r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.time()
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS)}
    with log.open("w") as f:
        subprocess.run([CLI, *args], check=True, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.time() - t0, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def _stage_seconds(run_dir: Path) -> dict[str, float]:
    out = {}
    for m in sorted(run_dir.rglob("_stage.json")):
        rel = str(m.parent.relative_to(run_dir))
        if ".prev-" not in rel and "/" not in rel.replace("probes/", ""):
            out[rel] = float(json.loads(m.read_text()).get("seconds", 0.0))
    return out


def _same(a: Path, b: Path) -> list[str]:
    from persona_diff.rundir import load_run

    ra, rb = load_run(a), load_run(b)
    diffs = []
    for k in ("label", "label_confidence", "feature_shift"):
        if getattr(ra.summary, k) != getattr(rb.summary, k):
            diffs.append(k)
    if ra.summary.probes != rb.summary.probes:
        diffs.append("probes")
    for role in ("base", "finetuned"):
        if [x.answer for x in ra.answers(role)] != [x.answer for x in rb.answers(role)]:
            diffs.append(f"{role} answers")
    return diffs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--kit", type=Path, default=Path("/tmp/org_kit2/organisms.yaml"), help="a pairs file (an organisms kit works)"
    )
    ap.add_argument("--names", default="coherent,inverted,control", help="which pairs of the kit, comma-separated")
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "run" / "demo.yaml")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_pairs"))
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra config override (repeatable)")
    ap.add_argument("--repeats", type=int, default=2, help="rounds of (study, standalone runs); each arm's best counts")
    args = ap.parse_args()
    kit = yaml.safe_load(args.kit.read_text())
    entries = kit["pairs"] if isinstance(kit, dict) else kit
    names = [n.strip() for n in args.names.split(",") if n.strip()]
    pairs = [{k: p[k] for k in ("name", "base", "finetuned")} for p in entries if p["name"] in names]
    if len(pairs) != len(names):
        sys.exit(f"{args.kit} lacks some of {names}")
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    pairs_file = args.out / "pairs.yaml"
    pairs_file.write_text(yaml.safe_dump(pairs, sort_keys=False))
    common = ["--config", str(args.config)] + [x for s in [*SMALL, *args.sets] for x in ("--set", s)]
    load0 = os.getloadavg()[0]
    study: list[tuple[float, float]] = []
    alone: dict[str, list[tuple[float, float]]] = {p["name"]: [] for p in pairs}
    for r in range(args.repeats):  # the arms alternate, so both see the machine's load changes
        sdir = args.out / f"study-{r}"
        study.append(
            _run(["run", "--pairs", str(pairs_file), "--out", str(sdir), *common], args.out / f"study-{r}.log")
        )
        print(f"[{r}] study of {len(pairs)} pairs: {study[-1][0]:.0f} s wall, {study[-1][1]:.0f} s CPU", flush=True)
        for p in pairs:
            t = _run(
                ["run", p["base"], p["finetuned"], "--out", str(args.out / f"alone-{r}" / p["name"]), *common],
                args.out / f"alone-{r}-{p['name']}.log",
            )
            alone[p["name"]].append(t)
            print(f"[{r}] standalone {p['name']}: {t[0]:.0f} s wall, {t[1]:.0f} s CPU", flush=True)
    load1 = os.getloadavg()[0]
    for p in pairs:
        d = _same(args.out / "study-0" / p["name"], args.out / "alone-0" / p["name"])
        print(f"{p['name']}: " + ("same results in both arms" if not d else "DIFFERENT: " + ", ".join(d)))
    for p in pairs:
        secs = _stage_seconds(args.out / "alone-0" / p["name"])
        print(f"stage seconds, standalone {p['name']}:", ", ".join(f"{k} {v:.0f}" for k, v in secs.items()))
    print(
        f"load average {load0:.1f} -> {load1:.1f} (2 cores); each arm's best of {args.repeats} (other jobs only add time)"
    )
    for i, unit in ((0, "wall"), (1, "CPU")):
        best = {n: min(v[i] for v in ts) for n, ts in alone.items()}
        s_best = min(v[i] for v in study)
        total = sum(best.values())
        print(
            f"| {len(pairs)}-pair study vs {len(pairs)} standalone runs, {unit} | study {s_best:.0f} s | standalone "
            + " + ".join(f"{v:.0f}" for v in best.values())
            + f" = {total:.0f} s | **ratio {s_best / total:.2f}** (target ≤ 0.7) |"
        )


if __name__ == "__main__":
    main()
